"""Issue 24, case 9 with `run --docker`: a step's container is a process of this machine, whose command line every
user can read (`ps`); its executor input (every parameter) must not be there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nbfactory import write
from test_security_local import MARKER, _command_lines, _descendants


@pytest.mark.slow
def test_no_step_container_has_a_parameter_on_its_command_line(tmp_path: Path, engine: Any) -> None:
    (tmp_path / "nb2kfp.toml").write_text(f'image = "{os.environ["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    (tmp_path / "secret.yaml").write_text(f"token: {MARKER}\n")
    cells = [
        (["pipeline-parameters"], "token = 'none'"),
        (["step:use"], "import time\ntime.sleep(3)\nn = len(token)"),
        (["pipeline-metrics"], "print(n)"),
    ]
    write(tmp_path / "nb.ipynb", cells)
    run = subprocess.Popen(
        [sys.executable, "-m", "nb2kfp", "run", "nb.ipynb", "--docker", "--json", "--no-report", "-f", "secret.yaml"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[str] = set()
    while run.poll() is None:
        for container in engine.containers.list(filters={"label": "nb2kfp.run"}):
            if container.labels["nb2kfp.run"].startswith(f"{run.pid}-"):  # this run's step containers only
                pid = int(container.attrs["State"]["Pid"] or 0)
                if pid:
                    seen |= _command_lines({pid} | _descendants(pid))
        time.sleep(0.1)
    out, err = run.communicate()
    assert run.returncode == 0, err
    assert json.loads(out)["metrics"] == {"n": float(len(MARKER))}
    assert any("nb2kfp step" in line for line in seen), seen  # the step's process was seen
    assert [line[:200] for line in seen if MARKER in line] == []
