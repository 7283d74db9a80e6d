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
    _Speed(ctx).run()


class _Speed:
    """The suite's cases on copies of iris (one folder per tool), their samples, and the rows they give."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx, self.res = ctx, ctx.results
        base = ctx.folder("speed", fresh=True)
        self.folders = {name: base / name for name in ("cold", "incremental", "papermill", "kale")}
        self.nbs = {}
        for name, folder in self.folders.items():
            folder.mkdir()
            self.nbs[name] = Path(shutil.copy2(EXAMPLES / NOTEBOOK, folder / NOTEBOOK))
        self.samples: dict[str, list[Sample]] = {}
        self.steps_run: dict[str, list[int | None]] = {}
        self.kale_reps = 1 if ctx.quick else ctx.reps
        self.kale_nb, self.kale_cache = self.nbs["kale"], self.folders["kale"] / "kfp-cache"

    def run(self) -> None:
        log("speed: warm-up, and a first run that fills each cache")
        self.warm_up()
        interleave(self.ctx.reps, self.cases())
        self.report()
        corpus = corpus_speed.run(self.ctx, SECTION)
        self.res.tables["notebook speed on corpus notebooks: cold run vs papermill (medians)"] = corpus

    def keep(self, key: str, tool: str, s: Sample, rep: int) -> Sample:
        self.res.sample("speed", key, tool, s, rep)
        if rep >= 0:
            self.samples.setdefault(key, []).append(s)
            self.steps_run.setdefault(key, []).append(_steps_run(s))
        if not s.ok:
            log(f"speed: {key} failed: {s.failure()}")
        return s

    def nb2kfp(self, key: str, nb: Path, extra: list[str], rep: int, **env: str) -> Sample:
        argv = [*self.ctx.nb2kfp, "run", nb.name, "--local", "--json", *extra]
        return self.keep(key, "nb2kfp", self.ctx.run(argv, TIMEOUT, nb.parent, **env), rep)

    def cold(self, extra: list[str], key: str, rep: int, **env: str) -> None:
        self.nb2kfp(key, self.nbs["cold"], ["--no-cache", *extra], rep, **env)

    def incremental(self, rep: int) -> None:
        _set_max_iter(self.nbs["incremental"], 501 + rep)
        self.nb2kfp("nb2kfp incremental (train_logreg edited)", self.nbs["incremental"], [], rep, **KEPT)

    def incremental_nothing_warm(self, rep: int) -> None:
        _set_max_iter(self.nbs["incremental"], 701 + rep)
        self.nb2kfp("nb2kfp incremental, NB2KFP_WARM=0", self.nbs["incremental"], [], rep, NB2KFP_WARM="0")

    def unchanged(self, rep: int) -> None:  # nothing edited since the last run: every step from the cache
        self.nb2kfp("nb2kfp unchanged (nothing edited)", self.nbs["incremental"], [], rep, **KEPT)

    def unchanged_nothing_warm(self, rep: int) -> None:
        self.nb2kfp("nb2kfp unchanged, NB2KFP_WARM=0", self.nbs["incremental"], [], rep, NB2KFP_WARM="0")

    def new_file(self, rep: int) -> None:  # `nb2kfp compile` writes the spec beside the notebook, a scratch file
        (self.nbs["incremental"].parent / f"notes-{rep}.txt").write_text("scratch", encoding="utf-8")
        self.nb2kfp("nb2kfp new unrelated file beside it", self.nbs["incremental"], [], rep, **KEPT)

    def markdown(self, rep: int) -> None:
        _edit_markdown(self.nbs["incremental"], rep)
        self.nb2kfp("nb2kfp markdown-only edit", self.nbs["incremental"], [], rep, **KEPT)

    def papermill(self, rep: int) -> None:
        nb = self.nbs["papermill"]
        argv = [self.ctx.python, "-m", "papermill", "--no-progress-bar", nb.name, "out.ipynb"]
        self.keep("papermill", "papermill", self.ctx.run(argv, TIMEOUT, nb.parent), rep)

    def kale_spec(self) -> Path | None:
        assert self.ctx.kale is not None
        s = self.ctx.run(self.ctx.kale.compile_argv(self.kale_nb, "bench-iris"), TIMEOUT, cwd=self.kale_nb.parent)
        self.res.sample("speed", "kale compile", "kale-compile", s, -1)
        spec = self.ctx.kale.compiled_yaml(self.kale_nb, "bench-iris")
        return spec if s.ok and spec.is_file() else None

    def kale(self, rep: int, *, cached: bool) -> None:
        if rep >= self.kale_reps or self.ctx.kale is None:
            return
        if cached:
            _set_max_iter(self.kale_nb, 501 + rep)
        spec = self.kale_spec()
        if spec is None:
            log("speed: Kale could not compile iris")
            return
        root = self.kale_nb.parent / f"run-{'inc' if cached else 'cold'}-{rep}"
        argv = self.ctx.kale.run_argv(spec, root, self.kale_cache if cached else None)
        key = "Kale incremental (kfp.local cache)" if cached else "Kale cold"
        self.keep(key, "kale", self.ctx.run(argv, TIMEOUT, cwd=self.kale_nb.parent), rep)

    def warm_up(self) -> None:
        self.papermill(-1)
        self.nb2kfp("nb2kfp first run", self.nbs["incremental"], [], -1, **KEPT)
        if not self.ctx.kale_ready or self.ctx.kale is None:
            return
        spec = self.kale_spec()
        if spec is not None:
            argv = self.ctx.kale.run_argv(spec, self.kale_nb.parent / "run-first", self.kale_cache)
            self.res.sample("speed", "Kale first run", "kale", self.ctx.run(argv, TIMEOUT), -1)

    def cases(self) -> list[Case]:
        cases: list[Case] = [
            partial(self.cold, [], "nb2kfp cold"),
            partial(self.cold, ["--jobs", "1"], "nb2kfp cold, --jobs 1"),
            partial(self.cold, [], "nb2kfp cold, NB2KFP_WARM=0", NB2KFP_WARM="0"),
            self.papermill,
            self.incremental,
            self.incremental_nothing_warm,
            self.unchanged,
            self.unchanged_nothing_warm,
            self.new_file,
            self.markdown,
        ]
        if self.ctx.kale_ready:
            cases += [partial(self.kale, cached=False), partial(self.kale, cached=True)]
        return cases

    def t(self, key: str) -> float | None:
        return median(pick_ok(self.samples.get(key, [])))

    def most_steps_run(self, key: str) -> int | None:
        runs = [n for n in self.steps_run.get(key, []) if n is not None]
        return max(runs) if runs else None

    def report(self) -> None:
        t, res = self.t, self.res
        t_cold, t_pm, t_kale = t("nb2kfp cold"), t("papermill"), t("Kale cold")
        t_inc, t_kale_inc = t("nb2kfp incremental (train_logreg edited)"), t("Kale incremental (kfp.local cache)")
        kale_note = "" if self.ctx.kale_ready else self.ctx.kale_missing()
        res.add(Row(SECTION, "cold run iris", "s", t_cold, t_kale, Target("ratio", "<=", 0.15), kale_note))
        res.add(Row(SECTION, "incremental re-run iris (one leaf edited)", "s", t_inc, t_kale_inc, None, kale_note))
        res.add(
            Row(SECTION, "cold run / papermill", "x", _ratio(t_cold, t_pm), None, Target("nb2kfp", "<=", 1.0),
                "papermill 2.7 runs the notebook top to bottom in one kernel, same machine, same run")
        )  # fmt: skip
        inc = _ratio(t_inc, t_cold)
        res.add(Row(SECTION, "incremental / cold run", "x", inc, None, Target("nb2kfp", "<=", 0.25)))
        same = _ratio(t("nb2kfp unchanged (nothing edited)"), t_cold)
        res.add(Row(SECTION, "unchanged / cold run", "x", same, None, Target("nb2kfp", "<=", 0.1)))
        for what, key in (("a new unrelated file", "nb2kfp new unrelated file beside it"),
                          ("a markdown-only edit", "nb2kfp markdown-only edit")):  # fmt: skip
            steps = self.most_steps_run(key)
            res.add(Row(SECTION, f"steps run after {what}", "", steps, None, Target("nb2kfp", "<=", 0)))
        res.tables["notebook speed on iris: every case (medians; ratios against papermill and nb2kfp's cold run)"] = [
            self.table_row(key, t_pm, t_cold) for key in self.samples
        ]

    def table_row(self, key: str, t_pm: float | None, t_cold: float | None) -> dict[str, str]:
        value = self.t(key)

        def shown(x: float | None) -> str:
            return f"{x:.2f}" if x is not None else "n/a"

        runs = self.steps_run.get(key, [])
        return {
            "case": key,
            "median s": shown(value),
            "/ papermill": shown(_ratio(value, t_pm)),
            "/ nb2kfp cold": shown(_ratio(value, t_cold)),
            "steps run": ",".join(str(n) for n in runs if n is not None) or "-",
            "runs ok": f"{sum(s.ok for s in self.samples[key])}/{len(self.samples[key])}",
        }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
