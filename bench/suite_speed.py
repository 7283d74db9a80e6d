"""4. Notebook speed on iris (examples/iris_diamond.ipynb), side by side in one run: nb2kfp vs papermill vs Kale.

- cold: ``nb2kfp run --local --no-cache`` (independent steps side by side) and with ``--jobs 1`` (that lever
  off); papermill running the notebook top to bottom; Kale's compiled pipeline under kfp.local.
- incremental: after a first run fills the cache, each repetition edits ``train_logreg``'s hyper-parameter
  (``max_iter``, a new value each time) and runs again: nb2kfp with its cache; Kale with kfp.local's task
  cache on (its compile after the edit is not timed); papermill has no cache (its cold figure again).
  nb2kfp's runs there keep step processes warm for the next run (NB2KFP_WARM_KEEP, local_run/kept.py), as a
  user's do; after every command the bench waits until those are idle (Ctx.run), as a user's edit would. Every
  other nb2kfp run keeps none (measure.base_env): a cold run starts from scratch, as papermill does. The case
  "incremental, NB2KFP_WARM=0" shows the edit with nothing started ahead or kept.
- markdown only: a markdown cell edited, then a run: how many steps ran, and the time.
- corpus: cold runs of five tests/corpus notebooks against papermill, the median ratio (:mod:`corpus_speed`).
"""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import corpus_speed
from context import EXAMPLES, Case, Ctx, interleave, log, pick_ok
from measure import Sample, median
from report import Row, Target

TIMEOUT = 900.0
SECTION = "4. notebook speed, iris and corpus notebooks (whole process, median)"
NOTEBOOK = "iris_diamond.ipynb"
_LOGREG = "LogisticRegression(C=C, max_iter={})"


def _set_max_iter(nb: Path, value: int) -> None:
    data = json.loads(nb.read_text(encoding="utf-8"))
    for cell in data["cells"]:
        text = "".join(cell["source"])
        if "LogisticRegression(C=C, max_iter=" in text:
            start = text.index("LogisticRegression(C=C, max_iter=")
            end = text.index(")", start)
            cell["source"] = text[:start] + _LOGREG.format(value) + text[end + 1 :]
    nb.write_text(json.dumps(data), encoding="utf-8")


def _edit_markdown(nb: Path, rep: int) -> None:
    data = json.loads(nb.read_text(encoding="utf-8"))
    first = next(c for c in data["cells"] if c["cell_type"] == "markdown")
    first["source"] = "".join(first["source"]).split("\n<!-- edit")[0] + f"\n<!-- edit {rep} -->"
    nb.write_text(json.dumps(data), encoding="utf-8")


def _steps_run(s: Sample) -> int | None:
    try:
        return sum(1 for v in json.loads(s.stdout)["steps"].values() if v == "succeeded")
    except (ValueError, KeyError, TypeError):
        return None


# The edit-and-run cases keep step processes warm for the next run (local_run/kept.py), as a user's runs do; the
# bench waits for them to be idle after each command (Ctx.run), as a user's edit does
KEPT = {"NB2KFP_WARM_KEEP": "600"}


def run_suite(ctx: Ctx) -> None:
    res = ctx.results
    base = ctx.folder("speed", fresh=True)
    folders = {name: base / name for name in ("cold", "incremental", "papermill", "kale")}
    nbs = {}
    for name, folder in folders.items():
        folder.mkdir()
        nbs[name] = Path(shutil.copy2(EXAMPLES / NOTEBOOK, folder / NOTEBOOK))
    samples: dict[str, list[Sample]] = {}
    steps_run: dict[str, list[int | None]] = {}

    def keep(key: str, tool: str, s: Sample, rep: int) -> Sample:
        res.sample("speed", key, tool, s, rep)
        if rep >= 0:
            samples.setdefault(key, []).append(s)
            steps_run.setdefault(key, []).append(_steps_run(s))
        if not s.ok:
            log(f"speed: {key} failed: {s.failure()}")
        return s

    def nb2kfp(key: str, nb: Path, extra: list[str], rep: int, **env: str) -> Sample:
        argv = [*ctx.nb2kfp, "run", nb.name, "--local", "--json", *extra]
        return keep(key, "nb2kfp", ctx.run(argv, TIMEOUT, nb.parent, **env), rep)

    def cold(extra: list[str], key: str, rep: int, **env: str) -> None:
        nb2kfp(key, nbs["cold"], ["--no-cache", *extra], rep, **env)

    def incremental(rep: int) -> None:
        _set_max_iter(nbs["incremental"], 501 + rep)
        nb2kfp("nb2kfp incremental (train_logreg edited)", nbs["incremental"], [], rep, **KEPT)

    def incremental_nothing_warm(rep: int) -> None:
        _set_max_iter(nbs["incremental"], 701 + rep)
        nb2kfp("nb2kfp incremental, NB2KFP_WARM=0", nbs["incremental"], [], rep, NB2KFP_WARM="0")

    def unchanged(rep: int) -> None:  # nothing edited since the last run: every step from the cache
        nb2kfp("nb2kfp unchanged (nothing edited)", nbs["incremental"], [], rep, **KEPT)

    def unchanged_nothing_warm(rep: int) -> None:
        nb2kfp("nb2kfp unchanged, NB2KFP_WARM=0", nbs["incremental"], [], rep, NB2KFP_WARM="0")

    def new_file(rep: int) -> None:  # `nb2kfp compile` writes the spec beside the notebook, a scratch file is saved
        (nbs["incremental"].parent / f"notes-{rep}.txt").write_text("scratch", encoding="utf-8")
        nb2kfp("nb2kfp new unrelated file beside it", nbs["incremental"], [], rep, **KEPT)

    def markdown(rep: int) -> None:
        _edit_markdown(nbs["incremental"], rep)
        nb2kfp("nb2kfp markdown-only edit", nbs["incremental"], [], rep, **KEPT)

    def papermill(rep: int) -> None:
        nb = nbs["papermill"]
        argv = [ctx.python, "-m", "papermill", "--no-progress-bar", nb.name, "out.ipynb"]
        keep("papermill", "papermill", ctx.run(argv, TIMEOUT, nb.parent), rep)

    kale_reps = 1 if ctx.quick else ctx.reps
    kale_nb, kale_cache = nbs["kale"], folders["kale"] / "kfp-cache"

    def kale_spec() -> Path | None:
        assert ctx.kale is not None
        s = ctx.run(ctx.kale.compile_argv(kale_nb, "bench-iris"), TIMEOUT, cwd=kale_nb.parent)
        res.sample("speed", "kale compile", "kale-compile", s, -1)
        spec = ctx.kale.compiled_yaml(kale_nb, "bench-iris")
        return spec if s.ok and spec.is_file() else None

    def kale(rep: int, *, cached: bool) -> None:
        if rep >= kale_reps or ctx.kale is None:
            return
        if cached:
            _set_max_iter(kale_nb, 501 + rep)
        spec = kale_spec()
        if spec is None:
            log("speed: Kale could not compile iris")
            return
        root = kale_nb.parent / f"run-{'inc' if cached else 'cold'}-{rep}"
        argv = ctx.kale.run_argv(spec, root, kale_cache if cached else None)
        key = "Kale incremental (kfp.local cache)" if cached else "Kale cold"
        keep(key, "kale", ctx.run(argv, TIMEOUT, cwd=kale_nb.parent), rep)

    log("speed: warm-up, and a first run that fills each cache")
    papermill(-1)
    nb2kfp("nb2kfp first run", nbs["incremental"], [], -1, **KEPT)
    if ctx.kale_ready:
        kale_spec_path = kale_spec()
        if kale_spec_path is not None and ctx.kale is not None:
            s = ctx.run(ctx.kale.run_argv(kale_spec_path, kale_nb.parent / "run-first", kale_cache), TIMEOUT)
            res.sample("speed", "Kale first run", "kale", s, -1)
    cases: list[Case] = [
        partial(cold, [], "nb2kfp cold"),
        partial(cold, ["--jobs", "1"], "nb2kfp cold, --jobs 1"),
        partial(cold, [], "nb2kfp cold, NB2KFP_WARM=0", NB2KFP_WARM="0"),
        papermill,
        incremental,
        incremental_nothing_warm,
        unchanged,
        unchanged_nothing_warm,
        new_file,
        markdown,
    ]
    if ctx.kale_ready:
        cases += [partial(kale, cached=False), partial(kale, cached=True)]
    interleave(ctx.reps, cases)

    def t(key: str) -> float | None:
        return median(pick_ok(samples.get(key, [])))

    t_cold, t_pm, t_kale = t("nb2kfp cold"), t("papermill"), t("Kale cold")
    t_inc, t_kale_inc = t("nb2kfp incremental (train_logreg edited)"), t("Kale incremental (kfp.local cache)")
    kale_note = "" if ctx.kale_ready else ctx.kale_missing()
    res.add(Row(SECTION, "cold run iris", "s", t_cold, t_kale, Target("ratio", "<=", 0.15), kale_note))
    res.add(Row(SECTION, "incremental re-run iris (one leaf edited)", "s", t_inc, t_kale_inc, None, kale_note))
    res.add(
        Row(SECTION, "cold run / papermill", "x", _ratio(t_cold, t_pm), None, Target("nb2kfp", "<=", 1.0),
            "papermill 2.7 runs the notebook top to bottom in one kernel, same machine, same run")
    )  # fmt: skip
    res.add(Row(SECTION, "incremental / cold run", "x", _ratio(t_inc, t_cold), None, Target("nb2kfp", "<=", 0.25)))
    t_same = t("nb2kfp unchanged (nothing edited)")
    res.add(Row(SECTION, "unchanged / cold run", "x", _ratio(t_same, t_cold), None, Target("nb2kfp", "<=", 0.1)))
    new = [n for n in steps_run.get("nb2kfp new unrelated file beside it", []) if n is not None]
    res.add(Row(SECTION, "steps run after a new unrelated file", "", max(new) if new else None, None,
                Target("nb2kfp", "<=", 0)))  # fmt: skip
    md = [n for n in steps_run.get("nb2kfp markdown-only edit", []) if n is not None]
    res.add(Row(SECTION, "steps run after a markdown-only edit", "", max(md) if md else None, None,
                Target("nb2kfp", "<=", 0)))  # fmt: skip
    table = []
    for key in (*samples.keys(),):
        runs = steps_run.get(key, [])
        table.append(
            {
                "case": key,
                "median s": f"{t(key):.2f}" if t(key) is not None else "n/a",
                "/ papermill": f"{_ratio(t(key), t_pm):.2f}" if _ratio(t(key), t_pm) is not None else "n/a",
                "/ nb2kfp cold": f"{_ratio(t(key), t_cold):.2f}" if _ratio(t(key), t_cold) is not None else "n/a",
                "steps run": ",".join(str(n) for n in runs if n is not None) or "-",
                "runs ok": f"{sum(s.ok for s in samples[key])}/{len(samples[key])}",
            }
        )
    res.tables["notebook speed on iris: every case (medians; ratios against papermill and nb2kfp's cold run)"] = table
    corpus = corpus_speed.run(ctx, SECTION)
    res.tables["notebook speed on corpus notebooks: cold run vs papermill (medians)"] = corpus


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
