"""The monitoring step image, built offline like the MLServer image and reused by content hash.

The project's base image, the pinned wheels of ``monitor.lock`` (fetched on the host, installed with no network in
the build) and nb2kfp's drift module (:mod:`nb2kfp.monitor.drift`, which imports nothing else of nb2kfp) at
``nb2kfp/monitor/drift.py`` on the image's PYTHONPATH, as the monitoring notebook imports it. The tag is a hash of
the Dockerfile, the lock and the drift module: a new model never rebuilds it; a new nb2kfp release may.
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

LOCK = "monitor.lock"
_DOCKERFILE = """\
# nb2kfp's monitoring step image, built offline from {base}: numpy, pandas, pyarrow, scipy, requests, cloudpickle
# and nb2kfp's drift module (nothing else of nb2kfp).
FROM {base} AS dependencies
COPY wheels /tmp/nb2kfp-wheels
COPY requirements.txt /tmp/nb2kfp-requirements.txt
RUN python3 -m pip install --no-index --no-cache-dir --disable-pip-version-check --no-warn-script-location \\
      --find-links /tmp/nb2kfp-wheels --target /opt/nb2kfp/site-packages -r /tmp/nb2kfp-requirements.txt

FROM {base}
COPY --from=dependencies /opt/nb2kfp/site-packages /opt/nb2kfp/site-packages
COPY package.py /opt/nb2kfp/site-packages/nb2kfp/__init__.py
COPY package.py /opt/nb2kfp/site-packages/nb2kfp/monitor/__init__.py
COPY drift.py /opt/nb2kfp/site-packages/nb2kfp/monitor/drift.py
ENV PYTHONPATH=/opt/nb2kfp/site-packages PYTHONUNBUFFERED=1 HOME=/tmp
"""
_PACKAGE = '"""nb2kfp\'s drift module alone (the monitoring step image)."""\n'


@dataclass(frozen=True)
class MonitorImage:
    ref: str
    id: str
    built: bool
    seconds: float
    size: int  # bytes, as the engine reports it


def _texts() -> tuple[str, str]:
    package = resources.files("nb2kfp.monitor")
    return package.joinpath(LOCK).read_text(encoding="utf-8"), package.joinpath("drift.py").read_text(encoding="utf-8")


def tag(base: str) -> str:
    """The image's tag: a hash of what goes into it."""
    lock, module = _texts()
    text = _DOCKERFILE.format(base=base)
    return "nb2kfp/monitor:" + hashlib.sha256(f"{text}\0{lock}\0{module}".encode()).hexdigest()[:20]


def ensure(base: str, report: images.Report) -> MonitorImage:
    """The monitoring image for ``base``: found in the engine, or built now (offline)."""
    started = time.monotonic()
    ref = tag(base)
    client = images.docker_client()
    found = client.images.list(name=ref)
    if found:
        return MonitorImage(
            ref, str(found[0].id), built=False, seconds=time.monotonic() - started, size=int(found[0].attrs["Size"])
        )
    lock, module = _texts()
    lines = tuple(line for line in lock.splitlines() if line and not line.startswith("#"))
    report(f"building the monitoring image {ref} (once; every model's monitoring reuses it)")
    files = {"drift.py": module, "package.py": _PACKAGE}
    labels = {"io.nb2kfp.monitor": "drift"}
    dockerfile = _DOCKERFILE.format(base=base)
    what = "the monitoring image"
    images.build_offline(
        client,
        dockerfile,
        Requirements(lines, LOCK),
        base,
        ref,
        labels,
        Masker(),
        report,
        quiet=True,
        what=what,
        files=files,
    )
    built = client.images.get(ref)
    return MonitorImage(
        ref, str(built.id), built=True, seconds=time.monotonic() - started, size=int(built.attrs["Size"])
    )


def push(registry_text: str, base: str, report: images.Report) -> str:
    """Build (if needed) and push the monitoring image to REGISTRY/monitor:<content hash>; its pinned reference."""
    return images.push_once(registry_text, "monitor", tag(base), lambda: ensure(base, report).id, report)


def base_image(folder: Path) -> str:
    from nb2kfp.config import find_settings

    return find_settings(folder).image
