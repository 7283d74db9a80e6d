"""The MLServer serving image, built offline like a step image and reused by content hash.

Wheels for ``mlserver.lock`` are fetched on the host (pip's cache makes repeats cheap) and installed with no network
in the build; the tag is a hash of the Dockerfile and the lock, so swapping models never rebuilds it.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nb2kfp.images import step_image as images
from nb2kfp.masking import Masker
from nb2kfp.requirements import Requirements

LOCK = "mlserver.lock"  # the MLServer image's pinned requirements (a file of this package)

_DOCKERFILE = """\
# MLServer for nb2kfp model images, built offline from {base}: the model arrives at /mnt/models at run time.
FROM {base} AS dependencies
COPY wheels /tmp/nb2kfp-wheels
COPY requirements.txt /tmp/nb2kfp-requirements.txt
RUN python3 -m pip install --no-index --no-cache-dir --disable-pip-version-check --no-warn-script-location \\
      --find-links /tmp/nb2kfp-wheels --target /opt/nb2kfp/site-packages -r /tmp/nb2kfp-requirements.txt

FROM {base}
COPY --from=dependencies /opt/nb2kfp/site-packages /opt/nb2kfp/site-packages
ENV PYTHONPATH=/opt/nb2kfp/site-packages PYTHONUNBUFFERED=1 MLSERVER_HTTP_PORT=8080 MLSERVER_GRPC_PORT=8081 \\
    MLSERVER_METRICS_PORT=8082 HOME=/tmp
WORKDIR /tmp
USER 1000
EXPOSE 8080
CMD ["python3", "-m", "mlserver.cli.main", "start", "/mnt/models"]
"""


@dataclass(frozen=True)
class ServingImage:
    ref: str
    id: str
    built: bool
    seconds: float


def dockerfile(base: str) -> str:
    return _DOCKERFILE.format(base=base)


def lock_text() -> str:
    return resources.files("nb2kfp.serving").joinpath(LOCK).read_text(encoding="utf-8")


def mlserver_tag(base: str) -> str:
    """The local MLServer image's tag: a hash of what goes into it (lock, base image name, Dockerfile)."""
    return "nb2kfp/mlserver:" + hashlib.sha256(f"{dockerfile(base)}\0{lock_text()}".encode()).hexdigest()[:20]


def ensure(tag: str, base: str, report: images.Report) -> ServingImage:
    """The image ``tag`` (from :func:`mlserver_tag`): found in the engine, or built now."""
    started = time.monotonic()
    client = images.docker_client()
    found = client.images.list(name=tag)
    if found:
        return ServingImage(tag, str(found[0].id), built=False, seconds=time.monotonic() - started)
    lines = tuple(line for line in lock_text().splitlines() if line and not line.startswith("#"))
    requirements = Requirements(lines, LOCK)
    report(f"building the MLServer image {tag} (once; later models reuse it)")
    labels, what = {"io.nb2kfp.serving": "mlserver"}, "the MLServer image"
    images.build_offline(
        client, dockerfile(base), requirements, base, tag, labels, Masker(), report, quiet=True, what=what
    )
    return ServingImage(tag, str(client.images.get(tag).id), built=True, seconds=time.monotonic() - started)


def push(registry_text: str, report: images.Report) -> str:
    """Build (if needed) and push the MLServer image to REGISTRY/mlserver:<content hash>; its pinned reference."""
    from nb2kfp.config import find_settings

    base = find_settings(Path.cwd()).image
    tag = mlserver_tag(base)
    return images.push_once(registry_text, "mlserver", tag, lambda: ensure(tag, base, report).id, report)
