"""The step processes of a local run: each in a process group of its own, all stopped on SIGINT/SIGTERM,
and killed by a watchdog process if nb2kfp itself dies (even by SIGKILL), as a pod's processes end with it.

kfp.local starts each step with ``subprocess_task_handler.run_local_subprocess``; :func:`supervised` swaps in
a version that starts the step in a new session and tells the watchdog its process group. The watchdog
reads group ids on a pipe; when the pipe closes (nb2kfp ended, however it ended) it kills what is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import IO

GRACE_SECONDS = 3.0

_WATCHDOG = """
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    word = line.strip()
    if word.startswith("-"):
        groups.discard(int(word[1:]))
    elif word:
        groups.add(int(word))
for sig in (signal.SIGTERM, signal.SIGKILL):
    for group in groups:
        try:
            os.killpg(group, sig)
        except OSError:
            pass
    if groups and sig == signal.SIGTERM:
        time.sleep(2)
"""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during the run; the step processes are stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


class Supervisor:
    def __init__(self) -> None:
        self.steps: dict[int, subprocess.Popen[str]] = {}
        self.signum: int | None = None
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG], stdin=subprocess.PIPE, text=True, start_new_session=True
        )

    def _tell(self, line: str) -> None:
        stdin: IO[str] | None = self._watchdog.stdin
        if stdin is not None:
            stdin.write(line + "\n")
            stdin.flush()

    def run_local_subprocess(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        """kfp.local's function of the same name, with the step in a session of its own."""
        env = {**os.environ, **env_vars} if env_vars else None
        with subprocess.Popen(
            full_command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=env,
            start_new_session=True,
        ) as process:
            self.steps[process.pid] = process
            self._tell(str(process.pid))
            threading.Thread(target=_end_with, args=(process,), daemon=True).start()
            try:
                assert process.stdout is not None
                for line in iter(process.stdout.readline, ""):
                    print(line, end="")
                print("\n")
                return process.wait()
            finally:
                _kill_group(process.pid, signal.SIGKILL)  # what the step left running ends with it
                self.steps.pop(process.pid, None)
                self._tell(f"-{process.pid}")

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM to every step's process group; SIGKILL to what is still there after ``grace`` seconds."""
        for pid in self.steps:
            _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_group_alive(pid, p) for pid, p in self.steps.items()):
            time.sleep(0.05)
        for pid in self.steps:
            _kill_group(pid, signal.SIGKILL)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            return  # already stopping
        self.signum = signum
        self.stop()
        raise Interrupted(signum)

    def close(self) -> None:
        if self._watchdog.stdin is not None:
            self._watchdog.stdin.close()
        self._watchdog.wait()


def _end_with(step: subprocess.Popen[str]) -> None:
    """When the step's own process ends, so does what it started (which may hold its output pipe open)."""
    step.wait()
    _kill_group(step.pid, signal.SIGKILL)


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int, leader: subprocess.Popen[str]) -> bool:
    leader.poll()  # reap the step itself, so that it does not linger as a zombie in its group
    try:
        os.killpg(pgid, 0)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def supervised() -> Iterator[Supervisor]:
    """Run kfp.local's steps under a :class:`Supervisor`; SIGINT/SIGTERM raise :class:`Interrupted`."""
    from kfp.local import subprocess_task_handler as handler

    supervisor = Supervisor()
    original = handler.run_local_subprocess
    previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    handler.run_local_subprocess = supervisor.run_local_subprocess
    try:
        yield supervisor
    finally:
        handler.run_local_subprocess = original
        for sig, action in previous.items():
            signal.signal(sig, action)
        supervisor.close()
