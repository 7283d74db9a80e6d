"""The merge request note: per notebook its status, DAG (Mermaid), plan, image, KFP link and lint findings.

Rendered from ``delivery/mr_note.md.j2``; the same input always gives the same text, so an
unchanged report leaves the note untouched. The note starts with :func:`nb2kfp.clients.gitlab.marker` (keyed by
``NB2KFP_REPORT_KEY``, the component's ``job_prefix``), by which :meth:`GitLabProject.upsert_mr_note` finds it
again on later pushes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from nb2kfp import git
from nb2kfp.backends.plan import Plan
from nb2kfp.errors import Diagnostic
from nb2kfp.ir import Pipeline
from nb2kfp.words import printable

if TYPE_CHECKING:
    from nb2kfp.delivery.ci import State

REPORT_KEY_ENV = "NB2KFP_REPORT_KEY"  # set by the CI component to its job_prefix


def status_name(notebook: str, key: str = "") -> str:
    """The commit status of a notebook: ``nb2kfp: NB``, or ``nb2kfp KEY: NB`` for a keyed include of the
    component (two includes on the same notebooks, e.g. two KFP endpoints, keep two statuses)."""
    key = key.strip("-_ ")
    return f"nb2kfp {key}: {notebook}" if key else f"nb2kfp: {notebook}"


_ICONS = {"success": ":white_check_mark:", "failed": ":x:"}


@dataclass(frozen=True)
class NotebookReport:
    """What the note says about one notebook. ``pipeline`` is None when the notebook did not compile."""

    notebook: str
    pipeline: Pipeline | None
    plan: Plan | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    image: str | None = None  # repo@sha256:... of the step image
    kfp_url: str | None = None  # the pipeline version in the KFP UI
    status: Literal["success", "failed"] = "success"


def _inline(text: str) -> str:
    """Text from the repository or the payload, for the note: one line (line breaks and other control characters
    escaped, so it can never start a line: GitLab runs a line starting with ``/`` as a quick action with the bot's
    rights) and no backquote (it can neither close the inline code nor the fence it is shown in)."""
    return printable(text).replace("`", "'")


def _entry(report: NotebookReport) -> dict[str, Any]:
    from nb2kfp.backends import graph
    from nb2kfp.backends import plan as planner

    pipeline = report.pipeline
    ordered = sorted(report.diagnostics, key=lambda d: (d.path, d.cell or 0, d.line or 0, d.code, d.message))
    return {
        "path": _inline(report.notebook),
        "status": report.status,
        "icon": _ICONS.get(report.status, ":grey_question:"),
        "pipeline_name": _inline(pipeline.name) if pipeline else None,
        "step_count": len(pipeline.steps) if pipeline else 0,
        "image": _inline(report.image) if report.image else None,
        "kfp_url": _inline(report.kfp_url) if report.kfp_url else None,
        "mermaid": graph.mermaid(pipeline) if pipeline else None,
        "plan": planner.markdown(report.plan) if report.plan else None,
        "findings": [_inline(d.format()) for d in ordered],
    }


def render_mr_note(entries: list[NotebookReport], pipeline_url: str | None, key: str = "") -> str:
    """The whole note (Markdown), notebooks sorted by path; ``key`` tells two includes' notes apart."""
    import jinja2

    from nb2kfp.clients.gitlab import marker

    template = resources.files("nb2kfp.delivery").joinpath("mr_note.md.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(
        autoescape=False,  # Markdown, not HTML; outside text is made one line (_inline) and never starts one
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    ordered = sorted(entries, key=lambda e: e.notebook)
    text = env.from_string(template).render(
        marker=marker(key),
        entries=[_entry(e) for e in ordered],
        failed=sum(e.status == "failed" for e in ordered),
        pipeline_url=_inline(pipeline_url) if pipeline_url else None,
    )
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _plan_against(notebook: Path, pipeline: Pipeline, base: str | None) -> Plan | None:
    """The plan against commit ``base`` of this clone; None when there is no base or git cannot tell."""
    from nb2kfp.backends.plan import diff
    from nb2kfp.errors import Nb2KfpError
    from nb2kfp.service import compile_at

    if base is None or git.is_zero(base):
        return None
    try:
        old, _ = compile_at(notebook, base)
    except Nb2KfpError:
        return None
    return diff(old, pipeline)


def render_from_state(state: State, env: Mapping[str, str], pipeline_of: Callable[[str], Pipeline | None]) -> str:
    """The note for a CI job's state (``nb2kfp ci``): each notebook's DAG (``pipeline_of``: its IR, None when it
    does not compile) and its plan against the merge request base (``CI_MERGE_REQUEST_DIFF_BASE_SHA``, else
    ``CI_COMMIT_BEFORE_SHA``)."""
    base = env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or env.get("CI_COMMIT_BEFORE_SHA")
    entries = []
    for path, item in sorted(state.notebooks.items()):
        notebook = Path(path)
        pipeline = pipeline_of(path)
        entries.append(
            NotebookReport(
                notebook=path,
                pipeline=pipeline,
                plan=_plan_against(notebook, pipeline, base) if pipeline else None,
                diagnostics=item.findings(),
                image=item.image,
                kfp_url=item.kfp_url,
                status="failed" if item.status == "failed" else "success",
            )
        )
    return render_mr_note(entries, env.get("CI_PIPELINE_URL"), env.get(REPORT_KEY_ENV, ""))
