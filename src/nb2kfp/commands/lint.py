"""``nb2kfp lint``: every diagnostic for each notebook, as text or JSON; exit 1 on errors, 2 on usage mistakes.

A folder stands for the notebooks under it, as ruff and pre-commit users expect (hidden folders and Jupyter's
checkpoints left out)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nb2kfp import service
from nb2kfp.errors import Diagnostic, Severity, UsageError
from nb2kfp.words import count

FORMATS = ("text", "json")


def expand(paths: list[Path]) -> list[Path]:
    """Each notebook path, and the notebooks under each folder (sorted); a path that is neither is a usage error."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*.ipynb")
                if not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts)
            )
            if not found:
                raise UsageError(f"{path}: a folder with no notebooks (.ipynb) in it")
            out.extend(found)
        elif not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        else:
            out.append(path)
    return out


def run(
    notebooks: list[Path], output_format: str, report: Callable[[str], None], *, warnings_as_errors: bool = False
) -> int:
    """Exit 1 when there are errors (or, with ``warnings_as_errors``, warnings)."""
    if output_format not in FORMATS:
        raise UsageError(f"--format {output_format}: give {' or '.join(FORMATS)}")
    notebooks = expand(notebooks)
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
