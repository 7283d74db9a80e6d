"""The watchdog of a local run's step processes, run as ``python -m nb2kfp.local_run.watchdog`` by
:class:`nb2kfp.local_run.processes.Supervisor`: when nb2kfp ends, however it ends (even by SIGKILL), so does every
process and container of its run, as a pod's processes end with it.

It reads lines on stdin: ``PGID`` (a step's process group started), ``-PGID`` (it ended and was reaped) and
``docker RUN_ID`` (the run's containers carry the label ``nb2kfp.run=RUN_ID``). When stdin closes it kills the run's
containers, then SIGTERM to the process groups left, and SIGKILL 2 s later. It imports the standard library only
(and docker when the run has containers): it starts with every local run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterable

LABEL = "nb2kfp.run"  # the label of a run's containers: its value is the run id
TERM_SECONDS = 2.0  # from SIGTERM to SIGKILL


def watched(lines: Iterable[str]) -> tuple[set[int], str | None]:
    """The process groups left running and the run id whose containers to kill (None: no containers), once
    ``lines`` end."""
    groups: set[int] = set()
    run_id = None
    for line in lines:
        word = line.strip()
        if word.startswith("docker "):
            run_id = word.split(" ", 1)[1]
        elif word.startswith("-"):
            groups.discard(int(word[1:]))
        elif word:
            groups.add(int(word))
    return groups, run_id


def kill_containers(run_id: str) -> None:
    try:
        import docker

        for container in docker.from_env().containers.list(filters={"label": f"{LABEL}={run_id}"}):
            container.kill()
    except Exception:  # no engine, or the containers already gone: nothing of the run runs there
        return


def kill_groups(groups: set[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in groups:
            with contextlib.suppress(OSError):  # the group ended already
                os.killpg(group, sig)
        if groups and sig == signal.SIGTERM:
            time.sleep(TERM_SECONDS)


def main() -> None:
    groups, run_id = watched(sys.stdin)
    if run_id:
        kill_containers(run_id)
    kill_groups(groups)


if __name__ == "__main__":
    main()
