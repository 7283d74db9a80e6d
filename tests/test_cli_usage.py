"""Usage mistakes on every typer version the package allows: usage + one error line, exit 2, no traceback.

The newest typer is the project venv's; the oldest allowed one is a second venv that .ci/run makes
(NB2KFP_OLDEST_TYPER_PYTHON). typer >= 0.25 carries its own copy of click, so both code paths matter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, require

NB = str(EXAMPLES / "wordcount.ipynb")
OLDEST = os.environ.get("NB2KFP_OLDEST_TYPER_PYTHON", "")


@pytest.fixture(params=["newest", "oldest"])
def python(request: pytest.FixtureRequest) -> str:
    if request.param == "newest":
        return sys.executable
    require(bool(OLDEST) and Path(OLDEST).exists(), "NB2KFP_OLDEST_TYPER_PYTHON names no venv with the oldest typer")
    return OLDEST


def nb2kfp(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "nb2kfp", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["lint"], "Missing argument 'NOTEBOOK"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["compile", "--bogus", NB], "No such option"),
        (["lint", NB, "--bogus"], "No such option"),
        (["graph", NB, "extra"], "unexpected extra argument"),
        (["compile", NB, "-o"], "'-o' requires an argument"),
        (["run", NB, "-p", "name", "value"], "unexpected extra argument"),
        (["catalog", "show"], "Missing argument 'NAME[@VERSION]'"),
        (["run", NB, "--host", "http://127.0.0.1:1", "--docker"], "does not go with --docker"),
    ],
)
def test_usage_errors_are_short_and_exit_2(python: str, args: list[str], problem: str) -> None:
    proc = nb2kfp(python, *args)
    assert proc.returncode == 2, proc
    assert "Traceback" not in proc.stderr and problem in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("Usage: ") and any(line.startswith("Error: ") for line in lines), proc.stderr
    assert len(lines) <= 4, proc.stderr


def test_papermill_style_parameters_get_a_hint(python: str) -> None:
    proc = nb2kfp(python, "run", NB, "-p", "lines", "3")
    assert proc.returncode == 2 and "-p lines=VALUE" in proc.stderr, proc.stderr


def test_help_shows_whole_descriptions_and_readable_metavars(python: str) -> None:
    top = nb2kfp(python, "--help")
    assert top.returncode == 0
    commands = top.stdout.split("Commands:")[1]
    assert "..." not in commands.replace("(path: cell N: ...)", ""), commands
    assert "report (or all)." in commands
    run = nb2kfp(python, "run", "--help").stdout
    compile_ = nb2kfp(python, "compile", "--help").stdout
    assert "-p, --param NAME=VALUE" in run and "--run-dir DIR" in run
    assert "NOTEBOOK" in compile_ and "-o, --output FILE" in compile_
    for text in (run, compile_):
        assert "list[" not in text and "<path>" not in text and "<str>" not in text and "\\[" not in text, text
