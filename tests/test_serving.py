"""Serving manifests and model metadata, without an engine or a registry.

The manifests are checked against real schemas: the Kubernetes client's typed models (generated from Kubernetes'
OpenAPI spec) for the Deployment and Service, the ``kserve`` package's typed models for the InferenceService. The
check is strict: a field the model does not have (like the old snippet's ``containerVolumeMount``) fails it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from nb2kfp.errors import UsageError
from nb2kfp.serving import manifests, meta, runtimes
from nb2kfp.serving.oci import ModelRef

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
_SCALARS: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "bool": bool, "float": (int, float)}


def strict(data: Any, type_name: str, where: str = "$") -> Any:
    """Build the typed model ``type_name`` from ``data``; unknown fields, wrong types, missing required ones fail."""
    import kserve.models
    import kubernetes.client.models

    if type_name.startswith("list["):
        assert isinstance(data, list), f"{where}: expected a list"
        return [strict(x, type_name[5:-1], f"{where}[{i}]") for i, x in enumerate(data)]
    if type_name.startswith("dict("):
        assert isinstance(data, dict), f"{where}: expected a mapping"
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return {k: strict(v, inner, f"{where}.{k}") for k, v in data.items()}
    if type_name == "object":
        return data
    if type_name in _SCALARS:
        assert isinstance(data, _SCALARS[type_name]) and not (type_name != "bool" and isinstance(data, bool)), (
            f"{where}: expected {type_name}, got {data!r}"
        )
        return data
    cls = getattr(kubernetes.client.models, type_name, None) or getattr(kserve.models, type_name)
    assert isinstance(data, dict), f"{where}: expected a {type_name} mapping"
    fields = {json_name: name for name, json_name in cls.attribute_map.items()}
    unknown = sorted(set(data) - set(fields))
    assert not unknown, f"{where}: {type_name} has no field(s) {unknown}"
    values = {fields[k]: strict(v, cls.openapi_types[fields[k]], f"{where}.{k}") for k, v in data.items()}
    return cls(**values)


def model(digest: str = DIGEST, version: str = "1.9.1", framework: str = "scikit-learn") -> ModelRef:
    info = meta.ModelMeta("clf", framework, version, "model.joblib", 4, "train.ipynb", "abc123")
    return ModelRef("registry.example.com/ml/clf", digest, info)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / ".git").mkdir()  # settings are looked up no further than here
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("runtime_name", ["mlserver", "kserve"])
def test_manifests_pass_the_kubernetes_and_kserve_typed_models(folder: Path, runtime_name: str) -> None:
    texts = manifests.render("iris", model(), runtimes.runtime(runtime_name, folder))
    assert set(texts) == {"deployment.yaml", "service.yaml", "kustomization.yaml", "inferenceservice.yaml"}
    dep = yaml.safe_load(texts["deployment.yaml"])
    strict(dep, "V1Deployment")
    strict(yaml.safe_load(texts["service.yaml"]), "V1Service")
    isvc = yaml.safe_load(texts["inferenceservice.yaml"])
    strict(isvc, "V1beta1InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == f"oci://registry.example.com/ml/clf@{DIGEST}"
    assert "enableModelcar" in texts["inferenceservice.yaml"] and "uidModelcar" in texts["inferenceservice.yaml"]

    pod = dep["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert init["image"] == manifests.MODEL_IMAGE and init["command"][-1] == "cp -r /models/. /mnt/models/"
    assert server["volumeMounts"] == [{"name": "model", "mountPath": "/mnt/models", "readOnly": True}]
    assert pod["volumes"] == [{"name": "model", "emptyDir": {}}]
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["resources"]["requests"] and server["image"] == runtimes.runtime(runtime_name, folder).image

    kus = yaml.safe_load(texts["kustomization.yaml"])
    assert kus["resources"] == ["deployment.yaml", "service.yaml"]
    entry = {"name": manifests.MODEL_IMAGE, "newName": "registry.example.com/ml/clf", "digest": DIGEST}
    assert kus["images"] == [entry]


def test_the_strict_check_rejects_the_old_snippets_key() -> None:
    pod = {"containers": [{"name": "s", "image": "x"}], "containerVolumeMount": {"name": "model"}}
    with pytest.raises(AssertionError, match="containerVolumeMount"):
        strict(pod, "V1PodSpec")
    with pytest.raises(ValueError):  # a required field missing: the typed model's own validation
        strict({"containers": [{"image": "x"}]}, "V1PodSpec")


def test_a_new_model_changes_only_its_digest(folder: Path) -> None:
    runtime = runtimes.runtime("mlserver", folder)
    before = manifests.render("iris", model(), runtime)
    after = manifests.render("iris", model(OTHER), runtime)
    assert set(before) == set(after)
    for name in before:
        old, new = before[name].splitlines(), after[name].splitlines()
        changed = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
        assert all(a.replace(DIGEST, OTHER) == b for a, b in changed), name
    assert [n for n in before if before[n] != after[n]] == ["kustomization.yaml", "inferenceservice.yaml"]


def test_runtime_refuses_another_minor_release_in_one_line(folder: Path) -> None:
    runtime = runtimes.runtime("mlserver", folder)
    runtime.check(model(version="1.9.0").meta, "ref")  # another patch release loads
    for bad in [model(version="1.3.2"), model(framework="xgboost", version="1.9.1")]:
        with pytest.raises(UsageError) as caught:
            runtime.check(bad.meta, "ref")
        assert len(str(caught.value).splitlines()) == 1 and "loads scikit-learn 1.9.x" in str(caught.value)
    with pytest.raises(UsageError, match="records no framework version"):
        runtime.check(meta.ModelMeta("clf"), "ref")
    with pytest.raises(UsageError, match=r"1\.5\.x"):
        runtimes.runtime("kserve", folder).check(model().meta, "ref")


def test_settings_pin_the_serving_image(folder: Path) -> None:
    (folder / "nb2kfp.toml").write_text(
        '[serving]\nmlserver_image = "registry.example.com/ml/mlserver@sha256:' + "c" * 64 + '"\n'
        'mlserver_scikit-learn = "1.5.2"\n'
    )
    runtime = runtimes.runtime("mlserver", folder)
    assert runtime.image.startswith("registry.example.com/ml/mlserver@") and runtime.framework_version == "1.5.2"
    (folder / "nb2kfp.toml").write_text('[serving]\nmlserver_imag = "x"\n')
    with pytest.raises(UsageError, match=r"\[serving\]: unknown setting\(s\): mlserver_imag"):
        runtimes.runtime("mlserver", folder)
    (folder / "nb2kfp.toml").unlink()
    with pytest.raises(UsageError, match="mlserver or kserve"):
        runtimes.runtime("triton", folder)


def test_a_step_saved_model_describes_itself(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"x")
    (tmp_path / "nb2kfp.json").write_text(
        json.dumps({"format": "joblib", "framework": "scikit-learn", "framework_version": "1.9.1", "n_features": "4"})
    )
    info = meta.describe(tmp_path, "clf", None, {"notebook": "train.ipynb", "commit": "abc"})
    found = (info.framework, info.framework_version, info.file, info.n_features)
    assert found == ("scikit-learn", "1.9.1", "model.joblib", 4)
    assert meta.ModelMeta.from_labels(info.labels()) == info
    for bad in ("../x", "clf/infer?x=1", ""):
        with pytest.raises(UsageError, match="not plain names"):
            meta.ModelMeta.from_labels({**info.labels(), "io.nb2kfp.model.name": bad})
    settings = json.loads(meta.generated_files(info, tmp_path)["model-settings.json"])
    assert settings == {
        "name": "clf",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"},
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
    }
    assert info.example() == {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [0.0] * 4}]}
    declared = meta.describe(tmp_path, "clf", "scikit-learn==1.5.2")
    assert declared.framework_version == "1.5.2"
    with pytest.raises(UsageError, match="NAME==VERSION"):
        meta.describe(tmp_path, "clf", "sklearn 1.5")


def test_a_plain_folder_records_no_framework(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"x")
    info = meta.describe(tmp_path, "m")
    assert (info.framework, info.file) == ("", "") and meta.generated_files(info, tmp_path) == {}
    assert set(info.labels()) == {"io.nb2kfp.model.name"}


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "nb2kfp", "model", *args], cwd=cwd, capture_output=True, text=True)
    assert "Traceback" not in proc.stderr
    return proc


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["deploy", "r.example/m@" + DIGEST, "--name", "Bad_Name", "-o", "d"], "--name 'Bad_Name'"),
        (["deploy", "not an image", "--name", "ok", "-o", "d"], "a model image is REGISTRY"),
        (["deploy", "r.example/m", "--name", "ok", "-o", "d", "--runtime", "triton"], "choose mlserver or kserve"),
        (["promote", "ok", "r.example/m@" + DIGEST, "-o", "d"], "not a folder written by nb2kfp model deploy"),
        (["serve", "r.example/m@" + DIGEST], "model serve needs --local"),
        (["serve", "r.example/m@" + DIGEST, "--local", "--example", "{not json"], "--example: not JSON"),
        (["serve", "r.example/m@" + DIGEST, "--local", "--example", '{"rows": []}'], "a V2 inference request"),
        (["build", "m.joblib", "--image", "r.example/m", "--framework", "sklearn"], "NAME==VERSION"),
    ],
)
def test_serving_commands_refuse_bad_input_in_one_line(folder: Path, args: list[str], fragment: str) -> None:
    (folder / "m.joblib").write_bytes(b"x")
    proc = cli(folder, *args)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (folder / "d").exists()


def test_deploy_against_a_registry_that_is_down_is_one_line(folder: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli(folder, "deploy", f"127.0.0.1:{port}/ml/clf@{DIGEST}", "--name", "iris", "-o", "d")
    assert proc.returncode == 1 and f"registry 127.0.0.1:{port}" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (folder / "d").exists()
