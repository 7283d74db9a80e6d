"""The catalog pass: the IR holds a neutral component (ports with nb2kfp's types, no KFP JSON), the spec writer
reads the KFP JSON from the catalog again, and the front end never parses component schemas."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import yaml

from clirun import Make
from nb2kfp.backends import kfp_spec
from nb2kfp.catalog import lookup
from nb2kfp.config import find_settings
from nb2kfp.errors import NotebookError, RunError
from nb2kfp.frontend.builder import build

BUNDLED = lookup.bundled_dir() / "data-drift-check" / "0.1.0.yaml"
FRONTEND = Path(lookup.__file__).resolve().parent.parent / "frontend"


def drift(make_nb: Make, tag: str = "component:data-drift-check") -> Path:
    """A notebook calling the data-drift-check component (third cell), its inputs from a step and a parameter."""
    return make_nb(
        [
            (["pipeline-parameters"], "limit = 0.2"),
            (["step:data"], "ref_path = 'r.csv'\ncur_path = 'c.csv'"),
            ([tag], "reference = ref_path\ncurrent = cur_path\ncolumn = 'x'\nthreshold = limit"),
            (["step:decide"], "print(drifted, drift_score)"),
        ]
    )


def test_the_ir_holds_a_neutral_component(make_nb: Make) -> None:
    p = build(drift(make_nb)).pipeline
    call = p.step("data_drift_check").component
    assert call is not None
    ports = {(x.name, x.kind, x.type) for x in (*call.inputs, *call.outputs)}
    assert ("threshold", "parameter", "float") in ports and ("drifted", "parameter", "bool") in ports
    assert ("reference", "artifact", "system.Dataset") in ports
    text = json.dumps(dataclasses.asdict(call))
    for kfp_word in ("parameterType", "executorLabel", "NUMBER_DOUBLE", "BOOLEAN", "command"):
        assert kfp_word not in text
    assert call.image == p.step("data_drift_check").image == "python:3.11-slim"
    assert Path(call.file) == BUNDLED and len(call.sha256) == 64
    # the KFP types come back in the spec: the component as KFP wrote it, the decide step's inputs typed
    spec = next(yaml.safe_load_all(kfp_spec.render(p)))
    assert spec["components"]["comp-decide"]["inputDefinitions"]["parameters"]["drifted"] == {
        "parameterType": "BOOLEAN"
    }


def test_the_front_end_reads_no_kfp_component_schema() -> None:
    for module in FRONTEND.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        for kfp_word in ("parameterType", "executorLabel", "inputDefinitions", "deploymentSpec", "catalog.lookup"):
            assert kfp_word not in text, (module.name, kfp_word)


def test_the_spec_writer_copies_the_component_the_notebook_was_checked_against(
    make_nb: Make, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "nb2kfp.toml").write_text('[catalog]\npaths = ["components"]\n')
    (tmp_path / "components").mkdir()
    local = tmp_path / "components" / "drift.yaml"
    shutil.copy(BUNDLED, local)
    p = build(drift(make_nb, "component:drift"), find_settings(tmp_path)).pipeline

    def image() -> str:
        spec = next(yaml.safe_load_all(kfp_spec.render(p)))
        return str(spec["deploymentSpec"]["executors"]["exec-drift"]["container"]["image"])

    local.write_text(local.read_text().replace("python:3.11-slim", "python:3.12-slim"))
    assert image() == "python:3.11-slim"  # what the front end read (by its sha256), not the file as it is now
    monkeypatch.setattr(lookup, "_SEEN", {})  # another process: the file is read again, and refused
    with pytest.raises(RunError, match="changed since the notebook was read"):
        image()
    shutil.copy(BUNDLED, local)
    assert image() == "python:3.11-slim"


def test_a_component_parameter_of_a_type_a_notebook_cannot_pass_is_a_located_error(
    make_nb: Make, tmp_path: Path
) -> None:
    (tmp_path / "nb2kfp.toml").write_text('[catalog]\npaths = ["components"]\n')
    (tmp_path / "components").mkdir()
    text = BUNDLED.read_text().replace("parameterType: BOOLEAN", "parameterType: TASK_FINAL_STATUS")
    (tmp_path / "components" / "drift.yaml").write_text(text)
    with pytest.raises(NotebookError) as info:
        build(drift(make_nb, "component:drift"), find_settings(tmp_path))
    [found] = info.value.errors
    assert found.code == "NB095" and found.cell == 3 and "TASK_FINAL_STATUS" in found.message, found.format()
