"""The compile stamp: one line in a compiled spec that says what it was compiled from (notebook content,
repository settings, nb2kfp version), so ``compile --check`` tells a current spec without compiling.

Written by :mod:`nb2kfp.backends.kfp_spec`, read by ``compile --check``; kept light (no front end, no back end
imports) because the check's fast path imports it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from nb2kfp import __version__

if TYPE_CHECKING:
    from nb2kfp.config import Settings

PREFIX = "# nb2kfp-stamp: "


def stamp(content_hash: str, settings: Settings) -> str:
    """The stamp of a notebook's content hash compiled with ``settings`` by this nb2kfp."""
    data = f"{content_hash}:{settings.fingerprint()}:{__version__}".encode()
    return hashlib.sha256(data).hexdigest()[:32]
