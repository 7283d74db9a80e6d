"""``nb2kfp plan NB --against REF``: what changes against another commit, and what KFP's cache will serve.

Compiles the notebook in the work tree and the same path at git ref ``REF`` (every file, included notebooks
and settings too, read as of ``REF``: :func:`nb2kfp.service.compile_at`) and prints :func:`nb2kfp.backends.plan.diff`.
A notebook absent at ``REF`` (or not compiling there) counts as all steps added.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nb2kfp.errors import UsageError

FORMATS = ("text", "markdown", "json")


def run(notebook: Path, against: str, output_format: str, report: Callable[[str], None]) -> int:
    from nb2kfp import service
    from nb2kfp.backends import plan as planner

    if output_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    if not notebook.is_file():
        raise UsageError(f"{notebook}: no such notebook")
    new = service.compile_notebook(notebook).pipeline  # NotebookError propagates: the CLI prints its diagnostics
    old, base = service.compile_at(notebook, against)
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
