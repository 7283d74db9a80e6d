"""What a GitLab CI job needs around the compiler: which notebooks, which changed, the Code Quality
report, and the state the component's jobs hand each other (``<out>/ci.json``, passed as artifacts)."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nb2kfp import git
from nb2kfp.errors import Diagnostic, RunError, Severity
from nb2kfp.words import printable

_SETTINGS_FILES = ("pyproject.toml", "nb2kfp.toml", "requirements.txt")
_SKIP = (".ipynb_checkpoints", ".git", ".venv", "node_modules", "nb2kfp-out", ".nb2kfp")


@dataclass
class NotebookState:
    path: str
    changed: bool = True
    status: str = "pending"  # pending | success | failed
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    pipeline: str | None = None
    spec: str | None = None
    image: str | None = None
    kfp_url: str | None = None
    failure: str | None = None

    def findings(self) -> list[Diagnostic]:
        """The diagnostics lint recorded, as :class:`Diagnostic` again."""
        return [
            Diagnostic(
                path=str(raw.get("path", "")),
                message=str(raw.get("message", "")),
                severity=Severity(raw.get("severity", "error")),
                code=str(raw.get("code", "NB000")),
                cell=raw.get("cell"),
                line=raw.get("line"),
            )
            for raw in self.diagnostics
        ]

    def failure_lines(self) -> list[str]:
        """Why the notebook failed (nothing when it did not): the reason, then each located error."""
        if self.status != "failed":
            return []
        errors = [d.format() for d in self.findings() if d.severity is Severity.ERROR]
        return [f"{self.path}: {self.failure or 'failed'}", *errors]


@dataclass
class State:
    notebooks: dict[str, NotebookState] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> State:
        try:
            raw = json.loads((folder / "ci.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return cls()
        return cls({k: NotebookState(**v) for k, v in raw.get("notebooks", {}).items()})

    def save(self, folder: Path) -> None:
        from nb2kfp.atomic import write_text

        data = {"notebooks": {k: asdict(v) for k, v in sorted(self.notebooks.items())}}
        write_text(folder / "ci.json", json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def written(cls, folder: Path) -> State | None:
        """The state a run wrote to ``folder``; None when it wrote none (it stopped before its first phase ended)."""
        return cls.load(folder) if (folder / "ci.json").is_file() else None

    def entry(self, path: str) -> NotebookState:
        return self.notebooks.setdefault(path, NotebookState(path))


def select(pattern: str) -> list[str]:
    """Notebooks matching ``pattern`` (git-tracked ones when in a repository), sorted. Refused (RunError): a path
    with a control character (a line break, an escape: it would reach logs, commit statuses and the merge request
    note, where a line starting with ``/`` is a GitLab quick action), and a link that leads out of the repository
    (another project's checkout under ``serve``), as ``notebook:`` includes are confined."""
    found = {p for p in glob.glob(pattern, recursive=True) if p.endswith(".ipynb")}
    found = {p for p in found if not any(part in _SKIP for part in Path(p).parts)}
    tracked = git.index_files(".")
    if tracked is not None:
        found &= set(tracked)
    root = git.confinement_root(Path.cwd())
    for path in sorted(found):
        if not path.isprintable():
            raise RunError(
                f"{printable(path)}: a notebook path with control characters (line breaks, escapes): rename it"
            )
        if not Path(path).resolve().is_relative_to(root):
            raise RunError(
                f"{printable(path)}: a link to a notebook outside {root}: only this repository's are compiled"
            )
    return sorted(found)


def changed(candidates: list[str], env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """The candidates a pipeline must rebuild, and why: from the MR base, the previous push, or everything."""
    env = dict(os.environ) if env is None else env
    base = env.get("CI_MERGE_REQUEST_DIFF_BASE_SHA") or env.get("CI_COMMIT_BEFORE_SHA") or ""
    head = env.get("CI_COMMIT_SHA") or "HEAD"
    if git.is_zero(base):
        return set(candidates), "new branch or first pipeline: every notebook"
    try:
        git.rev_parse(base, ".")
        files = set(git.changed_files(base, head, "."))
    except RunError:
        return set(candidates), f"{base[:12]} is not in this clone: every notebook"
    if any(Path(f).name in _SETTINGS_FILES for f in files):
        return set(candidates), "settings or requirements changed: every notebook"
    return {c for c in candidates if c in files}, f"changed since {base[:12]}"


def _cell_line(path: str, cell: int | None, line: int | None) -> int:
    """Line of the .ipynb file that shows the cell (and source line) a diagnostic points at."""
    if cell is None:
        return 1
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    seen = 0
    for number, text in enumerate(lines, start=1):
        if '"cell_type"' in text:
            seen += 1
            if seen == cell:
                for offset, after in enumerate(lines[number - 1 :], start=number):
                    if '"source"' in after:
                        return offset + (line or 0)
                return number
    return 1


def code_quality(diagnostics: list[Diagnostic]) -> list[dict[str, Any]]:
    """GitLab Code Quality entries (the merge request widget shows them)."""
    entries = []
    for d in diagnostics:
        fingerprint = hashlib.sha256(f"{d.path}:{d.cell}:{d.code}:{d.message}".encode()).hexdigest()
        where = f"cell {d.cell}: " if d.cell is not None else ""
        entries.append(
            {
                "description": f"{where}{d.message}",
                "check_name": d.code,
                "fingerprint": fingerprint,
                "severity": "major" if d.severity is Severity.ERROR else "minor",
                "location": {"path": d.path, "lines": {"begin": _cell_line(d.path, d.cell, d.line)}},
            }
        )
    return entries
