"""Kubernetes manifests for the init-container pattern: the model image copies /models into an emptyDir before
a pinned serving image starts with it read-only at /mnt/models. ``kustomization.yaml``'s ``images:`` entry is the
one place the model's digest appears for the Deployment, so a new model is a one-line change (``model promote``).
A KServe InferenceService (modelcar) is written beside it for clusters that run KServe.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from nb2kfp import yamlsafe
from nb2kfp.serving.oci import ModelRef
from nb2kfp.serving.runtimes import Runtime

MODEL_IMAGE = "nb2kfp-model"  # the Deployment's placeholder; kustomize's images: entry says which model
_ISVC_NOTE = """\
# KServe alternative to deployment.yaml: KServe pulls the model image as a modelcar (a sidecar sharing /mnt/models).
# Needs enableModelcar: true in the storageInitializer section of KServe's inferenceservice-config ConfigMap, and
# uidModelcar set to the serving container's user ({uid}) when the server runs as non-root.
"""


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "nb2kfp"}


def deployment(name: str, model: ModelRef, runtime: Runtime) -> dict[str, Any]:
    mount = {"name": "model", "mountPath": "/mnt/models"}
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    args = [*runtime.args, f"--model_name={model.meta.name}"] if runtime.name == "kserve" else []
    server: dict[str, Any] = {
        "name": "server",
        "image": runtime.image,
        **({"args": args} if args else {}),
        "ports": [{"name": "http", "containerPort": runtime.port}],
        "volumeMounts": [{**mount, "readOnly": True}],
        "readinessProbe": {**probe, "initialDelaySeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
        },
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": _labels(name), "annotations": {"io.nb2kfp.runtime": runtime.name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": runtime.user, "fsGroup": runtime.user},
                    "initContainers": [
                        {
                            "name": "model",
                            "image": MODEL_IMAGE,
                            "command": ["sh", "-c", "cp -r /models/. /mnt/models/"],
                            "volumeMounts": [mount],
                            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
                        }
                    ],
                    "containers": [server],
                    "volumes": [{"name": "model", "emptyDir": {}}],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "selector": {"app.kubernetes.io/name": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def kustomization(model: ModelRef) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["deployment.yaml", "service.yaml"],
        "images": [{"name": MODEL_IMAGE, "newName": model.repository, "digest": model.digest}],
    }


def inference_service(name: str, model: ModelRef, log_url: str = "") -> dict[str, Any]:
    """The InferenceService, its requests and answers logged by KServe's agent (``predictor.logger``, mode all) to
    ``log_url`` ([serving] request_log_url), or without one to KServe's default (its logger config's defaultUrl)."""
    formats = {"scikit-learn": "sklearn", "xgboost": "xgboost"}
    model_format: dict[str, str] = {"name": formats.get(model.meta.framework, "sklearn")}
    if model.meta.framework_version:
        model_format["version"] = model.meta.framework_version.split(".")[0]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "labels": _labels(name)},
        "spec": {
            "predictor": {
                "logger": {"mode": "all", **({"url": log_url} if log_url else {})},
                "model": {"modelFormat": model_format, "protocolVersion": "v2", "storageUri": f"oci://{model.ref}"},
            }
        },
    }


def render(name: str, model: ModelRef, runtime: Runtime, log_url: str = "") -> dict[str, str]:
    """File name -> YAML text for the folder ``model deploy`` writes."""

    def dump(doc: dict[str, Any]) -> str:
        return yaml.safe_dump(doc, sort_keys=False)

    return {
        "deployment.yaml": dump(deployment(name, model, runtime)),
        "service.yaml": dump(service(name)),
        "kustomization.yaml": dump(kustomization(model)),
        "inferenceservice.yaml": _ISVC_NOTE.format(uid=runtime.user) + dump(inference_service(name, model, log_url)),
    }


def deployed(folder: Path) -> tuple[str, str, str, str]:
    """The name, runtime, repository and digest a deploy folder serves now (for ``promote``)."""
    from nb2kfp.errors import UsageError

    try:
        dep = yamlsafe.load((folder / "deployment.yaml").read_text(encoding="utf-8"))
        kus = yamlsafe.load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
        entry = next(i for i in kus["images"] if i["name"] == MODEL_IMAGE)
        runtime = str(dep["metadata"]["annotations"]["io.nb2kfp.runtime"])
        return str(dep["metadata"]["name"]), runtime, str(entry["newName"]), str(entry["digest"])
    except (OSError, yamlsafe.YamlError, KeyError, TypeError, StopIteration):
        raise UsageError(f"{folder}: not a folder written by nb2kfp model deploy (run deploy first)") from None
