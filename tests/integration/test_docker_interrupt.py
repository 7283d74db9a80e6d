"""`run --docker` stopped by a signal, or nb2kfp killed outright: the step's container does not live on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nbfactory import write

STEP = "import time\nprint('started', flush=True)\ntime.sleep(300)\ny = x + 1"


def _wait_for(check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    return check()


def start(tmp_path: Path, engine: Any) -> tuple[subprocess.Popen[str], Callable[[], list[Any]]]:
    (tmp_path / "nb2kfp.toml").write_text(f'image = "{os.environ["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    write(tmp_path / "nb.ipynb", [(["step:prepare"], "x = 1"), (["step:work", "prev:prepare"], STEP)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2kfp", "run", "nb.ipynb", "--docker", "--run-name", "d1", "--no-report"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def ours() -> list[Any]:
        found = engine.containers.list(filters={"label": "nb2kfp.run"})
        return [c for c in found if c.labels["nb2kfp.run"].startswith(f"{proc.pid}-")]

    log = tmp_path / ".nb2kfp" / "runs" / "d1" / "run.log"
    started = _wait_for(lambda: ours() and log.exists() and "started" in log.read_text(), 600)
    if not started:
        proc.kill()
        pytest.fail(f"the step's container never started: {proc.communicate()}")
    return proc, ours


@pytest.mark.slow
def test_sigint_stops_the_container(tmp_path: Path, engine: Any) -> None:
    proc, ours = start(tmp_path, engine)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err, err
    assert _wait_for(lambda: not ours(), 30), "the step's container lives on"
    result = json.loads((tmp_path / ".nb2kfp" / "runs" / "d1" / "result.json").read_text())
    assert result["status"] == "interrupted" and result["running_step"] == "work"


@pytest.mark.slow
def test_a_killed_nb2kfp_leaves_no_container(tmp_path: Path, engine: Any) -> None:
    proc, ours = start(tmp_path, engine)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert _wait_for(lambda: not ours(), 30), "a container outlived nb2kfp"
