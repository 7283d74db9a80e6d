"""``nb2kfp build NB... --registry R``: step images in a registry, and pipeline specs pinned to them.

Writes ``<stem>.pipeline.yaml`` (steps without an ``image:`` tag run the built image, by digest) and
``<stem>.image.json`` to ``--output-dir``. A notebook whose image tag is already in the registry builds
and pushes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nb2kfp import extras, service
from nb2kfp.oci import ref as imageref
from nb2kfp.oci.registry import Registry

DEFAULT_OUTPUT = Path(".nb2kfp") / "build"


def run(
    notebooks: list[Path],
    registry_text: str,
    base: str | None,
    output_dir: Path | None,
    *,
    quiet: bool,
    report: Callable[[str], None],
) -> int:
    from nb2kfp.atomic import write_text
    from nb2kfp.backends import kfp_spec

    extras.require("nb2kfp build", "docker")
    registry = Registry.parse(registry_text)
    if base is not None:
        imageref.check(base, "--base")
    folder = output_dir or DEFAULT_OUTPUT
    for notebook in notebooks:
        pipeline = service.compile_notebook(notebook).pipeline
        pinned = service.build_and_pin(notebook, pipeline, registry, report, base, quiet=quiet, announce=True)
        image, reqs = pinned.image, pinned.requirements
        stem = notebook.name.removesuffix(".ipynb")
        write_text(folder / f"{stem}.pipeline.yaml", kfp_spec.render(pinned.pipeline))
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
