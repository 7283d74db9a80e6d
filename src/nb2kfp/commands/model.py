"""``nb2kfp model build PATH --image REPO[:TAG]``: a model image in a registry, no Docker engine needed.

The image records the framework and version that saved the model, and carries MLServer's model-settings.json beside
the weights. Prints the digest and writes the manifests ``model deploy`` writes (Deployment with the model as an init
container, Service, kustomization, KServe InferenceService) for the default runtime.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from nb2kfp import extras
from nb2kfp.errors import UsageError
from nb2kfp.images import ref as imageref


def run(
    source: Path,
    image: str,
    output_dir: Path | None,
    framework: str | None,
    insecure: bool,
    report: Callable[[str], None],
    result: Callable[[str], None],
    origin: dict[str, str] | None = None,
) -> int:
    from nb2kfp.atomic import write_text
    from nb2kfp.clients.registry import credentials_for
    from nb2kfp.serving import manifests, meta, oci, runtimes
    from nb2kfp.serving import model_image as models

    extras.require("nb2kfp model build", "oras", "requests")

    try:
        parsed = imageref.parse(image.removeprefix("oci://"))
    except imageref.BadReference:
        parsed = None
    if parsed is None or not parsed.domain or parsed.digest:
        raise UsageError("--image: give REGISTRY/REPOSITORY[:TAG], e.g. registry.example.com/ml/model:1")
    repository, host = parsed.name, parsed.domain
    name = re.sub(r"[^a-z0-9-]+", "-", repository.rsplit("/", 1)[-1].lower()).strip("-") or "model"
    with tempfile.TemporaryDirectory(prefix="nb2kfp-model-") as work:
        described = meta.describe(source, name, framework, origin) if source.exists() else meta.ModelMeta(name)
        extra = meta.generated_files(described, source)
        layers, config, manifest = models.assemble(source, Path(work), name, described.labels(), extra)
        tag = parsed.tag or "sha256-" + layers[-1].digest.removeprefix("sha256:")[:16]
        report(f"pushing model {source} ({layers[-1].size / 1e6:,.1f} MB) to {repository}:{tag}")
        pushed = models.push(repository, tag, layers, config, manifest, credentials_for(host), insecure, report)
    folder = output_dir or Path(".nb2kfp") / "models" / name
    ref = oci.ModelRef(repository, pushed.digest, described)
    for file_name, text in manifests.render(name, ref, runtimes.runtime("mlserver", Path.cwd())).items():
        write_text(folder / file_name, text)
    record = {
        "image": pushed.ref,
        "tag": tag,
        "digest": pushed.digest,
        "pushed_bytes": pushed.pushed_bytes,
        "layers": [b.digest for b in pushed.layers],
        "labels": described.labels(),
    }
    write_text(folder / "model.json", json.dumps(record, indent=2) + "\n")
    report(f"pushed {pushed.pushed_bytes / 1e6:,.1f} MB in {pushed.seconds:.1f}s; manifests in {folder}")
    result(pushed.ref)
    return 0
