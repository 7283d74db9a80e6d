"""1. Compile one notebook, whole process: ``nb2kfp compile NB -o OUT`` vs ``kale --nb NB``.

On each example and on generated chains of 10, 100 and 1,000 cells (the curve shows the growth per cell).
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import notebooks as gen
from context import Case, Ctx, copy_examples, interleave, log, pick_ok
from measure import Sample, median
from report import Row, Target

SIZES = (10, 100, 1000)
TIMEOUT = 600.0
SECTION = "1. compile one notebook (whole process, median)"


def code_cells(notebook: Path) -> int:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(1 for c in cells if c["cell_type"] == "code")


def step_cells(notebook: Path) -> int:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(1 for c in cells if any(t.startswith("step:") for t in c["metadata"].get("tags", [])))


def _name(case: str) -> str:
    return "bench-" + re.sub(r"[^a-z0-9]+", "-", case.lower()).strip("-")


def run_suite(ctx: Ctx) -> None:
    suite = _CompileSuite(ctx, _notebooks(ctx.folder("compile", fresh=True)))
    suite.warm_up()
    suite.measure()
    suite.report()


def _notebooks(base: Path) -> dict[str, Path]:
    """The cases: the examples, and generated chains of :data:`SIZES` cells."""
    notebooks = {f"examples/{stem}.ipynb": nb for stem, nb in copy_examples(base).items()}
    for n in SIZES:
        notebooks[f"{n} cells"] = gen.write(base / f"cells-{n}" / f"cells{n}.ipynb", gen.sized(n))
    return notebooks


class _CompileSuite:
    def __init__(self, ctx: Ctx, notebooks: dict[str, Path]) -> None:
        self.ctx, self.notebooks = ctx, notebooks
        self.ours: dict[str, list[Sample]] = {case: [] for case in notebooks}
        self.theirs: dict[str, list[Sample]] = {case: [] for case in notebooks}
        self.kale_error: dict[str, str] = {}  # case -> why Kale cannot compile it

    def nb2kfp(self, case: str, rep: int) -> Sample:
        """``nb2kfp compile`` on a case; ``rep`` -1 is a warm-up, not counted."""
        nb = self.notebooks[case]
        s = self.ctx.run([*self.ctx.nb2kfp, "compile", nb.name, "-o", "nb2kfp.pipeline.yaml"], TIMEOUT, cwd=nb.parent)
        self.ctx.results.sample("compile", case, "nb2kfp", s, rep)
        if rep >= 0:
            self.ours[case].append(s)
        return s

    def kale(self, case: str, rep: int) -> Sample:
        kale = self.ctx.kale
        assert kale is not None
        nb = self.notebooks[case]
        s = self.ctx.run(kale.compile_argv(nb, _name(case)), TIMEOUT, cwd=nb.parent)
        if s.ok and not kale.compiled_yaml(nb, _name(case)).is_file():
            s.returncode = 99  # "succeeded" without writing the pipeline: count as a failure
            s.stderr += f"\nbench: {kale.compiled_yaml(nb, _name(case))} was not written"
        self.ctx.results.sample("compile", case, "kale", s, rep)
        if rep >= 0:
            self.theirs[case].append(s)
        return s

    def warm_up(self) -> None:
        """One compile of each case by each tool, not counted; the cases Kale cannot compile are left out."""
        log(f"compile: warm-up and Kale probe on {len(self.notebooks)} notebooks")
        for case in self.notebooks:
            first = self.nb2kfp(case, -1)
            if not first.ok:
                log(f"compile: nb2kfp failed on {case}: {first.failure()}")
            if self.ctx.kale_ready:
                probe = self.kale(case, -1)
                if not probe.ok:
                    self.kale_error[case] = probe.failure()
                    log(f"compile: Kale cannot compile {case}: {self.kale_error[case]}")

    def measure(self) -> None:
        cases: list[Case] = []
        for case in self.notebooks:
            cases.append(partial(self.nb2kfp, case))
            if self.ctx.kale_ready and case not in self.kale_error:
                cases.append(partial(self.kale, case))
        log(f"compile: {self.ctx.reps} repetitions of {len(cases)} commands")
        interleave(self.ctx.reps, cases)

    def kale_note(self, case: str) -> tuple[str, str]:
        """(short, note) of the Kale column of a case."""
        if not self.ctx.kale_ready:
            return "n/a", self.ctx.kale_missing()
        if case in self.kale_error:
            return "fails", f"Kale 2.3.0 cannot compile {case}: {self.kale_error[case]}"
        return "", ""

    def report(self) -> None:
        res, ours, theirs = self.ctx.results, self.ours, self.theirs
        for case in self.notebooks:
            t_ours, t_theirs = median(pick_ok(ours[case])), median(pick_ok(theirs[case]))
            short, note = self.kale_note(case)
            if t_ours is None:
                note = f"nb2kfp failed: {ours[case][0].failure() if ours[case] else 'no sample'}. {note}".strip()
            res.add(Row(SECTION, f"compile {case}", "s", t_ours, t_theirs, Target("ratio", "<=", 0.1), note, short))
        big = f"{SIZES[-1]} cells"
        res.add(
            Row(
                SECTION,
                f"compile {big}, absolute",
                "s",
                median(pick_ok(ours[big])),
                target=Target("nb2kfp", "<=", 3.0, " s"),
            )
        )
        res.tables["compile curve (median seconds; per cell = t/cells; marginal = dt/dcells from the size before)"] = (
            _curve(ours, theirs, self.notebooks)
        )


def _ms_per_cell(t: float | None, cells: int) -> str:
    return f"{t / cells * 1000:.1f}" if t is not None else "n/a"


def _marginal(t: float | None, t_prev: float | None, cells: int, cells_prev: int) -> str:
    if t is None or t_prev is None or cells == cells_prev:
        return "-"
    return f"{(t - t_prev) / (cells - cells_prev) * 1000:.2f}"


def _curve(
    ours: dict[str, list[Sample]], theirs: dict[str, list[Sample]], notebooks: dict[str, Path]
) -> list[dict[str, str | int]]:
    table: list[dict[str, str | int]] = []
    prev: tuple[int, float | None, float | None] = (0, None, None)
    for n in SIZES:
        case = f"{n} cells"
        cells = code_cells(notebooks[case])
        t_o, t_k = median(pick_ok(ours[case])), median(pick_ok(theirs[case]))
        rss_o = max((s.maxrss_kb for s in ours[case]), default=0) / 1024
        rss_k = max((s.maxrss_kb for s in theirs[case]), default=0) / 1024
        table.append(
            {
                "cells": cells,
                "steps": step_cells(notebooks[case]),
                "nb2kfp s": f"{t_o:.3f}" if t_o is not None else "n/a",
                "ms/cell": _ms_per_cell(t_o, cells),
                "marginal ms/cell": _marginal(t_o, prev[1], cells, prev[0]),
                "peak MiB": f"{rss_o:.0f}",
                "Kale s": f"{t_k:.3f}" if t_k is not None else "n/a",
                "Kale ms/cell": _ms_per_cell(t_k, cells),
                "Kale marginal": _marginal(t_k, prev[2], cells, prev[0]),
                "Kale peak MiB": f"{rss_k:.0f}" if rss_k else "n/a",
                "ratio": f"{t_o / t_k:.3f}" if t_o is not None and t_k else "n/a",
            }
        )
        prev = (cells, t_o, t_k)
    return table
