"""``nb2kfp plan NB --against REF``: what changes against another commit, and what KFP's cache will serve.

Compiles the notebook in the work tree and the same path at git ref ``REF`` (every file, included notebooks
and settings too, read as of ``REF``) and prints :func:`nb2kfp.backends.plan.diff`.
A notebook absent at ``REF`` (or not compiling there) counts as all steps added.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nb2kfp.config import find_settings
from nb2kfp.errors import NotebookError, UsageError
from nb2kfp.ir import Pipeline

FORMATS = ("text", "markdown", "json")


def compile_at(notebook: Path, ref: str) -> tuple[Pipeline | None, str]:
    """The notebook's pipeline as of git ref ``ref`` and how that went: 'compiled', 'absent' or 'invalid'.
    Every file is read as of ``ref``: the notebook, the notebooks it includes, the settings."""
    from nb2kfp.frontend.builder import build
    from nb2kfp.frontend.loader import AtRef

    at_ref = AtRef(ref, notebook)
    if not notebook.resolve().is_relative_to(at_ref.root):
        raise UsageError(f"{notebook} is not inside the git repository at {at_ref.root}")
    if not at_ref.is_file(notebook):
        return None, "absent"
    try:
        return build(notebook, find_settings(notebook.parent, at_ref), loader=at_ref).pipeline, "compiled"
    except (NotebookError, UsageError):  # UsageError: the settings at ``ref`` do not parse
        return None, "invalid"


def run(notebook: Path, against: str, output_format: str, report: Callable[[str], None]) -> int:
    from nb2kfp.backends import plan as planner
    from nb2kfp.frontend.builder import build

    if output_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    if not notebook.is_file():
        raise UsageError(f"{notebook}: no such notebook")
    settings = find_settings(notebook.parent)
    new = build(notebook, settings).pipeline  # NotebookError propagates: the CLI prints its diagnostics
    old, base = compile_at(notebook, against)
    plan = planner.diff(old, new)
    note = {
        "absent": f"{notebook} does not exist at {against}: every step is new",
        "invalid": f"{notebook} does not compile at {against}: every step counts as new",
        "compiled": "",
    }[base]
    if output_format == "json":
        report(json.dumps({"notebook": str(notebook), "against": against, "base": base, **plan.as_dict()}, indent=2))
    elif output_format == "markdown":
        report((f"_{note}_\n\n" if note else "") + planner.markdown(plan))
    else:
        report((f"{note}\n" if note else "") + planner.text(plan))
    return 0
