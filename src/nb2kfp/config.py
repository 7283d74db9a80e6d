"""Repository-wide settings: ``[tool.nb2kfp]`` in pyproject.toml, or nb2kfp.toml.

Looked up from the notebook's folder upwards, stopping at the repository root (a ``.git``).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Callable
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
    serving: tuple[tuple[str, str], ...] = ()  # [tool.nb2kfp.serving]: runtime image and framework pins
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


def catalog_url_problem(url: str, *, allow_loopback_http: bool) -> str | None:
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


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) and x for x in value)


def _endpoint(value: object) -> bool:
    return isinstance(value, str) and re.match(r"https?://[^@/?#]+(/[^@?#]*)?$", value) is not None


def _name_check(pattern: str) -> Callable[[object], bool]:
    """A string that is empty or matches ``pattern`` whole."""
    return lambda value: isinstance(value, str) and (not value or re.fullmatch(pattern, value) is not None)


@dataclass(frozen=True)
class Key:
    """One setting: its table (``""``: ``[tool.nb2kfp]`` itself; ``policy``: ``[tool.nb2kfp.policy]``...), its
    name, the check its value must pass and the words the message uses for what it must be."""

    table: str
    name: str
    valid: Callable[[Any], bool]
    must_be: str


_BOOL = (lambda v: isinstance(v, bool), "true or false")
_STRING = (lambda v: isinstance(v, str), "a string")
# Every setting nb2kfp reads, declared once: find_settings reads them all (an unknown one is an error), and
# commands use Settings' fields, never the file.
SCHEMA: tuple[Key, ...] = (
    Key("", "image", lambda v: isinstance(v, str), "an image reference"),
    Key("", "ignore_tags", lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "a list of strings"),
    Key("", "caching", *_BOOL),
    Key("", "pipeline_name_prefix", *_STRING),
    Key(
        "",
        "workspace",
        lambda v: isinstance(v, str) and (not v or _SIZE.fullmatch(v) is not None),
        'a size such as "10Gi"',
    ),
    Key(
        "",
        "workspace_storage_class",
        _name_check(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?"),
        "a Kubernetes storage class name",
    ),
    Key(
        "",
        "artifact_key_secret",
        lambda v: isinstance(v, str) and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[-._a-zA-Z0-9]+", v) is not None,
        '"SECRET_NAME:KEY" (a Kubernetes secret)',
    ),
    Key("policy", "allowed_images", _strings, "a list of image prefixes"),
    Key(
        "policy",
        "allowed_endpoints",
        lambda v: isinstance(v, list) and all(_endpoint(e) for e in v),
        "a list of http(s)://HOST[:PORT][/PATH] (no user info, query or fragment)",
    ),
    Key("policy", "require_digest", *_BOOL),
    Key("catalog", "paths", _strings, "a list of strings"),
    Key("catalog", "urls", _strings, "a list of strings"),
    Key("catalog", "allow_loopback_http", *_BOOL),
    Key(
        "catalog",
        "sha256",
        lambda v: (
            isinstance(v, dict) and all(isinstance(h, str) and re.fullmatch(r"[0-9a-f]{64}", h) for h in v.values())
        ),
        '{ "NAME@VERSION" = "<64 hex digits>" }',
    ),
    *(
        Key("serving", f"{runtime}_{what}", *_STRING)
        for runtime in ("mlserver", "kserve")
        for what in ("image", "scikit-learn")
    ),
    Key("serving", "request_log_url", *_STRING),
)
TABLES = tuple(dict.fromkeys(k.table for k in SCHEMA))


def _table_name(table: str, *, toml_file: bool) -> str:
    if toml_file:
        return f"[{table}]" if table else "nb2kfp.toml"
    return f"[tool.nb2kfp.{table}]" if table else "[tool.nb2kfp]"


def read_schema(path: Path, table: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """The settings ``table`` of ``path`` gives, checked against :data:`SCHEMA`: (table, name) -> value."""
    toml_file = path.name == "nb2kfp.toml"
    keys = {(k.table, k.name): k for k in SCHEMA}
    found: dict[tuple[str, str], Any] = {}
    for name in TABLES:
        where = _table_name(name, toml_file=toml_file)
        part = table.get(name, {}) if name else {k: v for k, v in table.items() if k not in TABLES[1:]}
        if not isinstance(part, dict):
            raise UsageError(f"{path}: {where} must be a table")
        unknown = sorted(k for k in part if (name, k) not in keys)
        if unknown:
            raise UsageError(f"{path}: {where}: unknown setting(s): {', '.join(unknown)}")
        for key, value in part.items():
            if not keys[name, key].valid(value):
                raise UsageError(f"{path}: {where}: {key} must be {keys[name, key].must_be}")
            found[name, key] = value
    return found


def _parse(path: Path, table: dict[str, Any]) -> Settings:
    values = read_schema(path, table)
    toml_file = path.name == "nb2kfp.toml"
    where = _table_name("", toml_file=toml_file)
    image = values.get(("", "image"), DEFAULT_IMAGE)
    imageref.check(image, f"{path}: {where}: image")
    allowed = values.get(("policy", "allowed_images"))
    for entry in allowed or []:
        imageref.check(entry, f"{path}: {_table_name('policy', toml_file=toml_file)}: allowed_images", prefix=True)
    loopback = values.get(("catalog", "allow_loopback_http"), False)
    urls = values.get(("catalog", "urls"), [])
    for url in urls:
        problem = catalog_url_problem(url, allow_loopback_http=loopback)
        if problem:
            raise UsageError(f"{path}: [tool.nb2kfp.catalog] urls: {url.split('@')[-1][:100]}: {problem}")
    endpoints = values.get(("policy", "allowed_endpoints"))
    key_secret = values.get(("", "artifact_key_secret"))
    return Settings(
        image,
        frozenset(values.get(("", "ignore_tags"), [])),
        values.get(("", "caching"), True),
        values.get(("", "pipeline_name_prefix"), ""),
        allowed_images=None if allowed is None else tuple(allowed),
        allowed_endpoints=None if endpoints is None else tuple(endpoints),
        require_digest=values.get(("policy", "require_digest"), False),
        workspace=values.get(("", "workspace"), ""),
        workspace_storage_class=values.get(("", "workspace_storage_class"), ""),
        artifact_key_secret=tuple(key_secret.split(":", 1)) if key_secret else None,
        catalog_paths=tuple(str((path.parent / p).resolve()) for p in values.get(("catalog", "paths"), [])),
        catalog_urls=tuple(u.rstrip("/") for u in urls),
        catalog_pins=tuple(sorted(values.get(("catalog", "sha256"), {}).items())),
        serving=tuple(sorted((name, v) for (table, name), v in values.items() if table == "serving")),
        source=str(path),
    )
