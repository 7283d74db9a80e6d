"""3. Local run, whole process: ``nb2kfp run NB --local --json`` vs Kale's compiled pipeline under kfp.local.

Kale's figure is the run alone (``kale_driver.py``: load the YAML Kale compiled, run it with kfp.local), not its
compile, while nb2kfp's includes compiling: the comparison leans in Kale's favour. Per-step overhead comes from
generated chains of 1 and 6 steps that only do ``x_k = 1``: (t6 - t1) / 5.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
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
    suite = _RunSuite(ctx, ctx.folder("run", fresh=True))
    suite.compile_for_kale()
    suite.warm_up()
    suite.measure()
    suite.report()


class _RunSuite:
    def __init__(self, ctx: Ctx, base: Path) -> None:
        self.ctx = ctx
        self.notebooks = {f"examples/{stem}.ipynb": nb for stem, nb in copy_examples(base).items()}
        self.noop = {n: f"noop, {n} step{'s' if n > 1 else ''}" for n in (1, 6)}  # steps -> case
        for n, label in self.noop.items():
            self.notebooks[label] = gen.write(base / f"noop{n}" / f"noop{n}.ipynb", gen.noop_steps(n))
        self.ours: dict[str, list[Sample]] = {c: [] for c in self.notebooks}
        self.theirs: dict[str, list[Sample]] = {c: [] for c in self.notebooks}
        self.kale_specs: dict[str, Path] = {}
        self.kale_skip: dict[str, tuple[str, str]] = {}  # case -> (short, note)
        self.kale_reps = 1 if ctx.quick else ctx.reps  # a Kale run takes about 9 s per step

    def compile_for_kale(self) -> None:
        """Kale's pipeline of each case it runs (its run is timed without its compile)."""
        for case, nb in self.notebooks.items():
            if not self.ctx.kale_ready:
                self.kale_skip[case] = ("n/a", self.ctx.kale_missing())
            elif self.ctx.quick and case.startswith("examples/"):
                self.kale_skip[case] = ("skipped", "with --quick, Kale runs only the generated notebooks (once each)")
            else:
                self._compile_kale(case, nb)

    def _compile_kale(self, case: str, nb: Path) -> None:
        kale = self.ctx.kale
        assert kale is not None
        name = "bench-" + nb.stem.replace("_", "-")
        s = self.ctx.run(kale.compile_argv(nb, name), COMPILE_TIMEOUT, cwd=nb.parent)
        self.ctx.results.sample("run", case, "kale-compile", s, -1)
        if s.ok and kale.compiled_yaml(nb, name).is_file():
            self.kale_specs[case] = kale.compiled_yaml(nb, name)
        else:
            self.kale_skip[case] = ("fails", f"Kale 2.3.0 cannot compile {case}: {s.failure()}")

    def nb2kfp(self, case: str, rep: int) -> Sample:
        """``nb2kfp run`` of a case; ``rep`` -1 is a warm-up, not counted."""
        nb = self.notebooks[case]
        run_dir = nb.parent / f"nb2kfp-run-{rep}"
        argv = [*self.ctx.nb2kfp, "run", nb.name, "--local", "--no-cache", "--json", "--run-dir", str(run_dir)]
        s = self.ctx.run(argv, TIMEOUT, nb.parent)
        self.ctx.results.sample("run", case, "nb2kfp", s, rep, step_seconds=step_seconds(s.stderr))
        if rep >= 0:
            self.ours[case].append(s)
        shutil.rmtree(run_dir, ignore_errors=True)
        return s

    def kale(self, case: str, rep: int) -> Sample | None:
        """A run of Kale's pipeline of a case with kfp.local (None past Kale's repetitions)."""
        kale = self.ctx.kale
        assert kale is not None
        if rep >= self.kale_reps:
            return None
        root = self.notebooks[case].parent / f"kale-run-{rep}"
        root.mkdir(parents=True, exist_ok=True)
        s = self.ctx.run(kale.run_argv(self.kale_specs[case], root), TIMEOUT, cwd=root)
        self.ctx.results.sample("run", case, "kale", s, rep)
        if rep >= 0:
            self.theirs[case].append(s)
        shutil.rmtree(root, ignore_errors=True)
        return s

    def warm_up(self) -> None:
        log("run: warm-up (one 1-step run each)")
        runs: list[Callable[[str, int], Sample | None]] = [self.nb2kfp]
        if self.noop[1] in self.kale_specs:
            runs.append(self.kale)
        for fn in runs:
            first = fn(self.noop[1], -1)
            if first is not None and not first.ok:
                log(f"run: warm-up failed: {first.failure()}")

    def measure(self) -> None:
        cases: list[Case] = []
        for case in self.notebooks:
            cases.append(partial(self.nb2kfp, case))
            if case in self.kale_specs:
                cases.append(partial(self.kale, case))
        log(
            f"run: {self.ctx.reps} repetitions of {len(cases)} runs (Kale's: {self.kale_reps}; they take about 9 s "
            "per step)"
        )
        interleave(self.ctx.reps, cases)

    def report(self) -> None:
        res = self.ctx.results
        for case in self.notebooks:
            t_o, t_k = median(pick_ok(self.ours[case])), median(pick_ok(self.theirs[case]))
            short, note = self.kale_skip.get(case, ("", ""))
            for tool, runs in (("nb2kfp", self.ours[case]), ("Kale", self.theirs[case])):
                failed = [s for s in runs if not s.ok]
                if failed:
                    note = f"{note} {tool}: {len(failed)} of {len(runs)} runs failed: {failed[0].failure()}".strip()
            res.add(Row(SECTION, f"run {case}", "s", t_o, t_k, Target("ratio", "<=", 0.15), note, short))
        short, note = self.kale_skip.get(self.noop[6], ("", ""))
        res.add(
            Row(SECTION, "per-step overhead (t6 - t1) / 5", "s", self.overhead(self.ours), self.overhead(self.theirs),
                Target("nb2kfp", "<=", 0.05, " s"), note, short)
        )  # fmt: skip
        res.tables["local run details (medians; steps = sum of the per-step seconds nb2kfp prints)"] = [
            _detail(case, self.ours[case], self.theirs[case]) for case in self.notebooks
        ]

    def overhead(self, runs: dict[str, list[Sample]]) -> float | None:
        """The seconds each step adds: (t6 - t1) / 5 of the no-op chains."""
        t1, t6 = median(pick_ok(runs[self.noop[1]])), median(pick_ok(runs[self.noop[6]]))
        return (t6 - t1) / 5 if t1 is not None and t6 is not None else None


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
