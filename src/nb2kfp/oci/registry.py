"""Registry references and the credentials for them (masked in output by :mod:`nb2kfp.masking`).

Credentials come from ``NB2KFP_REGISTRY_USER`` / ``NB2KFP_REGISTRY_PASSWORD`` (or ``_PASSWORD_FILE``),
GitLab's ``CI_REGISTRY_USER`` / ``CI_REGISTRY_PASSWORD`` for ``CI_REGISTRY``, or the Docker config
(``~/.docker/config.json``, ``DOCKER_CONFIG``). They are never printed, written to YAML or put in images.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from nb2kfp.errors import UsageError
from nb2kfp.oci.ref import BadReference, parse_registry, split_domain


@dataclass(frozen=True)
class Registry:
    """``host[:port][/prefix]`` as given to ``--registry``."""

    host: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> Registry:
        try:
            return cls(*parse_registry(text.strip().removeprefix("https://").removeprefix("http://").rstrip("/")))
        except BadReference:
            raise UsageError("--registry: give host[:port][/path], e.g. registry.example.com/ml") from None

    def repository(self, name: str) -> str:
        return "/".join(p for p in (self.host, self.prefix, name) if p)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a registry's ``host[:port]``, or a bare name or address as urlsplit gives it) is this
    machine."""
    try:
        name = split_domain(host)[0]
    except BadReference:
        name = host  # a bare IPv6 address: "::1"
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""

    def docker_auth(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password}


def credentials_for(host: str) -> Credentials | None:
    env = os.environ
    user = env.get("NB2KFP_REGISTRY_USER")
    if user:
        password = env.get("NB2KFP_REGISTRY_PASSWORD")
        if password is None and env.get("NB2KFP_REGISTRY_PASSWORD_FILE"):
            password = Path(env["NB2KFP_REGISTRY_PASSWORD_FILE"]).read_text(encoding="utf-8").strip()
        if password is None:
            raise UsageError("NB2KFP_REGISTRY_USER is set but NB2KFP_REGISTRY_PASSWORD(_FILE) is not")
        return Credentials(user, password, "NB2KFP_REGISTRY_USER")
    if env.get("CI_REGISTRY") == host and env.get("CI_REGISTRY_USER") and env.get("CI_REGISTRY_PASSWORD"):
        return Credentials(env["CI_REGISTRY_USER"], env["CI_REGISTRY_PASSWORD"], "CI_REGISTRY_USER")
    return _docker_config(host)


def _docker_config(host: str) -> Credentials | None:
    folder = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        auths = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("auths", {})
    except (OSError, ValueError):
        return None
    for key, entry in auths.items():
        if key.removeprefix("https://").removeprefix("http://").split("/")[0] == host and entry.get("auth"):
            user, _, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
            return Credentials(user, password, str(folder / "config.json"))
    return None
