"""``nb2kfp lint``: every diagnostic for each notebook, as text or JSON; exit 1 on errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nb2kfp import service
from nb2kfp.errors import Diagnostic, Severity
from nb2kfp.words import count


def run(
    notebooks: list[Path], output_format: str, report: Callable[[str], None], warnings_as_errors: bool = False
) -> int:
    """Exit 1 when there are errors (or, with ``warnings_as_errors``, warnings)."""
    found: list[Diagnostic] = []
    for notebook in notebooks:
        found.extend(service.diagnostics(notebook))
    errors = sum(d.severity is Severity.ERROR for d in found)
    warnings = len(found) - errors
    if output_format == "json":
        report(json.dumps([d.as_dict() for d in found], indent=2))
    else:
        for d in found:
            report(d.format())
        report(f"{count(len(notebooks), 'notebook')}, {count(errors, 'error')}, {count(warnings, 'warning')}")
    return 1 if errors or (warnings_as_errors and warnings) else 0
