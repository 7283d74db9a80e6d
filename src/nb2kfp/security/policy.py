"""Repository policy checks made when a pipeline leaves for a cluster (``[tool.nb2kfp.policy]``).

Image prefixes are checked by the front end (lint and compile, ``nb2kfp.oci.ref.allowed_by``); here: which KFP
endpoints ``publish`` and ``run --host`` may talk to, and that a published pipeline pins every step image by
digest, so KFP's cache and the cluster run exactly what was built and reviewed. Both are checked before anything
is written or sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit

from nb2kfp import yamlsafe
from nb2kfp.config import Settings
from nb2kfp.errors import PolicyError
from nb2kfp.oci import ref as imageref

_PORTS = {"http": 80, "https": 443}


def _parts(url: str) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an http(s) URL without user info; None when it is not one."""
    try:
        parts: SplitResult = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _PORTS or not parts.hostname or "@" in parts.netloc or parts.query or parts.fragment:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _PORTS[scheme], parts.path.rstrip("/")


def endpoint_allowed(host: str, allowed: str) -> bool:
    """Same scheme, host and port, and a path under the allowed one on a '/' boundary; user info never passes."""
    given, want = _parts(host), _parts(allowed)
    if given is None or want is None or given[:3] != want[:3]:
        return False
    return given[3] == want[3] or given[3].startswith(want[3] + "/")


def check_endpoint(settings: Settings, host: str) -> None:
    allowed = settings.allowed_endpoints
    if allowed is not None and not any(endpoint_allowed(host, entry) for entry in allowed):
        shown = host if _parts(host) else "the given URL"  # never echo user info (it may hold a password)
        raise PolicyError(
            f"{shown} is not an allowed KFP endpoint ({settings.source} [tool.nb2kfp.policy] "
            f"allowed_endpoints: {', '.join(allowed) or 'none'})"
        )


def spec_images(spec_text: str) -> list[str]:
    """The step images a compiled spec runs; PolicyError when it is no YAML (or over a bound: yamlsafe)."""
    images: set[str] = set()
    try:
        docs = yamlsafe.load_all(spec_text)
    except yamlsafe.YamlError as exc:
        raise PolicyError(f"the spec is not YAML ({exc})") from None
    for doc in docs:
        executors: dict[str, Any] = (doc or {}).get("deploymentSpec", {}).get("executors", {})
        images.update(e["container"]["image"] for e in executors.values() if "container" in e)
    return sorted(images)


def check_pinned(settings: Settings, images: Iterable[str], what: str) -> None:
    """``require_digest``: every image pinned by digest (give the IR's step images, or ``spec_images``)."""
    if not settings.require_digest:
        return
    loose = sorted({i for i in images if not _pinned(i)})
    if loose:
        raise PolicyError(
            f"{what}: {settings.source} [tool.nb2kfp.policy] require_digest: images not pinned by "
            f"digest: {', '.join(loose)} (nb2kfp build pins them)"
        )


def _pinned(image: str) -> bool:
    try:
        return imageref.parse(image).pinned
    except imageref.BadReference:
        return False
