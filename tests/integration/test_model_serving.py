"""From notebook to prediction with the real parts: kfp.local, the registry with auth, the Docker engine, MLServer.

One notebook with ``model:clf`` trains v1 and (with another parameter) v2; both are served by the same MLServer
image (built once, offline, reused by content hash); ``deploy`` + ``promote`` differ in exactly the model digest.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_containers import nb2kfp, password, services, unique

from nbfactory import write

__all__ = ["services"]  # the fixture, used by name
pytestmark = pytest.mark.slow
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]


def train(project: Path, services: dict[str, str], prefix: str, offset: int) -> str:
    proc = nb2kfp(project, services, "run", "train.ipynb", "--local", "-p", f"offset={offset}", "--model-image", prefix)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("model clf: ")]  # as the README shows it
    return line.removeprefix("model clf: ")


def serve_and_predict(project: Path, services: dict[str, str], ref: str) -> tuple[list[int], str, str]:
    """Start ``model serve --local``, predict ROWS, stop it with Ctrl-C; the predictions, serving image ID, stderr."""
    import docker
    import requests

    env = {
        **os.environ,
        "NB2KFP_REGISTRY_USER": services["NB2KFP_TEST_REGISTRY_USER"],
        "NB2KFP_REGISTRY_PASSWORD_FILE": services["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"],
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2kfp", "model", "serve", ref, "--local"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # printed once the model answered the smoke request
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v2/models/clf"), proc.communicate()[1]
        data = [x for row in ROWS for x in row]
        body = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": data}]}
        answer = requests.post(f"{url}/infer", json=body, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = [int(x) for x in answer.json()["outputs"][0]["data"]]
        client = docker.from_env()
        (server,) = client.containers.list(filters={"label": f"io.nb2kfp.model={ref}"})
        image_id = server.image.id
        # issue 24, case 2: loading a model runs its code, so the server has a network of its own, not the host's:
        # what listens on the host's loopback (here the registry) is out of its reach
        assert server.attrs["HostConfig"]["NetworkMode"].startswith("nb2kfp-serve-")
        registry_port = int(services["NB2KFP_TEST_REGISTRY"].rsplit(":", 1)[1])
        probe = (
            "import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {registry_port}), 3)\n    print('reached')\n"
            "except OSError:\n    print('unreachable')"
        )
        assert server.exec_run(["python3", "-c", probe]).output.decode().strip() == "unreachable"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert password(services) not in stderr and "Traceback" not in stderr
    leftovers = client.containers.list(all=True, filters={"label": f"io.nb2kfp.model={ref}"})
    volumes = client.volumes.list(filters={"label": f"io.nb2kfp.model={ref}"})
    networks = client.networks.list(filters={"label": f"io.nb2kfp.model={ref}"})
    assert not leftovers and not volumes and not networks, "serve must remove its container, volume, network on Ctrl-C"
    return predictions, str(image_id), stderr


def test_notebook_to_prediction_and_a_model_swap(tmp_path: Path, services: dict[str, str]) -> None:
    project = tmp_path
    (project / "nb2kfp.toml").write_text(f'image = "{services["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    write(
        project / "train.ipynb",
        [
            (["imports"], "from sklearn.datasets import load_iris\nfrom sklearn.tree import DecisionTreeClassifier"),
            (["pipeline-parameters"], "offset = 0"),
            (
                ["step:train", "model:clf"],
                "X, y = load_iris(return_X_y=True)\n"
                "clf = DecisionTreeClassifier(random_state=0).fit(X, (y + offset) % 3)",
            ),
        ],
    )
    prefix = unique(services)
    v1 = train(project, services, prefix, 0)
    v2 = train(project, services, prefix, 1)
    assert v1.split("@")[0] == v2.split("@")[0] == f"{prefix}/clf" and v1 != v2

    first, image_v1, log_v1 = serve_and_predict(project, services, v1)
    assert first == [0, 2, 1]  # setosa, virginica, versicolor
    assert "first prediction" in log_v1
    second, image_v2, log_v2 = serve_and_predict(project, services, v2)
    assert second == [(p + 1) % 3 for p in first]
    assert image_v2 == image_v1 and "(reused)" in log_v2  # the swap changed the model, not the server

    deployed = nb2kfp(project, services, "model", "deploy", v1, "--name", "iris", "-o", "v1")
    assert deployed.returncode == 0, deployed.stderr
    shutil.copytree(project / "v1", project / "v2")
    promoted = nb2kfp(project, services, "model", "promote", "iris", v2, "-o", "v2")
    assert promoted.returncode == 0, promoted.stderr
    d1, d2 = v1.split("@")[1], v2.split("@")[1]
    changed = 0
    assert (project / "v1" / "card.html").is_file() and "Model card: clf" in (project / "v2" / "card.html").read_text()
    for name in sorted(set(os.listdir(project / "v1")) - {"card.html"}):  # the card: v2's own parameters
        old = (project / "v1" / name).read_text().splitlines()
        new = (project / "v2" / name).read_text().splitlines()
        assert len(old) == len(new), name
        for a, b in zip(old, new, strict=True):
            if a != b:
                assert a.replace(d1, d2) == b, (name, a, b)
                changed += 1
    assert changed == 2  # kustomization's images: entry, and the InferenceService's storageUri

    # A model saved with a scikit-learn the pinned runtime cannot load: refused in one line, nothing written.
    import joblib
    from sklearn.linear_model import LinearRegression

    (project / "old").mkdir()
    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), project / "old" / "model.joblib")
    built = nb2kfp(
        project, services, "model", "build", "old", "--image", f"{prefix}/old", "--framework", "scikit-learn==1.3.2"
    )
    assert built.returncode == 0, built.stderr
    old_ref = built.stdout.strip()
    commands = [["deploy", old_ref, "--name", "old", "-o", "old-deploy"], ["promote", "iris", old_ref, "-o", "v2"]]
    for args in commands:
        refused = nb2kfp(project, services, "model", *args)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert "saved with scikit-learn 1.3.2" in refused.stderr and "loads scikit-learn 1.9.x" in refused.stderr
    assert not (project / "old-deploy").exists()
    assert (project / "v2" / "kustomization.yaml").read_text().count(d2) == 1


def test_the_serving_image_pushed_and_pinned_in_settings(tmp_path: Path, services: dict[str, str]) -> None:
    """`model runtime --registry` puts the MLServer image where a cluster can pull it; deploy then names it."""
    (tmp_path / "nb2kfp.toml").write_text(f'image = "{services["NB2KFP_TEST_BASE_IMAGE"]}"\n')
    registry = unique(services)
    pushed = nb2kfp(tmp_path, services, "model", "runtime", "--registry", registry)
    assert pushed.returncode == 0, pushed.stderr
    ref = pushed.stdout.strip()
    assert ref.startswith(f"{registry}/mlserver@sha256:") and f'mlserver_image = "{ref}"' in pushed.stderr
    again = nb2kfp(tmp_path, services, "model", "runtime", "--registry", registry)
    assert again.stdout.strip() == ref and "already in the registry" in again.stderr

    model = tmp_path / "model"
    model.mkdir()
    import joblib
    from sklearn.linear_model import LinearRegression

    joblib.dump(LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0]), model / "model.joblib")
    import sklearn

    built = nb2kfp(
        tmp_path, services, "model", "build", "model", "--image", f"{registry}/lin", "--framework",
        f"scikit-learn=={sklearn.__version__}",
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    with (tmp_path / "nb2kfp.toml").open("a") as fh:
        fh.write(f'[serving]\nmlserver_image = "{ref}"\n')
    deployed = nb2kfp(tmp_path, services, "model", "deploy", built.stdout.strip(), "--name", "lin", "-o", "d")
    assert deployed.returncode == 0, deployed.stderr
    assert f"image: {ref}" in (tmp_path / "d" / "deployment.yaml").read_text()
    assert "exists only where it was built" not in deployed.stderr
    # the settings are those of the project the manifests go to, whichever folder the command runs in
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    again = nb2kfp(
        elsewhere, services, "model", "deploy", built.stdout.strip(), "--name", "lin", "-o", str(tmp_path / "d2")
    )
    assert again.returncode == 0, again.stderr
    assert f"image: {ref}" in (tmp_path / "d2" / "deployment.yaml").read_text()
    rebuilt = nb2kfp(
        elsewhere, services, "model", "build", str(model), "--image", f"{registry}/lin", "--framework",
        f"scikit-learn=={sklearn.__version__}", "--output-dir", str(tmp_path / "d3"),
    )  # fmt: skip
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"image: {ref}" in (tmp_path / "d3" / "deployment.yaml").read_text()
