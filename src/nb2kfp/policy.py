"""Repository policy checks made when a pipeline leaves for a cluster (``[tool.nb2kfp.policy]``).

Image prefixes are checked by the front end (lint and compile); here: which KFP endpoints ``publish`` and
``run --host`` may talk to, and that a published spec pins every step image by digest, so KFP's cache and
the cluster run exactly what was built and reviewed.
"""

from __future__ import annotations

from typing import Any

import yaml

from nb2kfp.config import Settings
from nb2kfp.errors import PolicyError


def check_endpoint(settings: Settings, host: str) -> None:
    allowed = settings.allowed_endpoints
    if allowed is not None and not any(host.rstrip("/").startswith(prefix.rstrip("/")) for prefix in allowed):
        raise PolicyError(
            f"{host} is not an allowed KFP endpoint ({settings.source} [tool.nb2kfp.policy] "
            f"allowed_endpoints: {', '.join(allowed) or 'none'})"
        )


def unpinned_images(spec_text: str) -> list[str]:
    images: set[str] = set()
    for doc in yaml.safe_load_all(spec_text):
        executors: dict[str, Any] = (doc or {}).get("deploymentSpec", {}).get("executors", {})
        images.update(e["container"]["image"] for e in executors.values() if "container" in e)
    return sorted(i for i in images if "@sha256:" not in i)


def check_pinned(settings: Settings, spec_text: str, what: str) -> None:
    if not settings.require_digest:
        return
    loose = unpinned_images(spec_text)
    if loose:
        raise PolicyError(
            f"{what}: {settings.source} [tool.nb2kfp.policy] require_digest: images not pinned by "
            f"digest: {', '.join(loose)} (nb2kfp build pins them)"
        )
