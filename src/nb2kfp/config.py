"""Repository-wide settings: ``[tool.nb2kfp]`` in pyproject.toml, or nb2kfp.toml.

Looked up from the notebook's folder upwards, stopping at the repository root (a ``.git``).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nb2kfp.errors import UsageError
from nb2kfp.ir import DEFAULT_IMAGE
from nb2kfp.loader import WORK_TREE, Loader
from nb2kfp.oci import ref as imageref
from nb2kfp.oci.registry import is_loopback

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

_POLICY_KEYS = {"allowed_images", "allowed_endpoints", "require_digest"}
_KNOWN_KEYS = {
    "image",
    "ignore_tags",
    "caching",
    "pipeline_name_prefix",
    "workspace",
    "workspace_storage_class",
    "artifact_key_secret",
}
_SIZE = re.compile(r"[0-9]+(\.[0-9]+)?(E|P|T|G|M|K|k|Ei|Pi|Ti|Gi|Mi|Ki)?")


@dataclass(frozen=True)
class Settings:
    image: str = DEFAULT_IMAGE
    ignore_tags: frozenset[str] = field(default_factory=frozenset)
    caching: bool = True
    pipeline_name_prefix: str = ""
    workspace: str = ""  # size of a volume the run's steps share, e.g. "10Gi" (empty: none)
    workspace_storage_class: str = ""  # its storage class (empty: the cluster's default; KFP 2.15-2.16 need one)
    artifact_key_secret: tuple[str, str] | None = None  # (secret, key): HMAC key for pickled values (SECURITY.md)
    allowed_images: tuple[str, ...] | None = None  # [tool.nb2kfp.policy]: image prefixes steps may use
    allowed_endpoints: tuple[str, ...] | None = None  # [tool.nb2kfp.policy]: KFP URLs publish/run may use
    require_digest: bool = False  # [tool.nb2kfp.policy]: published specs must pin every image by digest
    catalog_paths: tuple[str, ...] = ()  # [tool.nb2kfp.catalog] paths, made absolute (relative to the file)
    catalog_urls: tuple[str, ...] = ()  # [tool.nb2kfp.catalog] urls (fetched by `nb2kfp catalog fetch`, cached)
    catalog_pins: tuple[tuple[str, str], ...] = ()  # [tool.nb2kfp.catalog] sha256: (NAME[@VERSION], hex)
    source: str = ""  # the file the settings came from, for messages

    def fingerprint(self) -> str:
        data = {
            "image": self.image,
            "ignore_tags": sorted(self.ignore_tags),
            "caching": self.caching,
            "prefix": self.pipeline_name_prefix,
            "workspace": self.workspace,
            **({"workspace_storage_class": self.workspace_storage_class} if self.workspace_storage_class else {}),
            **({"artifact_key_secret": list(self.artifact_key_secret)} if self.artifact_key_secret else {}),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def find_settings(start: Path, loader: Loader = WORK_TREE) -> Settings:
    """Settings for a notebook in folder ``start`` (defaults when no file sets any), files read through ``loader``."""
    folder = start.resolve()
    for candidate in [folder, *folder.parents]:
        toml_file = candidate / "nb2kfp.toml"
        if loader.is_file(toml_file):
            return _parse(toml_file, _read(toml_file, loader))
        project = candidate / "pyproject.toml"
        if loader.is_file(project):
            table = _read(project, loader).get("tool", {}).get("nb2kfp")
            if isinstance(table, dict):
                return _parse(project, table)
        if (candidate / ".git").exists():
            break
    return Settings()


def _read(path: Path, loader: Loader = WORK_TREE) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(loader.read(path).decode("utf-8"))
        return data
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read settings: {exc}") from None


def catalog_url_problem(url: str, allow_loopback_http: bool) -> str | None:
    """Why a catalog URL is refused: https only (plain http only to loopback, when the settings allow it), and no
    user info, query or fragment; None when it is fine."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "not a URL"
    if parts.scheme == "https" and parts.hostname and "@" not in parts.netloc and not parts.query + parts.fragment:
        return None
    if parts.scheme == "http" and parts.hostname and "@" not in parts.netloc and not parts.query + parts.fragment:
        if is_loopback(parts.hostname) and allow_loopback_http:
            return None
        return "plain http only to a loopback address, with allow_loopback_http = true"
    return "give https://HOST[:PORT]/PATH (no user info, query or fragment)"


def _catalog(path: Path, table: object) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """``[tool.nb2kfp.catalog]``: ``paths`` (folders relative to the settings file), ``urls``,
    ``allow_loopback_http`` and ``sha256`` (pins: ``{ "NAME[@VERSION]" = "hex" }``)."""
    if table is None:
        return (), (), ()
    if not isinstance(table, dict) or set(table) - {"paths", "urls", "allow_loopback_http", "sha256"}:
        raise UsageError(
            f"{path}: [tool.nb2kfp.catalog] takes paths = [...], urls = [...], allow_loopback_http = true|false "
            'and sha256 = { "NAME@VERSION" = "HEX" }'
        )
    lists = [table.get(k, []) for k in ("paths", "urls")]
    if not all(isinstance(v, list) and all(isinstance(x, str) and x for x in v) for v in lists):
        raise UsageError(f"{path}: [tool.nb2kfp.catalog]: paths and urls must be lists of strings")
    loopback = table.get("allow_loopback_http", False)
    if not isinstance(loopback, bool):
        raise UsageError(f"{path}: [tool.nb2kfp.catalog]: allow_loopback_http must be true or false")
    for url in lists[1]:
        problem = catalog_url_problem(url, loopback)
        if problem:
            raise UsageError(f"{path}: [tool.nb2kfp.catalog] urls: {url.split('@')[-1][:100]}: {problem}")
    pins = table.get("sha256", {})
    if not isinstance(pins, dict) or not all(
        isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in pins.values()
    ):
        raise UsageError(f'{path}: [tool.nb2kfp.catalog] sha256: give {{ "NAME@VERSION" = "<64 hex digits>" }}')
    return (
        tuple(str((path.parent / p).resolve()) for p in lists[0]),
        tuple(u.rstrip("/") for u in lists[1]),
        tuple(sorted(pins.items())),
    )


def _parse(path: Path, table: dict[str, Any]) -> Settings:
    catalog_paths, catalog_urls, catalog_pins = _catalog(path, table.get("catalog"))
    policy = table.get("policy", {})
    table = {k: v for k, v in table.items() if not isinstance(v, dict)}  # other sub-tables belong to other commands
    allowed = policy.get("allowed_images") if isinstance(policy, dict) else None
    unknown_policy = set(policy) - _POLICY_KEYS if isinstance(policy, dict) else set()
    endpoints = policy.get("allowed_endpoints") if isinstance(policy, dict) else None
    require_digest = policy.get("require_digest", False) if isinstance(policy, dict) else False
    if endpoints is not None and (
        not isinstance(endpoints, list)
        or not all(isinstance(e, str) and re.match(r"https?://[^@/?#]+(/[^@?#]*)?$", e) for e in endpoints)
    ):
        raise UsageError(
            f"{path}: [tool.nb2kfp.policy]: allowed_endpoints must be a list of http(s)://HOST[:PORT][/PATH] "
            "(no user info, query or fragment)"
        )
    if not isinstance(require_digest, bool):
        raise UsageError(f"{path}: [tool.nb2kfp.policy]: require_digest must be true or false")
    if unknown_policy:
        raise UsageError(f"{path}: [tool.nb2kfp.policy]: unknown setting(s): {', '.join(sorted(unknown_policy))}")
    if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(a, str) and a for a in allowed)):
        raise UsageError(f"{path}: [tool.nb2kfp.policy]: allowed_images must be a list of image prefixes")
    unknown = set(table) - _KNOWN_KEYS
    if unknown:
        raise UsageError(f"{path}: [tool.nb2kfp]: unknown setting(s): {', '.join(sorted(unknown))}")
    image = table.get("image", DEFAULT_IMAGE)
    ignore = table.get("ignore_tags", [])
    caching = table.get("caching", True)
    prefix = table.get("pipeline_name_prefix", "")
    imageref.check(image if isinstance(image, str) else "", f"{path}: [tool.nb2kfp]: image")
    for entry in allowed or []:
        imageref.check(entry, f"{path}: [tool.nb2kfp.policy]: allowed_images", prefix=True)
    if not isinstance(ignore, list) or not all(isinstance(t, str) for t in ignore):
        raise UsageError(f"{path}: [tool.nb2kfp]: ignore_tags must be a list of strings")
    if not isinstance(caching, bool):
        raise UsageError(f"{path}: [tool.nb2kfp]: caching must be true or false")
    if not isinstance(prefix, str):
        raise UsageError(f"{path}: [tool.nb2kfp]: pipeline_name_prefix must be a string")
    key_secret = table.get("artifact_key_secret")
    if key_secret is not None and not (
        isinstance(key_secret, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[-._a-zA-Z0-9]+", key_secret)
    ):
        raise UsageError(f'{path}: [tool.nb2kfp]: artifact_key_secret must be "SECRET_NAME:KEY" (a Kubernetes secret)')
    workspace = table.get("workspace", "")
    if not isinstance(workspace, str) or (workspace and not _SIZE.fullmatch(workspace)):
        raise UsageError(f'{path}: [tool.nb2kfp]: workspace must be a size such as "10Gi"')
    storage_class = table.get("workspace_storage_class", "")
    if not isinstance(storage_class, str) or (
        storage_class and not re.fullmatch(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", storage_class)
    ):
        raise UsageError(f"{path}: [tool.nb2kfp]: workspace_storage_class must be a Kubernetes storage class name")
    return Settings(
        image,
        frozenset(ignore),
        caching,
        prefix,
        allowed_images=None if allowed is None else tuple(allowed),
        allowed_endpoints=None if endpoints is None else tuple(endpoints),
        require_digest=require_digest,
        workspace=workspace,
        workspace_storage_class=storage_class,
        artifact_key_secret=tuple(key_secret.split(":", 1)) if key_secret else None,  # type: ignore[arg-type]
        catalog_paths=catalog_paths,
        catalog_urls=catalog_urls,
        catalog_pins=catalog_pins,
        source=str(path),
    )
