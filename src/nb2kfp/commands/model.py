"""``nb2kfp model build PATH --image REPO[:TAG]``: a model image in a registry, no Docker engine needed.

Prints the digest and writes a KServe ``InferenceService`` (``storageUri: oci://REPO@sha256:...``) and an
init-container snippet (copies /models into a shared volume) for serving without KServe.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import yaml

from nb2kfp import extras, imageref
from nb2kfp.errors import UsageError


def run(
    source: Path,
    image: str,
    output_dir: Path | None,
    model_format: str,
    insecure: bool,
    report: Callable[[str], None],
    result: Callable[[str], None],
) -> int:
    from nb2kfp.atomic import write_text
    from nb2kfp.backends import models
    from nb2kfp.registry import credentials_for

    extras.require("nb2kfp model build", "oras", "requests")

    try:
        ref = imageref.parse(image.removeprefix("oci://"))
    except imageref.BadReference:
        ref = None
    if ref is None or not ref.domain or ref.digest:
        raise UsageError("--image: give REGISTRY/REPOSITORY[:TAG], e.g. registry.example.com/ml/model:1")
    repository, host = ref.name, ref.domain
    name = re.sub(r"[^a-z0-9-]+", "-", repository.rsplit("/", 1)[-1].lower()).strip("-") or "model"
    with tempfile.TemporaryDirectory(prefix="nb2kfp-model-") as work:
        layers, config, manifest = models.assemble(source, Path(work), name)
        tag = ref.tag or "sha256-" + layers[-1].digest.removeprefix("sha256:")[:16]
        report(f"pushing model {source} ({layers[-1].size / 1e6:,.1f} MB) to {repository}:{tag}")
        pushed = models.push(repository, tag, layers, config, manifest, credentials_for(host), insecure, report)
    folder = output_dir or Path(".nb2kfp") / "models" / name
    write_text(
        folder / "inferenceservice.yaml",
        yaml.safe_dump(models.inference_service(name, pushed, model_format), sort_keys=False),
    )
    write_text(folder / "init-container.yaml", yaml.safe_dump(models.init_container(name, pushed), sort_keys=False))
    record = {
        "image": pushed.ref,
        "tag": tag,
        "digest": pushed.digest,
        "pushed_bytes": pushed.pushed_bytes,
        "layers": [b.digest for b in pushed.layers],
    }
    write_text(folder / "model.json", json.dumps(record, indent=2) + "\n")
    report(f"pushed {pushed.pushed_bytes / 1e6:,.1f} MB in {pushed.seconds:.1f}s; manifests in {folder}")
    result(pushed.ref)
    return 0
