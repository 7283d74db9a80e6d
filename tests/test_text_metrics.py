"""Text metrics: a `pipeline-metrics` variable set to a str (`best = "rf"`) is no KFP metric (those are numbers),
but it is shown where a user looks: `text_metrics` in `--json`/result.json, report.html, and in the KFP UI a
system.Markdown output of the step (a table of all its metrics; docs/kfp-backend.md, g)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from kfp import components

from conftest import run_local_json
from nb2kfp.backends import kfp_spec
from nb2kfp.frontend.builder import build

Make = Callable[..., Path]

CELLS = [
    (["step:train"], "acc = 0.75\nbest = 'rf | <b>'\nnotes = 'line 1\\nline 2'\nshape = (2, 3)"),
    (["pipeline-metrics"], "print(acc)\nprint(best)\nprint(notes)\nprint(shape)"),
]


def test_a_metrics_step_declares_a_markdown_output_the_kfp_sdk_loads(make_nb: Make, tmp_path: Path) -> None:
    pipeline = build(make_nb(CELLS)).pipeline
    out = tmp_path / "p.yaml"
    out.write_text(kfp_spec.render(pipeline))
    spec = next(yaml.safe_load_all(out.read_text()))
    outputs = spec["components"]["comp-train"]["outputDefinitions"]["artifacts"]
    assert outputs[kfp_spec.METRICS_KEY]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs[kfp_spec.METRICS_TEXT_KEY]["artifactType"]["schemaTitle"] == "system.Markdown"
    components.load_component_from_file(str(out))  # the KFP SDK reads it back


@pytest.mark.slow
def test_text_metrics_reach_the_json_record_the_report_and_the_markdown_artifact(make_nb: Make) -> None:
    nb = make_nb(CELLS)
    proc, record = run_local_json(nb, "--no-cache", "--run-name", "texts")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"acc": 0.75}
    assert record["text_metrics"] == {"best": "rf | <b>", "notes": "line 1\nline 2"}
    run_dir = Path(record["run_dir"])
    assert json.loads((run_dir / "result.json").read_text())["text_metrics"] == record["text_metrics"]
    page = (run_dir / "report.html").read_text()
    assert "<td>best</td>" in page and "rf | &lt;b&gt;" in page and "line 1\nline 2" in page
    (markdown,) = run_dir.glob(f"artifacts/*/train/{kfp_spec.METRICS_TEXT_KEY}")
    assert markdown.read_text().splitlines() == [
        "| metric | value |",
        "| --- | --- |",
        "| acc | 0.75 |",
        "| best | rf \\| &lt;b&gt; |",
        "| notes | line 1<br>line 2 |",
        "| shape | *not recorded (see the step's log)* |",
    ]
    log = (run_dir / "run.log").read_text()
    assert "metric 'shape' is a tuple ((2, 3)), not a number or text: left out of the metrics" in log
