"""The helper programs nb2kfp starts beside its own process, run as modules (``python -m``): the watchdog of a local
run's step processes (:mod:`nb2kfp.local_run.watchdog`) and the webhook workers' ``nb2kfp ci`` that ends with the
server (:mod:`nb2kfp.delivery.tethered`). Real processes, no stand-ins."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import nb2kfp
from nb2kfp.delivery import tethered
from nb2kfp.local_run import watchdog


def _sleeper() -> subprocess.Popen[bytes]:
    """A process in a session (and process group) of its own, as a step's."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def _ended(process: subprocess.Popen[bytes], within: float) -> bool:
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        return False
    return True


def test_the_watchdog_reads_the_groups_to_kill_and_the_run_id() -> None:
    assert watchdog.watched(["12\n", "13\n", "docker 99-1\n", "-12\n", "\n"]) == ({13}, "99-1")
    assert watchdog.watched([]) == (set(), None)


def test_the_watchdog_kills_the_groups_left_when_its_stdin_closes() -> None:
    left, ended = _sleeper(), _sleeper()
    dog = subprocess.Popen([sys.executable, "-m", watchdog.__name__], stdin=subprocess.PIPE, text=True)
    try:
        assert dog.stdin is not None
        dog.stdin.write(f"{left.pid}\n{ended.pid}\n-{ended.pid}\n")  # `ended` was reaped: not the watchdog's any more
        dog.stdin.flush()
        time.sleep(0.5)
        assert left.poll() is None  # nothing is killed while nb2kfp runs
        dog.stdin.close()
        assert _ended(left, within=10) and left.returncode == -15  # SIGTERM first
        assert dog.wait(10) == 0
        assert ended.poll() is None
    finally:
        for process in (left, ended, dog):
            process.kill()
            process.wait()


def test_a_tethered_nb2kfp_runs_its_arguments_without_the_folder_it_runs_in_on_its_path(tmp_path: Path) -> None:
    decoy = tmp_path / "nb2kfp"  # a pushed checkout holding a package of the same name
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('the checkout was imported')\n", encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, "-I", "-m", tethered.__name__, "--version"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,  # held open, as the server holds it
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        output = child.stdout.read()
        assert (child.wait(60), output.strip()) == (0, f"nb2kfp {nb2kfp.__version__}")
    finally:
        child.stdin.close()
        child.kill()
        child.wait()


def test_a_tethered_nb2kfp_ends_when_its_stdin_closes(tmp_path: Path) -> None:
    """The server died (its end of the pipe closed): the command stops at once, whatever it was doing."""
    child = subprocess.run(
        [sys.executable, "-I", "-m", tethered.__name__, "--help"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,  # at its end already
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert child.returncode == tethered.ORPHANED


def test_a_steps_launcher_hands_its_bootstrap_the_runtime_the_run_compiled(tmp_path: Path) -> None:
    """A step's bootstrap compiles the runtime (72 KB: 25 ms of a 0.1 s step): the launcher of a local run's step
    (processes.LAUNCHER) makes that compile return the code object the run compiled once, for that very source only,
    and the step's own code sees the real ``compile``."""
    import base64
    import hashlib
    import json
    import marshal
    import os

    from nb2kfp.backends import step_runtime
    from nb2kfp.local_run import processes
    from nb2kfp.runtime.step import RUNTIME_FILE

    check = "import builtins\nprint(compile is builtins.compile, type(compile).__name__)\n"
    source = ("print('compiled by the step')\n" + check).encode()
    made = compile("print('compiled by the run')\n" + check, RUNTIME_FILE, "exec", dont_inherit=True)
    bootstrap = f"import sys\ns = {source!r}\nexec(compile(s, {RUNTIME_FILE!r}, 'exec'), {{'__name__': '__main__'}})\n"
    digest_of_source = hashlib.sha256(source).hexdigest()
    for digest, first in ((digest_of_source, "compiled by the run"), ("0" * 64, "compiled by the step")):
        read, write = os.pipe()
        launcher = [sys.executable, "-c", processes.LAUNCHER, str(read)]
        step = subprocess.Popen(launcher, pass_fds=(read,), stdout=subprocess.PIPE, text=True)
        os.close(read)
        with os.fdopen(write, "w") as pipe:
            code = base64.b64encode(marshal.dumps(made)).decode()
            json.dump([["-c", bootstrap], [], [RUNTIME_FILE, digest, code]], pipe)
        out, _ = step.communicate(timeout=60)
        assert step.returncode == 0
        assert out.splitlines() == [first, "True builtin_function_or_method"]

    runtime = tmp_path / "runtime"  # what a run hands over: only for this nb2kfp's runtime, run by this interpreter
    runtime.write_text(step_runtime.runtime_source(), encoding="utf-8")
    command = [sys.executable, "-c", "BOOTSTRAP", "--executor-input", "{}", "--runtime", str(runtime)]
    handed = processes._compiled_runtime(command)
    assert handed is not None and handed[1] == hashlib.sha256(runtime.read_bytes()).hexdigest()
    assert processes._compiled_runtime(["/usr/bin/python3", *command[1:]]) is None
    runtime.write_text(step_runtime.runtime_source() + "\n# edited", encoding="utf-8")
    assert processes._compiled_runtime(command) is None
