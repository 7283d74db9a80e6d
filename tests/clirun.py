"""How tests run the ``nb2kfp`` command: in a process of its own as a user does (:func:`nb2kfp`), or in this one
(:func:`nb2kfp_here`: the same entry point, no interpreter start-up, for commands that only read and print), and
the type of the ``make_nb`` fixture (:data:`Make`)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

Make = Callable[..., Path]  # the make_nb fixture (conftest.py): cells -> a notebook file


def nb2kfp(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python -m nb2kfp ARGS`` in a process of its own."""
    return subprocess.run(
        [python, "-m", "nb2kfp", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else dict(env),
        timeout=timeout,
    )


def nb2kfp_here(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``nb2kfp ARGS`` through the same entry point (:func:`nb2kfp.cli.main.main`) in this process: its exit code
    and what it printed. For commands that compile, lint or fail on usage: they start no step processes."""
    from nb2kfp.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    argv, here = sys.argv, os.getcwd()
    code: int
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = ["nb2kfp", *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        sys.argv = argv
        os.chdir(here)
    return subprocess.CompletedProcess(["nb2kfp", *args], code, out.getvalue(), err.getvalue())
