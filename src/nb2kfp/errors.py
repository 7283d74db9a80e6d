"""Diagnostics and the exception types that carry them.

Every user mistake becomes a :class:`Diagnostic` with a location (path, cell, line).
Only the CLI boundary turns them into messages and exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    """One finding, located in a notebook (cell numbers are 1-based over all cells)."""

    path: str
    message: str
    severity: Severity = Severity.ERROR
    code: str = "NB000"
    cell: int | None = None
    line: int | None = None

    def format(self) -> str:
        where = self.path
        if self.cell is not None:
            where += f": cell {self.cell}"
            if self.line is not None:
                where += f", line {self.line}"
        return f"{where}: {self.severity.value}: {self.message} [{self.code}]"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "cell": self.cell,
            "line": self.line,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
        }


class Nb2KfpError(Exception):
    """Base of every error nb2kfp reports to the user without a traceback."""

    exit_code = 1

    def lines(self) -> list[str]:
        return [str(self)]


class NotebookError(Nb2KfpError):
    """The notebook cannot be compiled; carries every diagnostic found (errors and warnings)."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(d.format() for d in self.errors) or "notebook has errors")

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity is Severity.ERROR)

    def lines(self) -> list[str]:
        return [d.format() for d in self.diagnostics]


class UsageError(Nb2KfpError):
    """A command-line argument or setting is wrong (exit code 2, like click)."""

    exit_code = 2


class PolicyError(Nb2KfpError):
    """A repository policy ([tool.nb2kfp.policy]) forbids what was asked."""


class FilesError(Nb2KfpError):
    """What a step image would carry from the notebook's folder cannot go in it (a link out, a credential, too big)."""


class RunError(Nb2KfpError):
    """A pipeline run failed; the message names the step."""


def error(path: str, message: str, code: str, cell: int | None = None, line: int | None = None) -> Diagnostic:
    return Diagnostic(path, message, Severity.ERROR, code, cell, line)


def warning(path: str, message: str, code: str, cell: int | None = None, line: int | None = None) -> Diagnostic:
    return Diagnostic(path, message, Severity.WARNING, code, cell, line)
