"""Run one command as a child process and measure it: wall time, peak RSS (wait4), exit code, output.

``wait4`` gives the child's resource usage including every descendant it waited for, so ``maxrss_kb`` is
the largest resident set of the command or of any process it started and reaped (e.g. the pipeline steps
that ``nb2kfp run`` starts through kfp.local).
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nb2kfp.local_run import waiting

OUTPUT_KEEP = 4000  # characters of stdout/stderr kept in the JSON for failed runs


@dataclass
class Sample:
    argv: list[str]
    seconds: float
    maxrss_kb: int
    returncode: int
    timed_out: bool = False
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def as_json(self, *, keep_output: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if keep_output or not self.ok:
            data["stdout"] = self.stdout[-OUTPUT_KEEP:]
            data["stderr"] = self.stderr[-OUTPUT_KEEP:]
        else:
            del data["stdout"], data["stderr"]
        return data

    def failure(self) -> str:
        """One line saying why the command failed (its last meaningful output line)."""
        if self.timed_out:
            return f"timed out after {self.seconds:.0f} s"
        lines = [line.strip() for line in (self.stderr + "\n" + self.stdout).splitlines() if line.strip()]
        errors = [i for i, line in enumerate(lines) if "Error" in line or "error" in line]
        if not lines:
            return f"exit {self.returncode}: no output"
        at = errors[-1] if errors else len(lines) - 1
        text = lines[at]
        if text.endswith(":") and at + 1 < len(lines):  # "Flakes reported the following error:" + the error
            text += " " + " ".join(lines[at + 1 : at + 3])
        return f"exit {self.returncode}: {text[:240]}"


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Sample:
    """Run ``argv`` to completion (killing its whole process group after ``timeout`` seconds)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, so a timeout can end the steps it started too
        )
        result: dict[str, Any] = {}

        def reap() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            result["elapsed"] = time.perf_counter() - started
            result["status"] = status
            result["usage"] = usage

        waiter = threading.Thread(target=reap, daemon=True)
        waiter.start()
        waiter.join(timeout)
        timed_out = waiter.is_alive()
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            waiter.join(30)
        proc.returncode = os.waitstatus_to_exitcode(result["status"]) if "status" in result else -9
        out.seek(0)
        err.seek(0)
        return Sample(
            argv=list(argv),
            seconds=result.get("elapsed", time.perf_counter() - started),
            maxrss_kb=int(result["usage"].ru_maxrss) if "usage" in result else 0,
            returncode=proc.returncode,
            timed_out=timed_out,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


KEPT_WARM = waiting.MODULE.encode()  # a waiting step process: ``python -m nb2kfp.local_run.waiting STEP PROJECT ROLE``


def _kept_cpu() -> dict[int, int]:
    """CPU ticks so far of each step process nb2kfp keeps warm for a next run."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if not _starts_kept(entry):
                    continue
                with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                found[int(entry)] = int(fields[11]) + int(fields[12])  # utime + stime
            except (OSError, IndexError, ValueError):
                continue
    return found


def _starts_kept(pid: str) -> bool:
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        parts = fh.read().split(b"\0")
    return parts[2:6:3] == [KEPT_WARM, waiting.KEPT.encode()]


def settle(limit: float = 30.0) -> None:
    """Wait until the step processes an nb2kfp run kept warm for the next run are idle (done importing), as they
    are when a user's edit comes: their start-up must not slow the next command measured."""
    deadline = time.monotonic() + limit
    before = _kept_cpu()
    while before and time.monotonic() < deadline:
        time.sleep(0.25)
        now = _kept_cpu()
        if all(now.get(pid) == ticks for pid, ticks in before.items() if pid in now):
            return
        before = now


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ok_seconds(samples: Sequence[Sample]) -> list[float]:
    return [s.seconds for s in samples if s.ok]


def base_env(**extra: str) -> dict[str, str]:
    """The bench's environment for children: this one, minus variables that would change what they do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "NB2KFP_", "KFP_"))}
    # nb2kfp keeps no step process warm for a next run unless a case asks for it (suite_speed's incremental):
    # a cold run must start from scratch, as papermill does
    env["NB2KFP_WARM_KEEP"] = "0"
    env.update(extra)
    return env
