"""Which errors in a KFP client session name the KFP server (clients/kfp.py): connection and HTTP errors, and
the SDK's ValueError for a name the server holds several of. Anything else keeps its own type and message
(it used to become "KFP at HOST: ...", hiding a local cause). Against the KFP API double (tests/doubles)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES
from doubles.kfp_server import KfpServer
from nb2kfp.backends import kfp_spec
from nb2kfp.clients import kfp as kfp_client
from nb2kfp.errors import RunError
from nb2kfp.frontend.builder import build


@pytest.fixture
def kfp() -> Iterator[KfpServer]:
    with KfpServer() as server:
        yield server


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    notebook = tmp_path / "wordcount.ipynb"
    shutil.copy(EXAMPLES / "wordcount.ipynb", notebook)
    target = tmp_path / "wordcount.yaml"
    target.write_text(kfp_spec.render(build(notebook).pipeline), encoding="utf-8")
    return target


def test_an_error_of_the_callers_own_code_keeps_its_message(kfp: KfpServer, spec: Path) -> None:
    run = kfp_client.create_run(spec, kfp.url, None, {}, "default", "r1")

    def on_event(task: str, state: str) -> None:
        raise ValueError(f"the caller's own bug at {task}")

    with pytest.raises(ValueError, match=r"^the caller's own bug at "):
        kfp_client.follow(kfp.url, None, run.run_id, on_event, poll_seconds=0)


def test_a_missing_spec_file_is_not_a_kfp_connection_error(kfp: KfpServer, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.yaml"):
        kfp_client.create_run(tmp_path / "nowhere.yaml", kfp.url, None, {}, "default", "r1")


def test_several_pipelines_of_one_name_on_the_server_is_a_kfp_error(kfp: KfpServer, spec: Path) -> None:
    first = kfp_client.publish(spec, "wordcount", "v1", kfp.url, None)
    twin = dict(kfp.pipelines[first.pipeline_id], pipeline_id="twin-id")
    kfp.pipelines["twin-id"] = twin  # KFP allowed duplicates across namespaces and older releases
    with pytest.raises(RunError, match=f"^KFP at {re.escape(kfp.url)}: Multiple pipelines with the name: wordcount"):
        kfp_client.publish(spec, "wordcount", "v2", kfp.url, None)


def test_several_experiments_of_one_name_on_the_server_is_a_kfp_error(kfp: KfpServer, spec: Path) -> None:
    kfp_client.create_run(spec, kfp.url, None, {}, "team", "r1")
    (experiment,) = kfp.experiments.values()
    kfp.experiments["twin-id"] = dict(experiment, experiment_id="twin-id")
    with pytest.raises(RunError, match=f"^KFP at {re.escape(kfp.url)}: Multiple experiments is found with name team"):
        kfp_client.create_run(spec, kfp.url, None, {}, "team", "r2")


def test_no_server_is_still_cannot_reach(tmp_path: Path, spec: Path) -> None:
    with KfpServer() as server:
        url = server.url
    with pytest.raises(RunError, match=f"^cannot reach KFP at {re.escape(url)}: "):
        kfp_client.create_run(spec, url, None, {}, "default", "r1")
