"""``nb2kfp build NB... --registry R``: step images in a registry, and pipeline specs pinned to them.

Writes ``<stem>.pipeline.yaml`` (steps without an ``image:`` tag run the built image, by digest) and
``<stem>.image.json`` to ``--output-dir``. A notebook whose image tag is already in the registry builds
and pushes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from nb2kfp import extras
from nb2kfp.clients.registry import Registry, credentials_for
from nb2kfp.config import find_settings
from nb2kfp.images import ref as imageref
from nb2kfp.ir import Pipeline

DEFAULT_OUTPUT = Path(".nb2kfp") / "build"


def pin(pipeline: Pipeline, image: str) -> Pipeline:
    """Steps that use the notebook's default image run ``image`` (built by nb2kfp: the step runtime is in it)
    instead; ``image:`` tags are kept."""
    steps = tuple(replace(s, image=image) if s.image == pipeline.base_image else s for s in pipeline.steps)
    return replace(pipeline, steps=steps, base_image=image, runtime_image=image)


def run(
    notebooks: list[Path],
    registry_text: str,
    base: str | None,
    output_dir: Path | None,
    quiet: bool,
    report: Callable[[str], None],
) -> int:
    from nb2kfp.atomic import write_text
    from nb2kfp.backends import kfp_spec
    from nb2kfp.frontend.builder import build
    from nb2kfp.images import requirements
    from nb2kfp.images import step_image as images

    extras.require("nb2kfp build", "docker")
    registry = Registry.parse(registry_text)
    if base is not None:
        imageref.check(base, "--base")
    creds = credentials_for(registry.host)
    folder = output_dir or DEFAULT_OUTPUT
    for notebook in notebooks:
        pipeline = build(notebook, find_settings(notebook.parent)).pipeline
        reqs = requirements.resolve(notebook, pipeline.modules)
        report(f"{notebook}: step image for {pipeline.name} ({len(reqs.lines)} requirement(s) from {reqs.source})")
        image = images.build_image(pipeline, reqs, base or pipeline.base_image, registry, creds, report, quiet)
        stem = notebook.name.removesuffix(".ipynb")
        write_text(folder / f"{stem}.pipeline.yaml", kfp_spec.render(pin(pipeline, image.ref)))
        record = {
            "notebook": str(notebook),
            "image": image.ref,
            "repository": image.repository,
            "tag": image.tag,
            "digest": image.digest,
            "built": image.built,
            "pushed_bytes": image.pushed_bytes,
            "requirements": list(reqs.lines),
        }
        write_text(folder / f"{stem}.image.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
        if image.built:
            how = f"built and pushed {image.pushed_bytes / 1e6:.1f} MB in {image.seconds:.1f}s"
        else:
            how = "already in the registry: nothing built or pushed"
        report(f"{notebook}: {image.ref} ({how}) -> {folder / (stem + '.pipeline.yaml')}")
    return 0
