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

import clirun
from clirun import nb2kfp_here
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
    """The newest typer: in this process (no start-up to pay for a usage error); the oldest: its own venv."""
    return nb2kfp_here(*args) if python == sys.executable else clirun.nb2kfp(*args, python=python, timeout=120)


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


# The CLI's own fallback handler, on each typer: a command that raises what nobody handles. It used to read
# typer._click.exceptions.Abort, which typer 0.29 does not have: every unexpected error ended in two tracebacks.
_RAISE = """
import sys
import nb2kfp.commands.graph as graph
def boom(*args, **kwargs):
    raise {exc}
graph.run = boom
sys.argv = ["nb2kfp", *sys.argv[1:]]
from nb2kfp.cli.main import main
main()
"""


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        ("AttributeError(\"'BasicAuth' object has no attribute 'x'\")", "unexpected AttributeError in"),
        ("MemoryError()", "out of memory"),
        ("RecursionError('maximum recursion depth exceeded')", "nested too deeply"),
        ("ValueError('text \\x1b[2K\\rok')", "unexpected ValueError"),
        ("__import__('typer').Abort()", "Aborted!"),  # Ctrl-C or end of input at a prompt (click's Abort)
    ],
)
def test_an_unexpected_exception_is_one_message_not_two_tracebacks(python: str, exc: str, says: str) -> None:
    proc = subprocess.run(
        [python, "-c", _RAISE.format(exc=exc), "graph", NB], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr and says in proc.stderr, proc.stderr
    assert "\x1b" not in proc.stderr and len(proc.stderr.splitlines()) <= 2, proc.stderr
    if says == "Aborted!":
        return
    debug = subprocess.run(
        [python, "-c", _RAISE.format(exc=exc), "--debug", "graph", NB], capture_output=True, text=True, timeout=120
    )
    assert debug.stderr.count("Traceback (most recent call last)") == 1, debug.stderr
