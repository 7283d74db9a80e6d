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
    res = ctx.results
    base = ctx.folder("compile", fresh=True)
    notebooks = {f"examples/{stem}.ipynb": nb for stem, nb in copy_examples(base).items()}
    for n in SIZES:
        notebooks[f"{n} cells"] = gen.write(base / f"cells-{n}" / f"cells{n}.ipynb", gen.sized(n))
    ours: dict[str, list[Sample]] = {case: [] for case in notebooks}
    theirs: dict[str, list[Sample]] = {case: [] for case in notebooks}
    kale_error: dict[str, str] = {}

    def nb2kfp(case: str, rep: int) -> Sample:
        nb = notebooks[case]
        s = ctx.run([*ctx.nb2kfp, "compile", nb.name, "-o", "nb2kfp.pipeline.yaml"], TIMEOUT, cwd=nb.parent)
        res.sample("compile", case, "nb2kfp", s, rep)
        if rep >= 0:
            ours[case].append(s)
        return s

    def kale(case: str, rep: int) -> Sample:
        assert ctx.kale is not None
        nb = notebooks[case]
        s = ctx.run(ctx.kale.compile_argv(nb, _name(case)), TIMEOUT, cwd=nb.parent)
        if s.ok and not ctx.kale.compiled_yaml(nb, _name(case)).is_file():
            s.returncode = 99  # "succeeded" without writing the pipeline: count as a failure
            s.stderr += f"\nbench: {ctx.kale.compiled_yaml(nb, _name(case))} was not written"
        res.sample("compile", case, "kale", s, rep)
        if rep >= 0:
            theirs[case].append(s)
        return s

    log(f"compile: warm-up and Kale probe on {len(notebooks)} notebooks")
    for case in notebooks:
        first = nb2kfp(case, -1)
        if not first.ok:
            log(f"compile: nb2kfp failed on {case}: {first.failure()}")
        if ctx.kale_ready:
            probe = kale(case, -1)
            if not probe.ok:
                kale_error[case] = probe.failure()
                log(f"compile: Kale cannot compile {case}: {kale_error[case]}")
    cases: list[Case] = []
    for case in notebooks:
        cases.append(partial(nb2kfp, case))
        if ctx.kale_ready and case not in kale_error:
            cases.append(partial(kale, case))
    log(f"compile: {ctx.reps} repetitions of {len(cases)} commands")
    interleave(ctx.reps, cases)

    def kale_note(case: str) -> tuple[str, str]:
        if not ctx.kale_ready:
            return "n/a", ctx.kale_missing()
        if case in kale_error:
            return "fails", f"Kale 2.3.0 cannot compile {case}: {kale_error[case]}"
        return "", ""

    for case in notebooks:
        t_ours, t_theirs = median(pick_ok(ours[case])), median(pick_ok(theirs[case]))
        short, note = kale_note(case)
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
        _curve(ours, theirs, notebooks)
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
