"""Independent steps of a local run run at the same time (a thin scheduler over kfp.local's single-task
execution), each still a process of its own, values only through artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clirun import Make
from conftest import run_local

pytestmark = pytest.mark.slow

# Each branch announces itself, then waits for the other one: only steps that run at the same time both pass.
_MEET = (
    "import os, time\n"
    "open(os.path.join(meet, '{me}'), 'w').close()\n"
    "deadline = time.monotonic() + 120\n"
    "while not os.path.exists(os.path.join(meet, '{other}')):\n"
    "    assert time.monotonic() < deadline, 'the other branch never ran alongside this one'\n"
    "    time.sleep(0.05)\n"
    "{me}_value = base + {n}"
)


def _diamond(make_nb: Make, tmp_path: Path, right_extra: str = "") -> Path:
    (tmp_path / "meet").mkdir()
    return make_nb(
        [
            (["pipeline-parameters"], f"meet = {str(tmp_path / 'meet')!r}"),
            (["step:start"], "base = 10"),
            (["step:left", "prev:start"], _MEET.format(me="left", other="right", n=1)),
            (["step:right", "prev:start"], _MEET.format(me="right", other="left", n=2) + right_extra),
            (["step:join", "prev:left", "prev:right"], "total = left_value + right_value"),
            (["pipeline-metrics"], "print(total)"),
        ]
    )


def test_the_two_branches_of_a_diamond_run_side_by_side(make_nb: Make, tmp_path: Path) -> None:
    nb = _diamond(make_nb, tmp_path)
    proc = run_local(nb, "--no-cache", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["metrics"] == {"total": 23.0}
    assert set(result["steps"].values()) == {"succeeded"}
    log = (Path(result["run_dir"]) / "run.log").read_text()
    assert log.count("step 'left' done") == 1 and log.count("step 'right' done") == 1


def test_a_failing_branch_lets_the_other_finish_and_stops_what_is_below(make_nb: Make, tmp_path: Path) -> None:
    nb = _diamond(make_nb, tmp_path, right_extra="\nprint('right says goodbye')\nraise ValueError('right broke')")
    proc = run_local(nb, "--no-cache", "--jobs", "2")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["steps"] == {"start": "succeeded", "left": "succeeded", "right": "failed", "join": "not run"}
    assert result["error"]["step"] == "right" and "right broke" in result["error"]["message"]
    assert "right says goodbye" in proc.stderr  # the failed step's own output, not its neighbour's
    assert "step 'left' done" not in proc.stderr
