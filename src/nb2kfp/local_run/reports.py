"""Step reports and the run report of a local run.

Each reported step writes an executed notebook of its cells (``runtime/step.py``) as its ``system.HTML``
artifact; here, on the host, nbconvert renders it to ``reports/<step>.html``. ``report.html`` then shows the
DAG, each step's status and duration on a timeline, the metrics and links to the step pages: one
self-contained page (no scripts, nothing fetched). Every page written here carries a Content-Security-Policy that
forbids script and fetches (``runtime.step.REPORT_POLICY``): outputs made from someone else's data cannot run code
when a page is opened.
"""

from __future__ import annotations

import concurrent.futures
import functools
import html
import json
import logging
import re
import shutil
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from nb2kfp import kfpnames
from nb2kfp.atomic import write_text
from nb2kfp.backends.kfp_spec import REPORT_KEY
from nb2kfp.ir import Pipeline, Step
from nb2kfp.runtime.step import with_policy

_REMOTE_SCRIPT = re.compile(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>')
_COLORS = {"succeeded": "#2e7d32", "failed": "#c62828", "interrupted": "#ef6c00", "running": "#1565c0"}
_GREY = "#9e9e9e"


def reported(pipeline: Pipeline) -> Pipeline:
    """Every notebook step writes its executed notebook (run --local renders it here)."""
    steps = tuple(s if s.component is not None else replace(s, report=s.report or "notebook") for s in pipeline.steps)
    return replace(pipeline, steps=steps)


@functools.cache
def _exporter() -> Any:
    """One HTML exporter for all the pages of a run: it compiles its templates once (~0.2 s each time)."""
    import nbconvert

    exporter = nbconvert.HTMLExporter()  # type: ignore[no-untyped-call]
    exporter.log.setLevel(logging.ERROR)  # not "Alternative text is missing" for every figure
    return exporter


def render_notebook(notebook: dict[str, Any]) -> str:
    import nbformat

    node = nbformat.from_dict(notebook)
    text, _ = _exporter().from_notebook_node(node)
    return with_policy(_REMOTE_SCRIPT.sub("", str(text)))  # MathJax and require.js from a CDN: offline pages do without


# cells every step runs before its own (its prelude) or that set the run's parameters: executed, as in a kernel
_RUN_EVERYWHERE = {"imports", "functions", "pipeline-parameters", "injected-parameters"}


def executed_notebook(
    run_dir: Path, notebook: Path, pages: dict[str, Path], printed: dict[str, str] | None = None
) -> Path | None:
    """The notebook as papermill would give it back: every code cell with the outputs of the step that ran it (from
    the steps' executed notebooks, ``reports/<step>.ipynb``; a cell no step ran keeps none), the pipeline-metrics
    cell with what its ``print(name)`` lines print (``printed``: what print showed of each metric in its step),
    and execution counts 1, 2, ... in notebook order over the cells that ran (the imports and parameters cells
    included, as a kernel runs them once), written as ``<run_dir>/<notebook name>``. None when the notebook cannot
    be read."""
    try:
        original = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ran: dict[int, dict[str, Any]] = {}
    for page in pages.values():
        try:
            executed = json.loads(page.with_suffix(".ipynb").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for cell in executed.get("cells", []):
            label = str(cell.get("metadata", {}).get("nb2kfp", {}).get("cell", ""))
            found = re.search(r", cell (\d+)$", label)
            if found and ", step " not in label:  # "nb.ipynb, cell 7": this notebook's cell 7
                ran[int(found.group(1))] = cell
    count = 0
    for number, cell in enumerate(original.get("cells", []), start=1):
        if cell.get("cell_type") != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        done = ran.get(number)
        outputs = done.get("outputs", []) if done else None
        if done is None and "pipeline-metrics" in tags and printed is not None:
            outputs = _printed_metrics("".join(cell.get("source", [])), printed)
        if done is None and outputs is None and not tags & _RUN_EVERYWHERE:
            cell["outputs"], cell["execution_count"] = [], None
            continue
        count += 1
        cell["outputs"], cell["execution_count"] = outputs or [], count
        for output in cell["outputs"]:
            if output.get("output_type") == "execute_result":
                output["execution_count"] = count
    target = run_dir / notebook.name
    write_text(target, json.dumps(original, indent=1, ensure_ascii=False) + "\n")
    return target


def _printed_metrics(source: str, printed: dict[str, str]) -> list[dict[str, Any]] | None:
    """What a pipeline-metrics cell of ``print(name)`` lines prints in a kernel, from what print showed of each
    metric in its step; None when that cannot be said exactly (another statement, a bare name a kernel shows through
    its repr, a metric the run did not record)."""
    import ast

    lines = []
    try:
        statements = ast.parse(source).body
    except SyntaxError:
        return None
    for stmt in statements:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print"):
            return None
        if len(call.args) != 1 or call.keywords or not isinstance(call.args[0], ast.Name):
            return None
        if call.args[0].id not in printed:
            return None
        lines.append(f"{printed[call.args[0].id]}\n")
    return [{"output_type": "stream", "name": "stdout", "text": "".join(lines)}] if lines else []


def step_page(run_dir: Path, step: Step) -> Path | None:
    """Render the step's report artifact into ``reports/<step>.html`` (keeping ``<step>.ipynb``); None when
    the step has no report (not reported, or it did not get as far as writing one)."""
    if not step.report:
        return None
    found = sorted((run_dir / "artifacts").glob(f"*/{kfpnames.task_name(step.name)}/{REPORT_KEY}"))
    if not found:
        return None
    source = found[-1].read_text(encoding="utf-8")
    page = run_dir / "reports" / f"{step.name}.html"
    earlier = _rendered_before(found[-1], step.name, source)
    if earlier is not None:  # a cached step: the run that made its report rendered it already
        page.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[-1], page.with_suffix(".ipynb"))
        write_text(page, with_policy(earlier.read_text(encoding="utf-8")))  # a page an older nb2kfp wrote had none
    elif source.lstrip().startswith("{"):  # the executed notebook: render it here
        page.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(found[-1], page.with_suffix(".ipynb"))
        write_text(page, render_notebook(json.loads(source)))
    else:  # rendered in the step already (the step's image may hold an older runtime)
        write_text(page, with_policy(source))
    return page


class StepPages:
    """The step pages of a run, rendered while it goes on rather than after it: nbconvert's import and
    template compilation (1-2 s) start with the first step (:meth:`warm_up`) in a thread of their own, and
    each step's page is rendered as soon as the step ends (:meth:`step_ended`). The driver is idle while
    step processes run, so this costs the run next to nothing; :meth:`collect` waits for what is left."""

    def __init__(self, run_dir: Path, pipeline: Pipeline) -> None:
        self.run_dir = run_dir
        self.steps = {s.name: s for s in pipeline.steps if s.report}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nb2kfp-pages")
        self._warming: concurrent.futures.Future[None] | None = None
        self._pages: dict[str, concurrent.futures.Future[Path | None]] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        with self._lock:
            if self._warming is None:
                self._warming = self._pool.submit(_warm_up)

    def step_ended(self, name: str) -> None:
        if name in self.steps:
            with self._lock:
                self._pages[name] = self._pool.submit(step_page, self.run_dir, self.steps[name])

    def collect(self) -> dict[str, Path]:
        """Every reported step's page (steps whose end was not heard of are rendered now), in pipeline order."""
        try:
            with self._lock:
                for name, step in self.steps.items():
                    if name not in self._pages:
                        self._pages[name] = self._pool.submit(step_page, self.run_dir, step)
                futures = dict(self._pages)
            rendered = {name: futures[name].result() for name in self.steps}
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
        return {name: page for name, page in rendered.items() if page is not None}


def _warm_up() -> None:
    """Import nbconvert, compile its templates and its first page's regular expressions (a tiny notebook)."""
    output = {"output_type": "stream", "name": "stdout", "text": "1\n"}
    cells = [
        {"id": "warm-1", "cell_type": "markdown", "metadata": {}, "source": "*warm-up*"},
        {"id": "warm-2", "cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [output], "source": "1"},
    ]
    # as a step's notebook says (runtime/step.py): Python, whose lexer is pygments' own; a notebook that names no
    # language gets nbconvert's default, IPython's lexer, which imports IPython (0.5 s) for a page no step renders
    metadata = {"language_info": {"name": "python"}}
    render_notebook({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5})


def _rendered_before(artifact: Path, step: str, source: str) -> Path | None:
    """The page an earlier run rendered from this very report (a cached step's artifact lives in the run
    folder that made it: ``<run>/artifacts/<id>/<task>/<key>``), if that run still has it."""
    made_in = artifact.resolve().parents[3]
    if made_in == artifact.parents[3].resolve():
        return None  # the step ran in this run
    page = made_in / "reports" / f"{step}.html"
    notebook = page.with_suffix(".ipynb")
    try:
        same = notebook.read_text(encoding="utf-8") == source
    except OSError:
        return None
    return page if same and page.is_file() else None


def _layers(pipeline: Pipeline) -> dict[str, int]:
    depth: dict[str, int] = {}
    for step in pipeline.steps:  # steps come in topological order
        depth[step.name] = 1 + max((depth.get(p, 0) for p in step.after), default=-1)
    return depth


def _dag_svg(pipeline: Pipeline, statuses: dict[str, str], pages: dict[str, Path]) -> str:
    depth = _layers(pipeline)
    rows: dict[int, int] = {}
    where: dict[str, tuple[int, int]] = {}
    for step in pipeline.steps:
        row = rows.get(depth[step.name], 0)
        rows[depth[step.name]] = row + 1
        where[step.name] = (20 + depth[step.name] * 230, 20 + row * 70)
    width = 40 + (max(depth.values(), default=0) + 1) * 230
    height = 40 + max(rows.values(), default=1) * 70
    parts = [
        f'<svg id="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img"'
        f' aria-label="pipeline DAG">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8"'
        ' orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for step in pipeline.steps:
        x2, y2 = where[step.name]
        for parent in step.after:
            if parent in where:
                x1, y1 = where[parent]
                parts.append(
                    f'<path d="M{x1 + 180},{y1 + 22} C{x1 + 205},{y1 + 22} {x2 - 25},{y2 + 22} {x2},{y2 + 22}"'
                    ' fill="none" stroke="#555" marker-end="url(#arrow)"/>'
                )
    for step in pipeline.steps:
        x, y = where[step.name]
        status = statuses.get(step.name, "not run")
        box = (
            f'<g class="step" data-step="{html.escape(step.name)}" data-status="{status}">'
            f'<rect x="{x}" y="{y}" width="180" height="44" rx="8" fill="{_COLORS.get(status, _GREY)}"/>'
            f'<text x="{x + 90}" y="{y + 19}" text-anchor="middle" fill="#fff" font-size="13">'
            f"{html.escape(step.name)}</text>"
            f'<text x="{x + 90}" y="{y + 35}" text-anchor="middle" fill="#fff" font-size="11">{status}</text></g>'
        )
        if step.name in pages:
            box = f'<a href="reports/{html.escape(pages[step.name].name)}">{box}</a>'
        parts.append(box)
    return "".join(parts) + "</svg>"


def _timeline(record: dict[str, Any], pipeline: Pipeline, pages: dict[str, Path]) -> str:
    details = record.get("step_details", {})
    from datetime import datetime

    def at(text: str) -> float:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

    started = [at(d["start"]) for d in details.values() if d.get("start")]
    origin = min(started, default=0.0)
    end = max((at(d["start"]) + (d.get("seconds") or 0) for d in details.values() if d.get("start")), default=1.0)
    span = max(end - origin, 1e-3)
    rows = []
    for step in pipeline.steps:
        d = details.get(step.name, {})
        status = d.get("status", "not run")
        name = html.escape(step.name)
        link = f'<a href="reports/{html.escape(pages[step.name].name)}">{name}</a>' if step.name in pages else name
        if d.get("start"):
            left = 100 * (at(d["start"]) - origin) / span
            width = max(100 * (d.get("seconds") or 0) / span, 0.5)
            took = f"{d['seconds']:.2f}s" if d.get("seconds") is not None else ""
            bar = (
                f'<div class="bar" style="left:{left:.2f}%;width:{width:.2f}%;'
                f'background:{_COLORS.get(status, _GREY)}"></div>'
            )
        else:
            bar, took = "", ""
        rows.append(
            f'<tr class="step-row" data-step="{name}"><td>{link}</td><td>{status}</td><td>{took}</td>'
            f'<td class="lane">{bar}</td></tr>'
        )
    return (
        '<table id="timeline"><tr><th>step</th><th>status</th><th>took</th><th>timeline</th></tr>'
        + "".join(rows)
        + "</table>"
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse}td,th{padding:4px 10px;text-align:left;border-bottom:1px solid #eee}
.lane{position:relative;width:480px;height:18px}.bar{position:absolute;top:3px;height:12px;border-radius:3px}
.status{font-weight:bold}.error{color:#c62828;white-space:pre-wrap}
"""


def write_run_report(run_dir: Path, pipeline: Pipeline, record: dict[str, Any], pages: dict[str, Path]) -> Path:
    status = str(record.get("status"))
    esc = html.escape
    metrics = "".join(f"<tr><td>{esc(k)}</td><td>{v:g}</td></tr>" for k, v in record.get("metrics", {}).items())
    metrics += "".join(  # text metrics: as the notebook set them (pre-wrap keeps their lines)
        f'<tr><td>{esc(k)}</td><td class=text style="white-space:pre-wrap">{esc(v)}</td></tr>'
        for k, v in (record.get("text_metrics") or {}).items()
    )
    params = "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(json.dumps(v))}</td></tr>" for k, v in record.get("parameters", {}).items()
    )
    error = record.get("error")
    error_html = ""
    if error:
        where = f", cell {error['cell']}" if error.get("cell") else ""
        error_html = f'<p class="error">step {esc(str(error["step"]))}{where}: {esc(str(error["message"]))}</p>'
    models = "".join(f"<li>{esc(k)}: <code>{esc(v)}</code></li>" for k, v in record.get("models", {}).items())
    took = record.get("seconds")
    body = [
        f'<h1>{esc(pipeline.name)}: <span class=status style="color:{_COLORS.get(status, _GREY)}">'
        f"{esc(status)}</span></h1>",
        f"<p>run {esc(str(record.get('name')))}, started {esc(str(record.get('started')))}"
        + (f", took {took:.1f}s" if isinstance(took, (int, float)) else "")
        + f"; notebook {esc(str(record.get('notebook')))}; nb2kfp {esc(str(record.get('nb2kfp_version')))}</p>",
        error_html,
        "<h2>Pipeline</h2>",
        _dag_svg(pipeline, record.get("steps", {}), pages),
        "<h2>Steps</h2>",
        _timeline(record, pipeline, pages),
        f"<h2>Metrics</h2><table id=metrics>{metrics}</table>" if metrics else "",
        f"<h2>Parameters</h2><table id=parameters>{params}</table>" if params else "",
        f"<h2>Model images</h2><ul>{models}</ul>" if models else "",
        '<p><a href="run.log">run.log</a> · <a href="result.json">result.json</a> · '
        '<a href="pipeline.yaml">pipeline.yaml</a></p>',
    ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(pipeline.name)} run {esc(str(record.get('name')))}</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    target = run_dir / "report.html"
    write_text(target, with_policy(page))
    return target
