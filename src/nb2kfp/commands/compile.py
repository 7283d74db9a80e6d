"""``nb2kfp compile``: notebooks -> KFP pipeline spec YAML, or ``--check`` that the YAML is current.

The check's fast path reads only the stamp line of the compiled file and hashes the notebook's
JSON: no analysis, no YAML, no kfp import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nb2kfp import stamp as stamps
from nb2kfp.config import find_settings
from nb2kfp.errors import NotebookError, UsageError

SUFFIX = ".pipeline.yaml"


def default_target(notebook: Path) -> Path:
    return notebook.with_name(notebook.name.removesuffix(".ipynb") + SUFFIX)


def targets(notebooks: list[Path], output: Path | None, output_dir: Path | None) -> list[tuple[Path, Path]]:
    if output is not None and output_dir is not None:
        raise UsageError("give -o/--output or --output-dir, not both")
    if output is not None and len(notebooks) != 1:
        raise UsageError("-o/--output takes one notebook; use --output-dir for several")
    pairs = []
    for nb in notebooks:
        if output is not None:
            pairs.append((nb, output))
        elif output_dir is not None:
            pairs.append((nb, output_dir / default_target(nb).name))
        else:
            pairs.append((nb, default_target(nb)))
    seen: dict[Path, Path] = {}
    for nb, target in pairs:
        _check_target(nb, target)
        if target.resolve() in seen:
            raise UsageError(f"{nb} and {seen[target.resolve()]} would both write {target}")
        seen[target.resolve()] = nb
    return pairs


def _check_target(notebook: Path, target: Path) -> None:
    """The output must be a file path of its own: not the notebook, not a folder, not below a file."""
    if target.resolve() == notebook.resolve():
        raise UsageError(f"{target} is the notebook itself: give another output path")
    if target.is_dir():
        raise UsageError(f"{target} is a folder: give a file path (or use --output-dir {target})")
    above = next((p for p in target.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UsageError(f"{target}: {above} is a file, not a folder")


def read_stamp(target: Path) -> str | None:
    try:
        with target.open(encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(stamps.PREFIX):
                    return line[len(stamps.PREFIX) :].strip()
                if not line.startswith("#"):
                    return None
    except (OSError, UnicodeDecodeError):
        return None
    return None


def _without_stamp(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(stamps.PREFIX))


def is_fresh(notebook: Path, target: Path) -> bool:
    """True when ``target`` is what compiling ``notebook`` would write now (ignoring the stamp)."""
    from nb2kfp.frontend.notebook import hash_file

    old = read_stamp(target)
    if old is None:
        return False
    settings = find_settings(notebook.parent)
    current = hash_file(notebook)
    if current is not None and old == stamps.stamp(current, settings):
        return True
    from nb2kfp import service

    compiled = service.compile_notebook(notebook, settings)
    try:
        return _without_stamp(target.read_text(encoding="utf-8")) == _without_stamp(compiled.spec())
    except (OSError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class Options:
    output: Path | None = None
    output_dir: Path | None = None
    check: bool = False  # report missing/stale outputs, write nothing
    changed_only: bool = False  # leave up-to-date outputs alone (fast: no compile)
    fail_on_write: bool = False  # exit 1 when a file was written, so a pre-commit hook makes you stage it
    debug: bool = False


def run(
    notebooks: list[Path], options: Options, report: Callable[[str], None], report_error: Callable[[str], None]
) -> int:
    from nb2kfp.atomic import write_text

    failed = wrote = False
    for notebook, target in targets(notebooks, options.output, options.output_dir):
        try:
            if options.check:
                if not target.exists():
                    report_error(f"{notebook}: {target} is missing: run nb2kfp compile {notebook}")
                    failed = True
                elif not is_fresh(notebook, target):
                    report_error(f"{notebook}: {target} is stale: run nb2kfp compile {notebook}")
                    failed = True
                continue
            if options.changed_only and target.exists() and is_fresh(notebook, target):
                continue
            from nb2kfp import service

            compiled = service.compile_notebook(notebook)
            compiled.check_size()
            text = compiled.spec()
        except NotebookError as exc:
            if options.debug:
                raise
            for line in exc.lines():
                report_error(line)
            failed = True
            continue
        for d in compiled.diagnostics:
            report_error(d.format())
        write_text(target, text)
        wrote = True
        report(f"{notebook} -> {target}" + (" (stage it)" if options.fail_on_write else ""))
    return 1 if failed or (wrote and options.fail_on_write) else 0
