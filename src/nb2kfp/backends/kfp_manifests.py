"""The Kubernetes custom resources KFP's Kubernetes-native API mode reads instead of uploads: a ``Pipeline`` and a
``PipelineVersion`` per notebook, for ``kubectl apply`` or GitOps, in the shape of the cluster's KFP release.

Field names follow KFP's CRD types (backend/src/crd/kubernetes/v2beta1; the CRDs of two releases are kept in
tests/data/kfp_crds):

- 2.17 and later: ``spec.versionName``, and the object is named ``<pipeline>-<version>`` (so versions of two
  pipelines never clash);
- 2.14 to 2.16: no ``versionName``: the object's name is the version's name;
- 2.5 to 2.13: neither, and no ``displayName`` or ``platformSpec`` either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nb2kfp import kfpnames, yamlsafe
from nb2kfp.errors import RunError, UsageError

CRD_API_VERSION = "pipelines.kubeflow.org/v2beta1"
NEWEST = kfpnames.NEWEST_KFP


def crd_shape(kfp_version: str | None) -> tuple[int, int]:
    """The KFP release whose CRD shape to write: (2, 17), (2, 14) or (2, 5); ``None`` means the newest."""
    release = kfpnames.release(kfp_version)
    if release < (2, 5):
        raise UsageError(f"--kfp-version {kfp_version}: KFP has no Kubernetes-native API mode before 2.5: use --host")
    return next(shape for shape in (NEWEST, (2, 14), (2, 5)) if release >= shape)


def refuse_unsupported(pipeline_name: str, platform: dict[str, Any] | None, kfp_version: str | None) -> None:
    """One line for what the cluster's KFP release cannot run (``platform``: the spec's platform document). A
    workspace needs 2.15: 2.14's driver never substitutes ``{{$.workspace_path}}`` (kubeflow/pipelines 2.14.0
    backend/src/v2/driver has no such code; 2.15.0 driver/resolve.go:414 does). 2.15 and 2.16 also refuse a
    workspace without a storage class (2.15.0 compiler/argocompiler/argo.go:552, 2.16.0 :578) unless the admin
    configured a default workspace, which KFP's manifests do not."""
    kubernetes = (platform or {}).get("platforms", {}).get("kubernetes", {})
    workspace = kubernetes.get("pipelineConfig", {}).get("workspace")
    if not workspace:
        return
    release = kfpnames.release(kfp_version)
    if release < (2, 15):
        raise UsageError(
            f"{pipeline_name}: KFP {kfp_version} has no pipeline workspaces (they came in 2.15): remove the workspace "
            "setting or use KFP 2.15 or later"
        )
    if release < (2, 17) and not workspace.get("kubernetes", {}).get("pvcSpecPatch", {}).get("storageClassName"):
        raise UsageError(
            f"{pipeline_name}: KFP {kfp_version} needs the workspace's storage class: set workspace_storage_class in "
            "[tool.nb2kfp] (the class the cluster's admin configured as the default workspace's, if any)"
        )


def write_manifests(
    spec: Path,
    pipeline_name: str,
    version_name: str,
    folder: Path,
    description: str = "",
    kfp_version: str | None = None,
) -> list[Path]:
    """Write ``<pipeline>.pipeline.yaml`` (a ``Pipeline``) and ``<object name>.pipelineversion.yaml`` (a
    ``PipelineVersion``) into ``folder``, in the CRD shape of ``kfp_version`` (default: the newest)."""
    from nb2kfp.atomic import write_text

    shape = crd_shape(kfp_version)
    try:
        docs = [d for d in yamlsafe.load_all(spec.read_text(encoding="utf-8")) if d is not None]
    except yamlsafe.YamlError as exc:
        raise RunError(f"{spec}: {exc}") from None
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0]:
        raise RunError(f"{spec}: not a KFP pipeline spec")
    refuse_unsupported(pipeline_name, docs[1] if len(docs) > 1 and isinstance(docs[1], dict) else None, kfp_version)
    if len(docs) > 1 and shape < (2, 14):
        raise RunError(
            f"{pipeline_name}: KFP {kfp_version}'s PipelineVersion has no platformSpec for the pod settings, "
            "secrets and volumes this pipeline uses: use KFP 2.14 or later, or --host"
        )
    pipeline: dict[str, Any] = {
        "apiVersion": CRD_API_VERSION,
        "kind": "Pipeline",
        "metadata": {"name": pipeline_name},
        "spec": {"description": description} if description else {},
    }
    version_spec: dict[str, Any] = {"pipelineName": pipeline_name}
    if shape >= (2, 17):
        version_spec["versionName"] = version_name
    if shape >= (2, 14):
        version_spec["displayName"] = version_name
    if description:
        version_spec["description"] = description
    version_spec["pipelineSpec"] = docs[0]
    if len(docs) > 1:
        version_spec["platformSpec"] = docs[1]
    name = f"{pipeline_name}-{version_name}" if shape >= (2, 17) else version_name
    version = {
        "apiVersion": CRD_API_VERSION,
        "kind": "PipelineVersion",
        "metadata": {"name": name},
        "spec": version_spec,
    }
    paths = [folder / f"{pipeline_name}.pipeline.yaml", folder / f"{name}.pipelineversion.yaml"]
    for path, doc in zip(paths, (pipeline, version), strict=True):
        write_text(path, yaml.safe_dump(doc, sort_keys=False))
    return paths
