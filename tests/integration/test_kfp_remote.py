"""``nb2kfp publish`` and ``nb2kfp run --host`` against the KFP API double (tests/doubles/kfp_server.py),
driven through the real ``kfp.Client`` 2.17.3 over HTTP on 127.0.0.1.

What the double does not cover (see its docstring): real scheduling and execution (run states only
advance when polled, one task at a time), artifacts and metrics, logs, caching, multi-user namespaces,
pagination, the Kubernetes-native (CRD) mode (the manifests are checked for shape only), and the exact
error bodies of a real KFP server.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES
from doubles.kfp_server import KfpServer
from nb2kfp.commands import publish
from nb2kfp.commands import run as run_command
from nb2kfp.errors import UsageError

pytestmark = pytest.mark.slow

TOKEN = "kfp-test-token-3f9a1c"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Lines:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.err: list[str] = []

    @property
    def all(self) -> str:
        return "\n".join(self.out + self.err)


@pytest.fixture
def kfp(monkeypatch: pytest.MonkeyPatch) -> Iterator[KfpServer]:
    monkeypatch.setenv("NB2KFP_KFP_TOKEN", TOKEN)
    monkeypatch.delenv("NB2KFP_KFP_TOKEN_FILE", raising=False)
    monkeypatch.delenv("CI_COMMIT_SHA", raising=False)
    with KfpServer(token=TOKEN) as server:
        yield server


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    target = tmp_path / "wordcount.ipynb"
    shutil.copy(EXAMPLES / "wordcount.ipynb", target)
    return target


def _publish(
    notebook: Path, host: str | None, manifests: Path | None = None, commit: str = COMMIT
) -> tuple[int, Lines]:
    lines = Lines()
    code = publish.run([notebook], host, manifests, commit, lines.out.append, lines.err.append)
    return code, lines


def _edit(notebook: Path, change: Callable[[str], str]) -> None:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if "pipeline-parameters" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = change("".join(cell["source"]))
    notebook.write_text(json.dumps(nb), encoding="utf-8")


def test_publish_creates_pipeline_and_version(kfp: KfpServer, notebook: Path) -> None:
    code, lines = _publish(notebook, kfp.url)
    assert code == 0, lines.all
    assert [p["name"] for p in kfp.pipelines.values()] == ["wordcount"]
    names = sorted(v["name"] for v in kfp.versions_of("wordcount"))
    ours = [n for n in names if n.startswith(COMMIT[:12] + "-")]
    assert len(ours) == 1, names  # plus the default version KFP makes with the pipeline
    version = next(v for v in kfp.versions.values() if v["name"] == ours[0])
    uploaded = list(yaml.safe_load_all(kfp.specs[version["pipeline_version_id"]]))
    assert uploaded[0]["pipelineInfo"]["name"] == "wordcount"
    assert set(uploaded[0]["root"]["dag"]["tasks"]) == {"nb2kfp-runtime", "load-text", "tokenize", "count", "summarize"}
    url = f"{kfp.url}/#/pipelines/details/{version['pipeline_id']}/version/{version['pipeline_version_id']}"
    assert lines.out == [f"{notebook}: wordcount version {ours[0]} published: {url}"]
    assert TOKEN not in lines.all


def test_publish_again_uploads_nothing(kfp: KfpServer, notebook: Path) -> None:
    assert _publish(notebook, kfp.url)[0] == 0
    before = dict(kfp.versions)
    uploads = sum(1 for _, path, _ in kfp.requests if path.endswith("/upload_version"))
    code, lines = _publish(notebook, kfp.url)
    assert code == 0, lines.all
    assert kfp.versions == before
    assert sum(1 for _, path, _ in kfp.requests if path.endswith("/upload_version")) == uploads
    assert "already there" in lines.out[0]
    assert len(kfp.pipelines) == 1


def test_changed_notebook_makes_a_second_version(kfp: KfpServer, notebook: Path) -> None:
    assert _publish(notebook, kfp.url)[0] == 0
    first = {v["name"] for v in kfp.versions_of("wordcount")}
    _edit(notebook, lambda src: src.replace("top_n = 5", "top_n = 7"))
    code, lines = _publish(notebook, kfp.url)
    assert code == 0, lines.all
    added = {v["name"] for v in kfp.versions_of("wordcount")} - first
    assert len(added) == 1 and next(iter(added)).startswith(COMMIT[:12] + "-"), added
    assert len(kfp.pipelines) == 1
    spec = yaml.safe_load(
        kfp.specs[next(v for v in kfp.versions.values() if v["name"] in added)["pipeline_version_id"]]
    )
    assert spec["root"]["inputDefinitions"]["parameters"]["top_n"]["defaultValue"] == 7


def test_manifests_are_pipeline_and_pipelineversion(tmp_path: Path, notebook: Path) -> None:
    out = tmp_path / "manifests"
    code, lines = _publish(notebook, None, out)
    assert code == 0, lines.all
    docs = {d["kind"]: d for d in (yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(out.iterdir()))}
    assert set(docs) == {"Pipeline", "PipelineVersion"}
    pipeline, version = docs["Pipeline"], docs["PipelineVersion"]
    assert pipeline["apiVersion"] == version["apiVersion"] == "pipelines.kubeflow.org/v2beta1"
    assert pipeline["metadata"]["name"] == "wordcount"
    name = version["spec"]["versionName"]
    assert name.startswith(COMMIT[:12] + "-") and len(name) == 25
    assert version["metadata"]["name"] == f"wordcount-{name}"
    assert version["spec"]["pipelineName"] == "wordcount"
    spec = version["spec"]["pipelineSpec"]
    assert spec["pipelineInfo"]["name"] == "wordcount" and "root" in spec and "deploymentSpec" in spec
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # the real proto accepts it
    assert f"-> {out}" in lines.out[0]


def test_wrong_token_is_one_clear_line(kfp: KfpServer, notebook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "not-the-right-token-77"
    monkeypatch.setenv("NB2KFP_KFP_TOKEN", wrong)
    code, lines = _publish(notebook, kfp.url)
    assert code == 1
    assert lines.out == []
    assert len(lines.err) == 1, lines.err
    assert "HTTP 401" in lines.err[0] and kfp.url in lines.err[0]
    assert wrong not in lines.all and TOKEN not in lines.all
    assert kfp.pipelines == {}


def test_server_error_is_one_clear_line(kfp: KfpServer, notebook: Path) -> None:
    kfp.fail_with = 500
    code, lines = _publish(notebook, kfp.url)
    assert code == 1
    assert len(lines.err) == 1 and "HTTP 500" in lines.err[0] and kfp.url in lines.err[0], lines.err


def test_server_down_is_one_clear_line(notebook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB2KFP_KFP_TOKEN", TOKEN)
    with KfpServer(token=TOKEN) as server:
        url = server.url
    code, lines = _publish(notebook, url)
    assert code == 1
    assert len(lines.err) == 1, lines.err
    assert lines.err[0].startswith(f"{notebook}: cannot reach KFP at {url}:"), lines.err
    assert "Traceback" not in lines.all and TOKEN not in lines.all


def test_publish_needs_host_or_manifests(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NB2KFP_KFP_ENDPOINT", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UsageError):
        _publish(notebook, None, None)
    with pytest.raises(UsageError):
        _publish(notebook, "http://127.0.0.1:1", tmp_path)
    with pytest.raises(UsageError):
        _publish(notebook, "ftp://127.0.0.1:8888")


def test_publish_finds_endpoint_and_token_where_kfp_users_set_them(
    kfp: KfpServer, notebook: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --host and no nb2kfp variables: kfp.Client's KF_PIPELINES_ENDPOINT and KF_PIPELINES_TOKEN serve."""
    monkeypatch.delenv("NB2KFP_KFP_TOKEN")
    monkeypatch.delenv("NB2KFP_KFP_ENDPOINT", raising=False)
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", kfp.url)
    monkeypatch.setenv("KF_PIPELINES_TOKEN", TOKEN)
    code, lines = _publish(notebook, None)
    assert code == 0, lines.all
    assert [p["name"] for p in kfp.pipelines.values()] == ["wordcount"]
    assert TOKEN not in lines.all


def test_remote_run_follows_steps_to_success(kfp: KfpServer, notebook: Path) -> None:
    lines = Lines()
    code = run_command.remote(
        notebook,
        kfp.url,
        ["top_n=3"],
        wait=True,
        report=lines.out.append,
        report_error=lines.err.append,
        poll_seconds=0.01,
    )
    assert code == 0, lines.all
    [run] = kfp.runs.values()
    assert run.parameters == {"top_n": 3}
    assert run.state() == "SUCCEEDED"
    url = f"{kfp.url}/#/runs/details/{run.run_id}"
    assert lines.out[0] == f"run {run.run_id}: {url}"
    assert lines.out[-1].startswith("succeeded in ") and lines.out[-1].endswith(url)
    steps = [line.split() for line in lines.err if line.startswith("  ")]
    assert [s for s in steps if s[0] == "ok"] == [["ok", n] for n in ("load_text", "tokenize", "count", "summarize")]
    assert ["..", "load_text"] in steps and steps.index(["..", "load_text"]) < steps.index(["ok", "load_text"])
    assert all(s[1] != "root" for s in steps)  # KFP's DAG task is not a step
    assert [e["display_name"] for e in kfp.experiments.values()] == ["wordcount"]


def test_remote_run_failure_exits_1(notebook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB2KFP_KFP_TOKEN", TOKEN)
    with KfpServer(token=TOKEN, fail_task="count") as server:
        lines = Lines()
        code = run_command.remote(
            notebook,
            server.url,
            [],
            wait=True,
            report=lines.out.append,
            report_error=lines.err.append,
            poll_seconds=0.01,
        )
    assert code == 1
    assert any(line.split() == ["FAILED", "count"] for line in lines.err), lines.err
    assert lines.out[-1].startswith("failed in ")
    assert not any("summarize" in line for line in lines.err)


def test_remote_run_no_wait_returns_at_once(kfp: KfpServer, notebook: Path) -> None:
    lines = Lines()
    code = run_command.remote(notebook, kfp.url, [], wait=False, report=lines.out.append, report_error=lines.err.append)
    assert code == 0, lines.all
    [run] = kfp.runs.values()
    assert run.polls == 0  # never asked for its state
    assert lines.out == [f"run {run.run_id}: {kfp.url}/#/runs/details/{run.run_id}"]


def test_version_name_comes_from_ci_commit_sha(
    kfp: KfpServer, notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_COMMIT_SHA", "feedface" * 5)
    lines = Lines()
    assert publish.run([notebook], None, tmp_path / "m", None, lines.out.append, lines.err.append) == 0
    [version] = [p for p in (tmp_path / "m").iterdir() if p.name.endswith(".pipelineversion.yaml")]
    assert version.name.startswith("wordcount-feedfacefeed-")
