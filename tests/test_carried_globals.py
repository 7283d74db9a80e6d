"""Globals a step receives only because a function it gets (or a value that may hold one) may read them
(VariableEdge.carried): the analysis finds them leniently, so one that cannot be handed over (an open lock, a
LightGBM Dataset) is left out with a log line instead of failing a run whose steps never call that function.
Found by the corpus: lightgbm/advanced_example, whose ``reset_metrics()`` callback reads ``lgb_train``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import run_local_json
from nb2kfp.backends import kfp_spec
from nb2kfp.frontend.builder import build

Make = Callable[..., Path]

SETUP = (
    "import threading\nlock = threading.Lock()\ndef check():\n    return lock.locked()\n"
    "def summarize(m):\n    return 0.5\nmodel = {'hook': check}\nscore = summarize(model)"
)


def test_a_global_only_a_received_function_reads_is_carried(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], SETUP), (["step:b", "prev:a"], "total = score + 1"), (["step:c", "prev:a"], "lock")])
    pipeline = build(nb).pipeline
    assert {(e.name, e.carried) for e in pipeline.step("b").inputs} == {("score", False), ("lock", True)}
    assert {(e.name, e.carried) for e in pipeline.step("c").inputs} == {("lock", False)}
    # step c reads it itself: step a must hand it over (or fail saying why), not leave it out
    assert kfp_spec.step_spec(pipeline, pipeline.step("a")).get("carried_out", []) == []
    alone = build(make_nb([(["step:a"], SETUP), (["step:b", "prev:a"], "total = score + 1")], name="alone.ipynb"))
    assert kfp_spec.step_spec(alone.pipeline, alone.pipeline.step("a"))["carried_out"] == ["lock"]


@pytest.mark.slow
def test_a_carried_global_that_cannot_be_handed_over_is_left_out_with_a_log_line(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], SETUP), (["step:b", "prev:a"], "total = score + 1"), (["pipeline-metrics"], "total")])
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"total": 1.5}
    log = (Path(record["run_dir"]) / "run.log").read_text()
    assert "cannot hand variable 'lock' (_thread.lock) from step 'a'" in log
    assert "left out: later steps receive it only for a function that may read it" in log
    assert "'lock' is not here (" in log and "only a function that reads it needs it, and fails if called" in log
