"""The monitoring notebook nb2kfp writes compiles like any other: one drift step, its metrics, parameters, image
and registry secret; bad monitor input is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nb2kfp.frontend.builder import build
from nb2kfp.monitor import pipeline

IMAGE = "registry.example.com/ml/clf@sha256:" + "a" * 64


def test_the_monitoring_notebook_compiles_to_one_drift_step(tmp_path: Path) -> None:
    features = ["sepal width (cm)", "class", "x0", "X0"]
    content = pipeline.notebook(
        "clf", IMAGE, features, "/logs", 0.01, "bh", "reg.example.com/monitor@sha256:" + "b" * 64, "regcred"
    )
    built = build(pipeline.write(tmp_path, content)).pipeline
    (step,) = built.steps
    assert step.name == "drift" and not step.caching and step.image.startswith("reg.example.com/monitor@")
    assert step.metrics == ("drift_detected", "drifted_features", "p_sepal_width_cm", "p_class", "p_x0", "p_x0_2")
    assert {(s.env, s.secret, s.key) for s in step.secrets} >= {
        ("NB2KFP_REGISTRY_USER", "regcred", "username"),
        ("NB2KFP_REGISTRY_PASSWORD", "regcred", "password"),
    }
    defaults = {p.name: p.default for p in built.parameters}
    assert defaults == {"model_image": IMAGE, "requests": "/logs", "alpha": 0.01, "correction": "bh"}
    assert built.name == "monitor-clf"


def test_a_bad_correction_is_refused() -> None:
    from nb2kfp.errors import UsageError

    with pytest.raises(UsageError, match="choose bonferroni or bh"):
        pipeline.notebook("clf", IMAGE, ["a"], "/logs", 0.05, "holm")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--requests", "nowhere"], "--requests nowhere: no such file or folder"),
        (["--requests", ".", "--alpha", "2"], "--alpha: give a level between 0 and 1"),
        (["--requests", ".", "--publish"], "--publish needs --registry"),
    ],
)
def test_monitor_refuses_bad_input_in_one_line(tmp_path: Path, args: list[str], fragment: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "monitor", IMAGE, *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_schedule_publishes_and_makes_a_recurring_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Against the KFP double: the version is uploaded, then a recurring run of it, on KFP's 6-field cron."""
    from doubles.kfp_server import KfpServer
    from nb2kfp.commands import monitor

    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    content = pipeline.notebook(
        "clf", IMAGE, ["a", "b"], "/mnt/logs", 0.05, "bonferroni", "r.example.com/m@sha256:" + "d" * 64
    )
    notebook = pipeline.write(tmp_path / "mon", content)
    lines: list[str] = []
    with KfpServer() as kfp:
        assert monitor.schedule(notebook, kfp.url, "0 6 * * *", lines.append) == 0
        (job,) = kfp.recurring_runs.values()
        version = kfp.versions[job["pipeline_version_reference"]["pipeline_version_id"]]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 6 * * *" and job["max_concurrency"] in ("1", 1)
    assert version["display_name"] in lines[-1] and version["display_name"] != "monitor-clf"  # the published one
    assert "recurring run" in lines[-1] and "monitor-clf" in lines[-1]
    with pytest.raises(Exception, match="give a cron expression"):
        monitor.cron_fields("every day")
