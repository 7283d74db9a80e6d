"""``nb2kfp graph``: print the pipeline's DAG as text, Mermaid or dot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nb2kfp.config import find_settings
from nb2kfp.errors import UsageError


def run(notebook: Path, output_format: str, report: Callable[[str], None], report_error: Callable[[str], None]) -> int:
    from nb2kfp.backends.graph import FORMATS
    from nb2kfp.frontend.builder import build

    if output_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
    result = build(notebook, find_settings(notebook.parent))
    for d in result.diagnostics:
        report_error(d.format())
    report(FORMATS[output_format](result.pipeline))
    return 0
