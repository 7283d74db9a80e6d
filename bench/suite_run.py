"""3. Local run, whole process: ``nb2kfp run NB --local --json`` vs Kale's compiled pipeline under kfp.local.

Kale's figure is the run alone (``kale_driver.py``: load the YAML Kale compiled, run it with kfp.local), not its
compile, while nb2kfp's includes compiling: the comparison leans in Kale's favour. Per-step overhead comes from
generated chains of 1 and 6 steps that only do ``x_k = 1``: (t6 - t1) / 5.
"""

from __future__ import annotations

import re
import shutil
from functools import partial
from pathlib import Path

import notebooks as gen
from context import Case, Ctx, copy_examples, interleave, log, pick_ok
from measure import Sample, median
from report import Row, Target

TIMEOUT = 900.0
COMPILE_TIMEOUT = 300.0
SECTION = "3. local run (whole process, median)"
_STEP_LINE = re.compile(r"^\s+ok\s+(\S+)\s+([\d.]+)s$", re.MULTILINE)


def step_seconds(stderr: str) -> dict[str, float]:
    """Per-step seconds that ``nb2kfp run`` prints to stderr (``      ok  name 1.23s``)."""
    return {name: float(sec) for name, sec in _STEP_LINE.findall(stderr)}


def run_suite(ctx: Ctx) -> None:
    res = ctx.results
    base = ctx.folder("run", fresh=True)
    notebooks = {f"examples/{stem}.ipynb": nb for stem, nb in copy_examples(base).items()}
    noop = {n: f"noop, {n} step{'s' if n > 1 else ''}" for n in (1, 6)}
    for n, label in noop.items():
        notebooks[label] = gen.write(base / f"noop{n}" / f"noop{n}.ipynb", gen.noop_steps(n))
    ours: dict[str, list[Sample]] = {c: [] for c in notebooks}
    theirs: dict[str, list[Sample]] = {c: [] for c in notebooks}
    kale_specs: dict[str, Path] = {}
    kale_skip: dict[str, tuple[str, str]] = {}  # case -> (short, note)

    for case, nb in notebooks.items():
        if not ctx.kale_ready:
            kale_skip[case] = ("n/a", ctx.kale_missing())
        elif ctx.quick and case.startswith("examples/"):
            kale_skip[case] = ("skipped", "with --quick, Kale runs only the generated notebooks (once each)")
        else:
            assert ctx.kale is not None
            name = "bench-" + nb.stem.replace("_", "-")
            s = ctx.run(ctx.kale.compile_argv(nb, name), COMPILE_TIMEOUT, cwd=nb.parent)
            res.sample("run", case, "kale-compile", s, -1)
            if s.ok and ctx.kale.compiled_yaml(nb, name).is_file():
                kale_specs[case] = ctx.kale.compiled_yaml(nb, name)
            else:
                kale_skip[case] = ("fails", f"Kale 2.3.0 cannot compile {case}: {s.failure()}")

    def nb2kfp(case: str, rep: int) -> Sample:
        nb = notebooks[case]
        run_dir = nb.parent / f"nb2kfp-run-{rep}"
        argv = [*ctx.nb2kfp, "run", nb.name, "--local", "--no-cache", "--json", "--run-dir", str(run_dir)]
        s = ctx.run(argv, TIMEOUT, nb.parent)
        res.sample("run", case, "nb2kfp", s, rep, step_seconds=step_seconds(s.stderr))
        if rep >= 0:
            ours[case].append(s)
        shutil.rmtree(run_dir, ignore_errors=True)
        return s

    kale_reps = 1 if ctx.quick else ctx.reps  # a Kale run takes about 9 s per step

    def kale(case: str, rep: int) -> Sample | None:
        assert ctx.kale is not None
        if rep >= kale_reps:
            return None
        root = notebooks[case].parent / f"kale-run-{rep}"
        root.mkdir(parents=True, exist_ok=True)
        s = ctx.run(ctx.kale.run_argv(kale_specs[case], root), TIMEOUT, cwd=root)
        res.sample("run", case, "kale", s, rep)
        if rep >= 0:
            theirs[case].append(s)
        shutil.rmtree(root, ignore_errors=True)
        return s

    log("run: warm-up (one 1-step run each)")
    for fn in (nb2kfp, kale):
        if fn is kale and noop[1] not in kale_specs:
            continue
        first = fn(noop[1], -1)
        if first is not None and not first.ok:
            log(f"run: warm-up failed: {first.failure()}")
    cases: list[Case] = []
    for case in notebooks:
        cases.append(partial(nb2kfp, case))
        if case in kale_specs:
            cases.append(partial(kale, case))
    log(f"run: {ctx.reps} repetitions of {len(cases)} runs (Kale's: {kale_reps}; they take about 9 s per step)")
    interleave(ctx.reps, cases)

    for case in notebooks:
        t_o, t_k = median(pick_ok(ours[case])), median(pick_ok(theirs[case]))
        short, note = kale_skip.get(case, ("", ""))
        for tool, runs in (("nb2kfp", ours[case]), ("Kale", theirs[case])):
            failed = [s for s in runs if not s.ok]
            if failed:
                note = f"{note} {tool}: {len(failed)} of {len(runs)} runs failed: {failed[0].failure()}".strip()
        res.add(Row(SECTION, f"run {case}", "s", t_o, t_k, Target("ratio", "<=", 0.15), note, short))

    def overhead(runs: dict[str, list[Sample]]) -> float | None:
        t1, t6 = median(pick_ok(runs[noop[1]])), median(pick_ok(runs[noop[6]]))
        return (t6 - t1) / 5 if t1 is not None and t6 is not None else None

    short, note = kale_skip.get(noop[6], ("", ""))
    res.add(
        Row(SECTION, "per-step overhead (t6 - t1) / 5", "s", overhead(ours), overhead(theirs),
            Target("nb2kfp", "<=", 0.05, " s"), note, short)
    )  # fmt: skip
    res.tables["local run details (medians; steps = sum of the per-step seconds nb2kfp prints)"] = [
        _detail(case, ours[case], theirs[case]) for case in notebooks
    ]


def _detail(case: str, ours: list[Sample], theirs: list[Sample]) -> dict[str, str]:
    ok = [s for s in ours if s.ok]
    total = median([s.seconds for s in ok])
    in_steps = median([sum(step_seconds(s.stderr).values()) for s in ok])
    rss_o = max((s.maxrss_kb for s in ours), default=0) / 1024
    rss_k = max((s.maxrss_kb for s in theirs), default=0) / 1024
    t_k = median(pick_ok(theirs))
    return {
        "case": case,
        "nb2kfp s": f"{total:.2f}" if total is not None else "n/a",
        "in steps s": f"{in_steps:.2f}" if in_steps is not None else "n/a",
        "outside steps s": f"{total - in_steps:.2f}" if total is not None and in_steps is not None else "n/a",
        "nb2kfp peak MiB": f"{rss_o:.0f}",
        "Kale s": f"{t_k:.2f}" if t_k is not None else "n/a",
        "Kale peak MiB": f"{rss_k:.0f}" if rss_k else "n/a",
    }
