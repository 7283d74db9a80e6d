"""``nb2kfp lint``: every diagnostic for each notebook, as text or JSON; exit 1 on errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nb2kfp.config import find_settings
from nb2kfp.errors import Diagnostic, NotebookError, Severity


def diagnostics_for(notebook: Path) -> list[Diagnostic]:
    from nb2kfp.frontend.builder import build

    try:
        return build(notebook, find_settings(notebook.parent)).diagnostics
    except NotebookError as exc:
        return list(exc.diagnostics)


def run(notebooks: list[Path], output_format: str, report: Callable[[str], None]) -> int:
    found: list[Diagnostic] = []
    for notebook in notebooks:
        found.extend(diagnostics_for(notebook))
    if output_format == "json":
        report(json.dumps([d.as_dict() for d in found], indent=2))
    else:
        for d in found:
            report(d.format())
        errors = sum(d.severity is Severity.ERROR for d in found)
        warnings = len(found) - errors
        if found:
            report(f"{len(notebooks)} notebook(s): {errors} error(s), {warnings} warning(s)")
    return 1 if any(d.severity is Severity.ERROR for d in found) else 0
