"""``nb2kfp model build PATH --image REPO[:TAG]``: a model image in a registry, no Docker engine needed.

The image records the framework and version that saved the model, and carries MLServer's model-settings.json beside
the weights. Prints the digest and writes the manifests ``model deploy`` writes (Deployment with the model as an init
container, Service, kustomization, KServe InferenceService) for the default runtime (:func:`nb2kfp.service.push_model`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nb2kfp import extras


def run(
    source: Path,
    image: str,
    output_dir: Path | None,
    framework: str | None,
    *,
    insecure: bool,
    report: Callable[[str], None],
    result: Callable[[str], None],
    reference: Path | None = None,
) -> int:
    from nb2kfp import service
    from nb2kfp.serving import reference as samples

    extras.require("nb2kfp model build", "oras", "requests")
    sample = samples.from_file(reference) if reference is not None else None
    result(service.push_model(source, image, output_dir, framework, insecure=insecure, report=report, reference=sample))
    return 0
