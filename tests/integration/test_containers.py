"""Step and model images against the real Docker engine and a registry with htpasswd auth (.ci/services.sh).

Needs NB2KFP_TEST_REGISTRY, NB2KFP_TEST_REGISTRY_USER, NB2KFP_TEST_REGISTRY_PASSWORD_FILE and
NB2KFP_TEST_BASE_IMAGE (written by .ci/services.sh); skipped without them, a failure under CI.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES, require
from nb2kfp.loader import WORK_TREE
from nbfactory import write

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services() -> dict[str, str]:
    names = [
        "NB2KFP_TEST_REGISTRY",
        "NB2KFP_TEST_REGISTRY_USER",
        "NB2KFP_TEST_REGISTRY_PASSWORD_FILE",
        "NB2KFP_TEST_BASE_IMAGE",
    ]
    require(all(os.environ.get(n) for n in names), "no test registry: run .ci/services.sh and source its env file")
    try:
        import docker

        docker.from_env().ping()
        engine = True
    except Exception:  # the docker package missing or no engine answering: both mean no engine for this test
        engine = False
    require(engine, "no Docker engine answers")
    return {n: os.environ[n] for n in names}


@pytest.fixture
def project(tmp_path: Path, services: dict[str, str]) -> Path:
    (tmp_path / "nb2kfp.toml").write_text(f'image = "{services["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    shutil.copy(EXAMPLES / "wordcount.ipynb", tmp_path / "wordcount.ipynb")
    return tmp_path


def password(services: dict[str, str]) -> str:
    return Path(services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"]).read_text().strip()


def nb2kfp(cwd: Path, services: dict[str, str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "NB2KFP_REGISTRY_USER": services["NB2KFP_TEST_REGISTRY_USER"],
        "NB2KFP_REGISTRY_PASSWORD_FILE": services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"],
        **env,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=900
    )
    assert password(services) not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def unique(services: dict[str, str]) -> str:
    return f"{services['NB2KFP_TEST_REGISTRY']}/t{uuid.uuid4().hex[:10]}"


def tags(services: dict[str, str], repository: str) -> list[str]:
    import requests

    host, _, name = repository.partition("/")
    r = requests.get(
        f"http://{host}/v2/{name}/tags/list",
        timeout=10,
        auth=(services["NB2KFP_TEST_REGISTRY_USER"], password(services)),
    )
    return list(r.json().get("tags") or []) if r.status_code == 200 else []


def test_build_push_pull_and_run_a_pipeline_in_its_image(project: Path, services: dict[str, str]) -> None:
    registry = unique(services)
    proc = nb2kfp(project, services, "run", "wordcount.ipynb", "--docker", "--registry", registry, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["steps"].values()) == {"succeeded"}
    local = json.loads(nb2kfp(project, services, "run", "wordcount.ipynb", "--json").stdout)
    assert result["metrics"] == local["metrics"] and result["metrics"]
    spec = (Path(result["run_dir"]) / "pipeline.yaml").read_text()
    assert f"image: {registry}/wordcount@sha256:" in spec
    assert password(services) not in spec


def test_second_build_of_an_unchanged_notebook_builds_and_pushes_nothing(
    project: Path, services: dict[str, str]
) -> None:
    registry = unique(services)
    first = nb2kfp(project, services, "build", "wordcount.ipynb", "--registry", registry, "--output-dir", "out")
    assert first.returncode == 0, first.stderr
    record = json.loads((project / "out" / "wordcount.image.json").read_text())
    assert record["built"] and record["digest"].startswith("sha256:")  # layers may be mounted: 0 bytes is fine
    second = nb2kfp(project, services, "build", "wordcount.ipynb", "--registry", registry, "--output-dir", "out")
    assert second.returncode == 0 and "nothing built or pushed" in second.stderr
    again = json.loads((project / "out" / "wordcount.image.json").read_text())
    assert (again["built"], again["pushed_bytes"], again["digest"]) == (False, 0, record["digest"])
    spec = (project / "out" / "wordcount.pipeline.yaml").read_text()
    assert spec.count(f"image: {record['image']}") == 4  # every step pinned by digest


def test_ci_all_with_every_phase_compiles_each_notebook_once(
    project: Path, services: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """lint, compile, build (a real image in the registry), publish (KFP double) and report (a plan against the merge
    request base): the notebook's IR is built once for the run, and once more as of the base for the plan."""
    from collections import Counter
    from typing import Any

    from conftest import git
    from doubles.kfp_server import KfpServer
    from nb2kfp.commands import ci
    from nb2kfp.frontend import builder

    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    base = git(project, "rev-parse", "HEAD")
    raw = json.loads((project / "wordcount.ipynb").read_text())
    step = next(c for c in raw["cells"] if any(t.startswith("step:") for t in c["metadata"].get("tags", [])))
    step["source"] = "".join(step["source"]) + "\nedited = True\n"
    (project / "wordcount.ipynb").write_text(json.dumps(raw))
    git(project, "commit", "-qam", "second")
    monkeypatch.chdir(project)
    for name in ("NB2KFP_GITLAB_TOKEN", "GITLAB_TOKEN", "CI_MERGE_REQUEST_IID", "CI_COMMIT_BEFORE_SHA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI_MERGE_REQUEST_DIFF_BASE_SHA", base)
    monkeypatch.setenv("CI_COMMIT_SHA", git(project, "rev-parse", "HEAD"))
    monkeypatch.setenv("NB2KFP_REGISTRY_USER", services["NB2KFP_TEST_REGISTRY_USER"])
    monkeypatch.setenv("NB2KFP_REGISTRY_PASSWORD_FILE", services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"])
    monkeypatch.setenv("NB2KFP_KFP_TOKEN", "kfp-token-ci-all")
    builds: Counter[str] = Counter()
    real = builder.build

    def counting(path: str | Path, *args: Any, **kwargs: Any) -> builder.Result:
        work_tree = kwargs.get("loader", WORK_TREE) is WORK_TREE and "data" not in kwargs
        builds["work tree" if work_tree else "at the base"] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builder, "build", counting)
    lines: list[str] = []
    with KfpServer(token="kfp-token-ci-all") as kfp:
        code = ci.run("all", "*.ipynb", project / "out", unique(services), kfp.url, lines.append)
        assert code == 0, "\n".join(lines)
        assert kfp.versions_of("wordcount")
    assert builds == {"work tree": 1, "at the base": 1}
    entry = json.loads((project / "out" / "ci.json").read_text())["notebooks"]["wordcount.ipynb"]
    assert entry["status"] == "success" and "@sha256:" in entry["image"] and entry["kfp_url"]
    assert any("changed" in line and "runs (changed: code)" in line for line in lines)  # the plan in the note


def test_bad_credentials_are_refused_cleanly_and_leave_no_tag(project: Path, services: dict[str, str]) -> None:
    registry = unique(services)
    proc = nb2kfp(
        project,
        services,
        "build",
        "wordcount.ipynb",
        "--registry",
        registry,
        NB2KFP_REGISTRY_PASSWORD_FILE="",
        NB2KFP_REGISTRY_PASSWORD="wrong-password-42",
    )
    assert proc.returncode == 1
    assert "refused the credentials" in proc.stderr and "wrong-password-42" not in proc.stderr
    assert tags(services, f"{registry}/wordcount") == []


def test_registry_down_is_one_clear_line(project: Path, services: dict[str, str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = nb2kfp(project, services, "build", "wordcount.ipynb", "--registry", f"127.0.0.1:{port}/x")
    assert proc.returncode == 1 and "is not reachable" in proc.stderr


def test_build_failure_names_what_failed(project: Path, services: dict[str, str]) -> None:
    (project / "requirements.txt").write_text("nb2kfp-no-such-package-anywhere==0.0.1\n")
    proc = nb2kfp(project, services, "build", "wordcount.ipynb", "--registry", unique(services))
    assert proc.returncode == 1 and "pip could not fetch" in proc.stderr
    (project / "requirements.txt").unlink()
    proc = nb2kfp(
        project, services, "build", "wordcount.ipynb", "--registry", unique(services), "--base", "nb2kfp-no-such-base:0"
    )
    assert proc.returncode == 1
    assert "base image nb2kfp-no-such-base:0: not in the Docker engine, and its registry did not answer" in proc.stderr


@pytest.fixture
def engine_images() -> Iterator[list[str]]:
    """Image references a test makes in the engine: removed after it."""
    import docker

    made: list[str] = []
    yield made
    client = docker.from_env()
    for ref in made:
        with contextlib.suppress(docker.errors.APIError):  # never made (the test failed before) or already gone
            client.images.remove(ref, noprune=False)


def test_the_tag_is_the_same_whether_the_engine_has_the_base_or_not(
    project: Path, services: dict[str, str], engine_images: list[str]
) -> None:
    """The tag hashes the base image's registry digest: the first build (no base in the engine: it pulls it,
    with the registry's credentials) and the next (which finds it) compute the same tag; an engine without
    the base (a fresh CI machine) finds the image built and pulls nothing. (It hashed the base's name when the
    engine lacked it, its id after the pull: a second, different image; and the build's pull had no
    credentials.)"""
    import docker

    client = docker.from_env()
    registry = unique(services)
    base = f"{registry}/base:1"
    auth = {"username": services["NB2KFP_TEST_REGISTRY_USER"], "password": password(services)}
    client.images.get(services["NB2KFP_TEST_BASE_IMAGE"]).tag(base)
    assert "error" not in client.images.push(base, auth_config=auth)
    client.images.remove(base)  # the engine no longer has it under this name: the build must pull it
    engine_images.append(base)
    records = []
    for _ in range(3):
        proc = nb2kfp(
            project, services, "build", "wordcount.ipynb", "--registry", registry, "--base", base, "--output-dir", "out"
        )
        assert proc.returncode == 0, proc.stderr
        records.append(json.loads((project / "out" / "wordcount.image.json").read_text()))
        engine_images.append(f"{records[-1]['repository']}:{records[-1]['tag']}")
        if len(records) == 2:
            client.images.remove(base)  # a fresh machine: the third build must not need it
    assert len({(r["tag"], r["digest"]) for r in records}) == 1
    assert [r["built"] for r in records] == [True, False, False]
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(base)  # nothing pulled for an image already built


def test_a_base_whose_python_does_not_run_is_an_error_naming_it_and_what_the_probe_said(
    project: Path, services: dict[str, str], engine_images: list[str]
) -> None:
    """Wheels are fetched for the base image's Python: when probing it fails, the build stops and says why
    (it used to fetch wheels for this machine's Python and build an image whose steps cannot start)."""
    import docker

    base = f"nb2kfp-test-broken-python:{uuid.uuid4().hex[:10]}"
    dockerfile = (
        f"FROM {services['NB2KFP_TEST_BASE_IMAGE']}\n"
        "RUN mkdir -p /usr/local/bin "
        "&& printf '#!/bin/sh\\necho this python is broken >&2\\nexit 3\\n' > /usr/local/bin/python3 "
        "&& chmod +x /usr/local/bin/python3\n"
    )
    context = project / "broken"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    docker.from_env().images.build(path=str(context), tag=base, network_mode="none", rm=True)
    engine_images.append(base)
    proc = nb2kfp(project, services, "build", "wordcount.ipynb", "--registry", unique(services), "--base", base)
    assert proc.returncode == 1
    assert f"base image {base}: probing its Python failed (python3 exited with 3: this python is broken)" in proc.stderr


def test_model_image_same_digest_zero_bytes_and_no_engine_needed(tmp_path: Path, services: dict[str, str]) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(os.urandom(3_000_000))
    (model / "sub" / "config.json").write_text('{"classes": 3}')
    image = f"{unique(services)}/iris-model"
    no_engine = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    first = nb2kfp(
        tmp_path, services, "model", "build", str(model), "--image", image, "--output-dir", "m1", **no_engine
    )
    assert first.returncode == 0, first.stderr
    (model / "weights.bin").touch()  # a new mtime must not change the digest
    second = nb2kfp(
        tmp_path, services, "model", "build", str(model), "--image", image, "--output-dir", "m2", **no_engine
    )
    assert second.returncode == 0, second.stderr
    ref = first.stdout.strip()
    assert ref.startswith(f"{image}@sha256:") and second.stdout.strip() == ref
    assert json.loads((tmp_path / "m2" / "model.json").read_text())["pushed_bytes"] == 0
    isvc = (tmp_path / "m1" / "inferenceservice.yaml").read_text()
    assert f"storageUri: oci://{ref}" in isvc
    assert "cp -r /models/. /mnt/models/" in (tmp_path / "m1" / "deployment.yaml").read_text()
    assert f"digest: {ref.split('@')[1]}" in (tmp_path / "m1" / "kustomization.yaml").read_text()

    import docker

    client = docker.from_env()
    host = image.split("/", 1)[0]
    client.login(username=services["NB2KFP_TEST_REGISTRY_USER"], password=password(services), registry=host)
    client.images.pull(ref)
    out = client.containers.run(
        ref, ["sh", "-c", "ln -s /models /tmp/m && ls /tmp/m/sub && sleep 0"], remove=True, network_mode="none"
    )
    assert out.decode().split() == ["config.json"]


def test_model_bad_input(tmp_path: Path, services: dict[str, str]) -> None:
    proc = nb2kfp(tmp_path, services, "model", "build", str(tmp_path / "missing"), "--image", f"{unique(services)}/m")
    assert proc.returncode == 1 and "no such model file or folder" in proc.stderr
    write(tmp_path / "x.ipynb", [(["step:a"], "x = 1")])
    proc = nb2kfp(tmp_path, services, "model", "build", str(tmp_path / "x.ipynb"), "--image", "not a ref")
    assert proc.returncode == 2 and "--image" in proc.stderr


def test_model_tag_packages_the_trained_model_after_a_run(tmp_path: Path, services: dict[str, str]) -> None:
    """model:VARIABLE saves the variable as a system.Model artifact; run --model-image pushes it as a modelcar."""
    from nbfactory import write as write_nb

    write_nb(
        tmp_path / "train.ipynb",
        [
            (["imports"], "from sklearn.linear_model import LinearRegression"),
            (["step:train", "model:model"], "model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])"),
            (["step:report"], "slope = float(model.coef_[0])"),
            (["pipeline-metrics"], "print(slope)"),
        ],
    )
    prefix = unique(services)
    proc = nb2kfp(tmp_path, services, "run", "train.ipynb", "--json", "--model-image", prefix)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    ref = result["models"]["model"]
    assert ref.startswith(f"{prefix}/model@sha256:") and result["metrics"]["slope"] == pytest.approx(2.0)
    spec = (Path(result["run_dir"]) / "pipeline.yaml").read_text()
    assert "schemaTitle: system.Model" in spec
    isvc = (Path(result["run_dir"]) / "models" / "model" / "inferenceservice.yaml").read_text()
    assert f"storageUri: oci://{ref}" in isvc

    import docker

    client = docker.from_env()
    client.login(
        username=services["NB2KFP_TEST_REGISTRY_USER"], password=password(services), registry=prefix.split("/", 1)[0]
    )
    client.images.pull(ref)
    out = client.containers.run(ref, ["sh", "-c", "ls /models"], remove=True, network_mode="none")
    assert out.decode().split() == ["card.json", "model-settings.json", "model.joblib", "nb2kfp.json"]  # card: issue 28
    labels = client.images.get(ref).labels
    import sklearn

    assert labels["io.nb2kfp.model.framework"] == "scikit-learn"
    assert labels["io.nb2kfp.model.framework-version"] == sklearn.__version__  # the step's own, recorded as it saved
    assert (labels["io.nb2kfp.model.notebook"], labels["io.nb2kfp.model.n-features"]) == ("train.ipynb", "1")
    assert "io.nb2kfp.model.run" not in labels  # the run varies: it would make the digest vary (issue 26)
    again = nb2kfp(tmp_path, services, "run", "train.ipynb", "--json", "--model-image", prefix)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)
    assert set(second["steps"].values()) == {"cached"} and second["models"]["model"] == ref  # same weights, digest


def test_model_tag_must_name_a_variable_the_step_sets(tmp_path: Path, services: dict[str, str]) -> None:
    from nbfactory import write as write_nb

    write_nb(tmp_path / "bad.ipynb", [(["step:train", "model:modle"], "model = 1")])
    proc = nb2kfp(tmp_path, services, "lint", "bad.ipynb")
    assert proc.returncode == 1 and "cell 1: error: model:modle: step 'train' does not set 'modle'" in proc.stdout


def test_no_credentials_is_one_line_naming_where_they_come_from(tmp_path: Path, services: dict[str, str]) -> None:
    """The real registry asks for credentials that nobody set: oras' BasicAuth used to raise AttributeError (and
    the CLI's fallback handler a second traceback) in run --model-image, model serve/deploy and model build."""
    from nbfactory import write as write_nb

    write_nb(
        tmp_path / "train.ipynb",
        [
            (["imports"], "from sklearn.linear_model import LinearRegression"),
            (["step:train", "model:model"], "model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])"),
        ],
    )
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    nobody = {"NB2KFP_REGISTRY_USER": "", "NB2KFP_REGISTRY_PASSWORD_FILE": "", "DOCKER_CONFIG": str(empty)}
    registry = services["NB2KFP_TEST_REGISTRY"]
    for args in (
        ("run", "train.ipynb", "--model-image", unique(services)),
        ("model", "serve", f"{registry}/ml/none:latest", "--local"),
        ("model", "deploy", f"{registry}/ml/none:latest", "--name", "m", "-o", str(tmp_path / "out")),
    ):
        proc = nb2kfp(tmp_path, services, *args, **nobody)
        assert proc.returncode == 1, (args, proc.stderr)
        assert f"registry {registry} asks for credentials and none are set" in proc.stderr, (args, proc.stderr)
    # every step of the run succeeded: its record says so (it read "lost" when the push failed)
    [result] = (tmp_path / ".nb2kfp" / "runs").glob("*/result.json")
    assert json.loads(result.read_text())["status"] == "succeeded"


def test_the_image_carries_the_notebooks_files_and_its_tag_follows_their_contents(
    tmp_path: Path, services: dict[str, str]
) -> None:
    """`build` copies data.csv and helpers.py into the image's working directory; building again with the folder
    unchanged (a file only touched) builds and pushes nothing (a changed file makes a new tag: the files' digest,
    tests/test_image_files.py); a credential in a file the image would carry stops the build, naming the file,
    never the value."""
    import docker

    (tmp_path / "nb2kfp.toml").write_text(f'image = "{services["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    (tmp_path / "data.csv").write_text("x\n1\n")
    (tmp_path / "helpers.py").write_text("N = 2\n")
    (tmp_path / "notes.txt").write_text("not read by any step\n")
    write(tmp_path / "nb.ipynb", [(["imports"], "import helpers"), (["step:a"], "t = open('data.csv').read()")])
    registry = unique(services)
    records = []
    for change in ("first", "touched"):
        if change == "touched":
            os.utime(tmp_path / "data.csv", (1, 1))
        proc = nb2kfp(tmp_path, services, "build", "nb.ipynb", "--registry", registry, "--output-dir", "out")
        assert proc.returncode == 0, proc.stderr
        records.append(json.loads((tmp_path / "out" / "nb.image.json").read_text()))
    assert [r["built"] for r in records] == [True, False]
    assert records[0]["tag"] == records[1]["tag"] and records[1]["pushed_bytes"] == 0
    probe = "import os; print(os.getcwd(), sorted(os.listdir())); import helpers; print(helpers.N)"
    out = docker.from_env().containers.run(
        records[1]["image"], ["python3", "-c", probe], remove=True, network_mode="none"
    )
    assert out.decode().split() == ["/opt/nb2kfp/work", "['data.csv',", "'helpers.py']", "2"]  # not notes.txt
    token = "glpat-" + "Qw7" * 8
    (tmp_path / "helpers.py").write_text(f"N = 2\nTOKEN = '{token}'\n")
    proc = nb2kfp(tmp_path, services, "build", "nb.ipynb", "--registry", registry)
    assert proc.returncode == 1 and "helpers.py: line 2: a GitLab token" in proc.stderr
    assert token not in proc.stderr + proc.stdout
