"""The Monitor stage with the real parts: the registry with auth, the Docker engine, MLServer, kfp.local.

A model image records a reference sample of its training data (the same data gives the same digest); served
locally with ``--log-requests`` it logs each request; ``nb2kfp monitor`` tests logged requests against the sample.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_containers import nb2kfp, services, unique

from nb2kfp.serving import oci, reference
from nbfactory import write

__all__ = ["services"]  # the fixture, used by name


def test_the_same_weights_and_data_give_the_same_digest(
    tmp_path: Path, services: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs save the same model with different signatures (the run's key signs nb2kfp.json): the image is one."""
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from nb2kfp.commands.run import _package_models
    from nb2kfp.frontend.builder import build
    from nb2kfp.kfpnames import task_name
    from nbfactory import write

    monkeypatch.setenv("NB2KFP_REGISTRY_USER", services["NB2KFP_TEST_REGISTRY_USER"])
    monkeypatch.setenv("NB2KFP_REGISTRY_PASSWORD_FILE", services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"])
    monkeypatch.chdir(tmp_path)
    nb = write(tmp_path / "nb.ipynb", [(["step:train", "model:clf"], "X = [[0.0], [1.0]]\nclf = len(X)\nclf.fit(X)")])
    pipeline = build(nb).pipeline
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    clf = LogisticRegression().fit(X, [0, 1, 0])
    prefix, refs = unique(services), []
    for run, signature in (("a", "1" * 64), ("b", "2" * 64)):
        saved = tmp_path / run / "artifacts" / "x" / task_name("train")
        (saved / "clf").mkdir(parents=True)
        joblib.dump(clf, saved / "clf" / "data.joblib")
        meta = {"format": "joblib", "framework": "scikit-learn", "framework_version": "1.9.1", "hmac": signature}
        (saved / "clf" / "nb2kfp.json").write_text(json.dumps(meta))
        (saved / "X").mkdir()
        np.save(saved / "X" / "data.npy", X)
        (saved / "X" / "nb2kfp.json").write_text('{"format": "npy"}')
        refs.append(_package_models(nb, tmp_path / run, pipeline, prefix, lambda line: None)["clf"])
    assert refs[0] == refs[1]
    labels = oci.read(refs[0]).meta
    assert labels.framework_version == "1.9.1"
    ref, files = oci.read_with_files(refs[0], (reference.DATA, reference.SCHEMA))
    frame, features = reference.read(files[reference.DATA], files[reference.SCHEMA])
    assert frame.to_numpy().tolist() == X.tolist() and [f.name for f in features] == ["x0", "x1"]
    assert ref.labels["io.nb2kfp.reference.sha256"] == json.loads(files[reference.SCHEMA])["sha256"]


def _serve(project: Path, services: dict[str, str], ref: str, log_dir: Path) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "NB2KFP_REGISTRY_USER": services["NB2KFP_TEST_REGISTRY_USER"],
        "NB2KFP_REGISTRY_PASSWORD_FILE": services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"],
    }
    args = [sys.executable, "-m", "nb2kfp", "model", "serve", ref, "--local", "--log-requests", str(log_dir)]
    proc = subprocess.Popen(args, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()  # printed once the model answered the smoke request (not logged)
    if not url.startswith("http://127.0.0.1:"):
        proc.send_signal(signal.SIGINT)
        raise AssertionError(proc.communicate(timeout=60)[1])
    return proc, url


def _send(url: str, rows: list[list[float]], batch: int = 10) -> None:
    import requests

    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        data = [x for row in chunk for x in row]
        body = {"inputs": [{"name": "input-0", "shape": [len(chunk), 4], "datatype": "FP64", "data": data}]}
        answer = requests.post(f"{url}/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text


def _monitor(project: Path, services: dict[str, str], ref: str, source: Path) -> tuple[dict[str, float], str, str]:
    proc = nb2kfp(project, services, "monitor", ref, "--requests", str(source))
    assert proc.returncode == 0, proc.stderr
    metrics = {}
    for line in proc.stdout.splitlines():
        if line.startswith("metric "):
            name, value = line.removeprefix("metric ").split(" = ")
            metrics[name] = float(value)
    (last,) = [x for x in proc.stdout.splitlines() if "; report: " in x]
    verdict, report = last.split("; report: ")
    return metrics, verdict, (project / report).read_text()


@pytest.mark.slow
def test_served_requests_against_the_training_data(
    tmp_path: Path, services: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The issue's "done when": train, serve with logging, requests like the training data -> no drift; two
    features shifted -> drift on exactly those two, in the metrics and the report."""
    import numpy as np
    from sklearn.datasets import load_iris

    project = tmp_path
    (project / "nb2kfp.toml").write_text(f'image = "{services["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    write(
        project / "train.ipynb",
        [
            (["imports"], "from sklearn.datasets import load_iris\nfrom sklearn.tree import DecisionTreeClassifier"),
            (["step:data"], "X, y = load_iris(return_X_y=True, as_frame=True)"),
            (["step:train", "model:clf"], "clf = DecisionTreeClassifier(random_state=0).fit(X, y)"),
        ],
    )
    trained = nb2kfp(project, services, "run", "train.ipynb", "--local", "--model-image", unique(services))
    assert trained.returncode == 0, trained.stderr
    (line,) = [x for x in trained.stdout.splitlines() if x.startswith("model clf: ")]
    ref = line.removeprefix("model clf: ")
    monkeypatch.setenv("NB2KFP_REGISTRY_USER", services["NB2KFP_TEST_REGISTRY_USER"])
    monkeypatch.setenv("NB2KFP_REGISTRY_PASSWORD_FILE", services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"])
    model, files = oci.read_with_files(ref, ("card.json",))
    assert model.labels["io.nb2kfp.reference.rows"] == "150" and model.labels["io.nb2kfp.reference.numeric"] == "4"
    importance = json.loads(files["card.json"])["importance"]  # the card lists the features with their importance
    assert {r["feature"] for r in importance} == {
        "sepal length (cm)",
        "sepal width (cm)",
        "petal length (cm)",
        "petal width (cm)",
    }
    assert importance[0]["feature"].startswith("petal") and importance[0]["mean"] > 0.1
    deployed = nb2kfp(project, services, "model", "deploy", ref, "--name", "iris", "-o", "deploy")
    assert deployed.returncode == 0 and f"model card: {Path('deploy') / 'card.html'}" in deployed.stderr, (
        deployed.stderr
    )
    assert "petal width (cm)" in (project / "deploy" / "card.html").read_text()

    X = load_iris().data
    rng = np.random.default_rng(0)
    like = X[rng.integers(0, len(X), 300)]
    shifted = X[rng.integers(0, len(X), 300)] + np.array([0.0, 0.8, 0.0, 0.8])  # sepal width, petal width
    proc, url = _serve(project, services, ref, project / "log")
    try:
        _send(url, like.tolist())
        (project / "log-like").mkdir()
        logged = project / "log" / "requests-clf.jsonl"
        logged.rename(project / "log-like" / logged.name)  # the proxy appends to a new file from here
        _send(url, shifted.tolist())
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "logged 60 inference requests" in stderr, stderr
    like_log = [json.loads(x) for x in (project / "log-like" / "requests-clf.jsonl").read_text().splitlines()]
    assert len(like_log) == 30 and all(len(e["response"]["outputs"][0]["data"]) == 10 for e in like_log)
    assert len((project / "log" / "requests-clf.jsonl").read_text().splitlines()) == 30

    metrics, verdict, page = _monitor(project, services, ref, project / "log-like")
    assert verdict == "no drift (4 features)" and metrics["drift_detected"] == 0 and metrics["drifted_features"] == 0
    names = ["p_sepal_length_cm", "p_sepal_width_cm", "p_petal_length_cm", "p_petal_width_cm"]
    assert all(metrics[n] >= 0.05 for n in names), metrics
    assert "no drift in 4 features" in page

    metrics, verdict, page = _monitor(project, services, ref, project / "log")
    assert verdict == "drift in sepal width (cm), petal width (cm) (4 features)", verdict
    assert metrics["drift_detected"] == 1 and metrics["drifted_features"] == 2
    assert [n for n in names if metrics[n] < 0.05] == ["p_sepal_width_cm", "p_petal_width_cm"], metrics
    assert "drift in 2 of 4 features: sepal width (cm), petal width (cm)" in page


def test_data_that_cannot_be_sampled_leaves_the_model_packed(
    tmp_path: Path, services: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """X saved by pickle (here a set of rows, no table): run --model-image packs the model without a sample."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    from nb2kfp.commands.run import _package_models
    from nb2kfp.frontend.builder import build
    from nb2kfp.kfpnames import task_name

    monkeypatch.setenv("NB2KFP_REGISTRY_USER", services["NB2KFP_TEST_REGISTRY_USER"])
    monkeypatch.setenv("NB2KFP_REGISTRY_PASSWORD_FILE", services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"])
    monkeypatch.chdir(tmp_path)
    nb = write(tmp_path / "nb.ipynb", [(["step:train", "model:clf"], "X = [[0.0], [1.0]]\nclf = len(X)\nclf.fit(X)")])
    pipeline = build(nb).pipeline
    saved = tmp_path / "run" / "artifacts" / "x" / task_name("train")
    (saved / "clf").mkdir(parents=True)
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), saved / "clf" / "data.joblib")
    (saved / "clf" / "nb2kfp.json").write_text('{"format": "joblib", "framework": "scikit-learn"}')
    (saved / "X").mkdir()
    (saved / "X" / "data.pickle").write_bytes(b"never loaded")
    (saved / "X" / "nb2kfp.json").write_text('{"format": "pickle"}')
    lines: list[str] = []
    ref = _package_models(nb, tmp_path / "run", pipeline, unique(services), lines.append)["clf"]
    assert any("model clf: its data (X): saved as pickle" in line and "no reference sample" in line for line in lines)
    model, files = oci.read_with_files(ref, (reference.DATA, "card.json"))
    assert reference.DATA not in files and "io.nb2kfp.reference.sha256" not in model.labels and "card.json" in files
