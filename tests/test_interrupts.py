"""Ctrl-C, `timeout` and a cancelled CI job stop a local run cleanly; a killed nb2kfp leaves no step behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clirun import Make

STEP = """
import os, subprocess, time
child = subprocess.Popen(["sleep", "300"])
with open(marker + ".tmp", "w") as fh:
    fh.write(f"{os.getpid()} {child.pid}")
os.replace(marker + ".tmp", marker)
time.sleep(300)
y = x + 1
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


def start_run(make_nb: Make, tmp_path: Path) -> tuple[subprocess.Popen[str], list[int], Path]:
    """A real run whose second step sleeps (with a child process); returns once that step is running."""
    marker = tmp_path / "pids"
    nb = make_nb(
        [
            (["pipeline-parameters"], f"marker = {str(marker)!r}"),
            (["step:prepare"], "x = 1"),
            (["step:work", "prev:prepare"], STEP),
            (["step:finish", "prev:work"], "print(y)"),
        ]
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--run-name", "r1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if not _wait_for(marker.exists, 120):
        proc.kill()
        pytest.fail(f"the step never started: {proc.communicate()}")
    pids = [int(p) for p in marker.read_text().split()]
    assert all(_alive(p) for p in pids)
    return proc, pids, tmp_path / ".nb2kfp" / "runs" / "r1"


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_every_step_process_and_records_the_run(
    make_nb: Make, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    proc, pids, run_dir = start_run(make_nb, tmp_path)
    proc.send_signal(sig)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert _wait_for(lambda: not any(_alive(p) for p in pids), 10), "a step process lives on"
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "interrupted" and result["running_step"] == "work"
    assert result["steps"] == {"prepare": "succeeded", "work": "interrupted", "finish": "not run"}


@pytest.mark.slow
def test_a_killed_nb2kfp_leaves_no_step_running(make_nb: Make, tmp_path: Path) -> None:
    proc, pids, run_dir = start_run(make_nb, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert _wait_for(lambda: not any(_alive(p) for p in pids), 15), "a step process outlived nb2kfp"
    assert json.loads((run_dir / "result.json").read_text())["status"] == "running"
    listing = subprocess.run([sys.executable, "-m", "nb2kfp", "runs"], cwd=tmp_path, capture_output=True, text=True)
    assert listing.returncode == 0 and "r1" in listing.stdout and "lost" in listing.stdout, listing


class _ServingContainer:
    """Stands in for the serving container's status poll only (the real one runs in test_model_serving.py).

    Its second ``reload`` does what CI caught: a Ctrl-C arrives while Python runs a finalizer, where a
    KeyboardInterrupt is printed as "Exception ignored" and dropped.
    """

    status = "running"

    def __init__(self) -> None:
        self.polls = 0

    def reload(self) -> None:
        import weakref

        self.polls += 1
        if self.polls == 2:
            garbage = type("Garbage", (), {})()
            weakref.finalize(garbage, os.kill, os.getpid(), signal.SIGINT)
            del garbage  # the finalizer runs here, and the signal's handler inside it
        assert self.polls < 10, "still serving after Ctrl-C"


def test_model_serve_stops_on_a_ctrl_c_that_lands_in_a_finalizer() -> None:
    from nb2kfp.serving.local import serve_until_stopped, stop_on_signals

    container = _ServingContainer()
    with stop_on_signals() as stop:
        serve_until_stopped(container, stop, poll=0.1)
    assert stop.requested and container.polls == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


def test_a_step_handed_its_command_after_the_run_was_stopped_is_stopped_too() -> None:
    """CI hung once: Ctrl-C came while a step's process (one started ahead) had its command but was not yet among
    the supervisor's steps, so the stop killed nothing and the run waited for that step forever. A process that
    joins after the stop is killed as it joins."""
    from nb2kfp.local_run import processes

    supervisor = processes.Supervisor()
    supervisor.signum = signal.SIGINT  # the stop has run
    try:
        started = time.monotonic()
        code = supervisor.run_local_subprocess(["sleep", "60"])
        assert code == -signal.SIGKILL and time.monotonic() - started < 30
    finally:
        supervisor.close()
