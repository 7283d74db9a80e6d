"""``publish --manifests`` in the CRD shape of the cluster's KFP release (``--kfp-version``), checked against the
Pipeline and PipelineVersion CRDs of KFP 2.16.0 and 2.17.0 (tests/data/kfp_crds) the way the Kubernetes API server
checks a custom resource: its structural schema with strict field validation (kubectl's default), and the object
name a DNS-1123 subdomain."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLES
from nb2kfp.backends import kfp_manifests, kfp_spec
from nb2kfp.config import find_settings
from nb2kfp.errors import RunError, UsageError
from nb2kfp.frontend.builder import build
from nbfactory import write

CRDS = Path(__file__).parent / "data" / "kfp_crds"
VERSION = "0123456789ab-cdef01234567"
DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def schema(release: str, kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / release / f"{kind.lower()}s.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == "v2beta1"]
    return served["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def problems(value: Any, node: dict[str, Any], where: str = "") -> list[str]:
    """What the API server would refuse: wrong types, missing required fields, patterns and lengths, and
    (strict field validation) fields the schema does not know, unless it preserves unknown fields."""
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return []
    kind = node.get("type")
    found: list[str] = []
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        props, extra = node.get("properties"), node.get("additionalProperties")
        found += [f"{where}.{k}: required" for k in node.get("required", []) if k not in value]
        for key, item in value.items():
            if props is not None and key in props:
                found += problems(item, props[key], f"{where}.{key}")
            elif extra is not None:
                found += problems(item, extra, f"{where}.{key}")
            elif props is not None:
                found.append(f'{where}.{key}: unknown field "{key.lstrip(".")}"')
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{where}: not a string"]
        if "pattern" in node and not re.search(node["pattern"], value):
            found.append(f"{where}: does not match {node['pattern']}")
        if len(value) > node.get("maxLength", len(value)):
            found.append(f"{where}: longer than {node['maxLength']}")
    return found


def admitted(path: Path, release: str) -> list[str]:
    doc = yaml.safe_load(path.read_text())
    name = doc["metadata"]["name"]
    found = problems(doc, schema(release, doc["kind"]), doc["kind"])
    if len(name) > 253 or not DNS1123.fullmatch(name):
        found.append(f"metadata.name {name!r}: not a DNS-1123 subdomain")
    return found


def spec_file(tmp_path: Path, notebook: Path) -> Path:
    pipeline = build(notebook, find_settings(notebook.parent)).pipeline
    target = tmp_path / "pipeline.yaml"
    target.write_text(kfp_spec.render(pipeline))
    return target


def manifests(tmp_path: Path, kfp_version: str | None, notebook: Path = EXAMPLES / "wordcount.ipynb") -> list[Path]:
    out = tmp_path / f"out-{kfp_version}"
    return kfp_manifests.write_manifests(
        spec_file(tmp_path, notebook), "wordcount", VERSION, out, "counts words", kfp_version
    )


@pytest.mark.parametrize("release", ["2.16.0", "2.17.0"])
def test_manifests_for_a_release_pass_its_crds(tmp_path: Path, release: str) -> None:
    pipeline, version = manifests(tmp_path, release)
    assert admitted(pipeline, release) == [] and admitted(version, release) == []
    doc = yaml.safe_load(version.read_text())
    if release == "2.17.0":  # the version's name in KFP: spec.versionName, the object named <pipeline>-<version>
        assert doc["metadata"]["name"] == f"wordcount-{VERSION}" and doc["spec"]["versionName"] == VERSION
    else:  # the version's name in KFP is the object's name
        assert doc["metadata"]["name"] == VERSION and "versionName" not in doc["spec"]
    assert version.name == f"{doc['metadata']['name']}.pipelineversion.yaml"
    assert doc["spec"]["pipelineSpec"]["pipelineInfo"]["name"] == "wordcount"


def test_newest_shape_is_refused_by_an_older_release(tmp_path: Path) -> None:
    """What the issue saw: the default (newest) shape on a 2.16 cluster."""
    _, version = manifests(tmp_path, None)
    assert admitted(version, "2.16.0") == ['PipelineVersion.spec.versionName: unknown field "versionName"']
    assert admitted(version, "2.17.0") == []


def test_platform_spec_goes_where_the_release_has_it(tmp_path: Path) -> None:
    nb = write(
        tmp_path / "secret.ipynb",
        [(["step:load", "secret:db-creds:password:DB_PASS"], "x = 1"), (["step:use", "prev:load"], "print(x)")],
    )
    _, version = manifests(tmp_path, "2.14.1", nb)
    doc = yaml.safe_load(version.read_text())
    assert "secretAsEnv" in str(doc["spec"]["platformSpec"]) and admitted(version, "2.16.0") == []
    with pytest.raises(RunError, match="no platformSpec"):
        manifests(tmp_path, "2.5.0", nb)


def test_oldest_shape_has_no_display_name(tmp_path: Path) -> None:
    _, version = manifests(tmp_path, "2.5.0")
    spec = yaml.safe_load(version.read_text())["spec"]
    assert set(spec) == {"pipelineName", "description", "pipelineSpec"}


@pytest.mark.parametrize(
    ("given", "shape"),
    [
        ("2.17.0", (2, 17)),
        ("v2.18.1", (2, 17)),
        ("3.0", (2, 17)),
        ("2.16.1", (2, 14)),
        ("2.14.0", (2, 14)),
        ("2.5.0", (2, 5)),
        ("2.13.9-rc.1", (2, 5)),
    ],
)
def test_kfp_version_picks_the_shape(given: str, shape: tuple[int, int]) -> None:
    assert kfp_manifests.crd_shape(given) == shape


@pytest.mark.parametrize("given", ["2.4.0", "1.8.5", "latest", ""])
def test_kfp_version_without_crds_is_a_usage_error(given: str) -> None:
    with pytest.raises(UsageError, match="--kfp-version"):
        kfp_manifests.crd_shape(given)


def test_cli_kfp_version(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    shutil.copy(EXAMPLES / "wordcount.ipynb", tmp_path / "wordcount.ipynb")
    command = [sys.executable, "-m", "nb2kfp", "publish", "wordcount.ipynb", "--commit", "a" * 40]
    ok = subprocess.run([*command, "--manifests", "k8s", "--kfp-version", "2.16.0"], cwd=tmp_path, capture_output=True)
    assert ok.returncode == 0, ok.stderr
    [version] = (tmp_path / "k8s").glob("*.pipelineversion.yaml")
    assert admitted(version, "2.16.0") == [] and version.name.startswith("a" * 12 + "-")
    env = {k: v for k, v in os.environ.items() if k not in ("NB2KFP_KFP_ENDPOINT", "KF_PIPELINES_ENDPOINT")}
    usage = subprocess.run([*command, "--kfp-version", "2.16"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert usage.returncode == 2 and "give --host URL" in usage.stderr
    assert "Traceback" not in usage.stderr
