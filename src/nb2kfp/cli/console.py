"""Where the CLI writes: a line to standard output, or to standard error (flushed: it may precede an exit)."""

from __future__ import annotations

import sys


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


def err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
