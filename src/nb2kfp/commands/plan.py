"""``nb2kfp plan NB --against REF``: what changes against another commit, and what KFP's cache will serve.

Compiles the notebook in the work tree and the same path at git ref ``REF`` (both with the
repository settings found for the work tree) and prints :func:`nb2kfp.backends.plan.diff`.
A notebook absent at ``REF`` (or not compiling there) counts as all steps added.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nb2kfp.config import Settings, find_settings
from nb2kfp.errors import NotebookError, UsageError
from nb2kfp.ir import Pipeline

FORMATS = ("text", "markdown", "json")


def compile_at(notebook: Path, ref: str, settings: Settings | None = None) -> tuple[Pipeline | None, str]:
    """The notebook's pipeline as of git ref ``ref`` and how that went: 'compiled', 'absent' or 'invalid'.
    Uses the work tree's settings (``settings``, else those found beside the notebook)."""
    from nb2kfp import git
    from nb2kfp.frontend.builder import build

    root = git.repo_root(notebook)
    try:
        relative = notebook.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(f"{notebook} is not inside the git repository at {root}") from None
    data = git.show(ref, relative, root)
    if data is None:
        return None, "absent"
    try:
        return build(notebook, settings or find_settings(notebook.parent), data=data).pipeline, "compiled"
    except NotebookError:
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
    old, base = compile_at(notebook, against, settings)
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
