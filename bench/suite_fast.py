"""2. The "instant" commands: ``nb2kfp compile --check NB`` (output up to date) and ``nb2kfp lint NB``.

Absolute wall time per process (no Kale peer), next to two floors measured in the same run with the same
interpreter: ``python -c pass`` (interpreter start) and ``python -c "import kfp"`` (what a command that
imported the KFP SDK would pay at least).
"""

from __future__ import annotations

from functools import partial

from context import Case, Ctx, copy_examples, interleave, log, pick_ok
from measure import Sample, median
from notebooks import sized, write
from report import Row, Target

TIMEOUT = 120.0
SECTION = "2. check and lint (whole process, median)"
BIG = 1000


def run_suite(ctx: Ctx) -> None:
    res = ctx.results
    base = ctx.folder("fast", fresh=True)
    notebooks = {f"examples/{stem}.ipynb": nb for stem, nb in copy_examples(base).items()}
    notebooks[f"{BIG} cells"] = write(base / "big" / "big.ipynb", sized(BIG))
    samples: dict[str, list[Sample]] = {}

    def timed(key: str, argv: list[str], cwd_nb: str | None, rep: int) -> None:
        cwd = notebooks[cwd_nb].parent if cwd_nb else base
        s = ctx.run(argv, TIMEOUT, cwd=cwd)
        res.sample("fast", key, "python" if key.startswith("floor") else "nb2kfp", s, rep)
        if rep >= 0:
            samples.setdefault(key, []).append(s)

    cases: list[Case] = [
        partial(timed, "floor: python -c pass", [ctx.python, "-c", "pass"], None),
        partial(timed, 'floor: python -c "import kfp"', [ctx.python, "-c", "import kfp"], None),
    ]
    for label, nb in notebooks.items():
        compiled = ctx.run([*ctx.nb2kfp, "compile", nb.name, "-o", "out.pipeline.yaml"], TIMEOUT, cwd=nb.parent)
        if not compiled.ok:
            log(f"fast: cannot compile {label}: {compiled.failure()}")
        check = [*ctx.nb2kfp, "compile", "--check", nb.name, "-o", "out.pipeline.yaml"]
        lint = [*ctx.nb2kfp, "lint", nb.name]
        cases.append(partial(timed, f"check {label}", check, label))
        cases.append(partial(timed, f"lint {label}", lint, label))
    reps = ctx.reps * 3  # cheap: more samples, steadier medians
    log(f"check/lint: warm-up, then {reps} repetitions of {len(cases)} commands")
    for call in cases:
        call(-1)
    interleave(reps, cases)

    for key, runs in samples.items():
        t = median(pick_ok(runs))
        failed = [s for s in runs if not s.ok]
        note = f"{len(failed)} of {len(runs)} runs failed: {failed[0].failure()}" if failed else ""
        if key.startswith("floor"):
            res.add(Row(SECTION, key, "s", t, note=note))
            continue
        command, _, label = key.partition(" ")
        metric = f"compile --check {label}" if command == "check" else f"lint {label}"
        if label.endswith("cells"):
            note = (note + " " if note else "") + f"a {BIG}-cell notebook: shown for scale, no target"
            res.add(Row(SECTION, metric, "s", t, note=note))
        else:
            res.add(Row(SECTION, metric, "s", t, target=Target("nb2kfp", "<=", 0.25, " s"), note=note))
