"""Masking: every known secret (and its base64 forms) replaced in text before it is shown or written."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nb2kfp.oci.registry import Credentials


class Masker:
    """Replaces every known secret (and its base64 forms) in text before it is shown."""

    def __init__(self, *secrets: str | None) -> None:
        found: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                found.add(secret)
                found.add(base64.b64encode(secret.encode()).decode())
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "****")
        return text

    @classmethod
    def for_credentials(cls, creds: Credentials | None) -> Masker:
        if creds is None:
            return cls()
        return cls(creds.password, f"{creds.username}:{creds.password}")
