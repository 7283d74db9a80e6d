"""The component catalog: prebuilt KFP components that ``component:NAME[@VERSION]`` cells call.

This module finds, fetches and reads component files; it is the one place that parses KFP component
schemas. What it hands the front end is neutral (:class:`nb2kfp.ir.ComponentCall`: ports with nb2kfp's own
types, the image, the file and its sha256); the spec writer gets the KFP JSON back with :func:`documents`.

A component is a YAML file as the KFP SDK writes it (``Compiler().compile(component_func, path)``: a
pipeline spec holding one component), named ``NAME.yaml`` or ``NAME/VERSION.yaml``. Catalogs are searched
in order: ``[tool.nb2kfp.catalog] paths`` (folders, relative to the settings file), ``urls``, then the catalog
bundled with nb2kfp. Without ``@VERSION`` the highest version wins (a flat ``NAME.yaml`` counts as the newest).

URL catalogs are untrusted input. Only ``nb2kfp catalog fetch`` (and the CI job's fetch step) uses the network:
it downloads ``URL/NAME.yaml`` or ``URL/NAME/VERSION.yaml`` (https; http only to loopback when the settings say
so; no redirects; at most MAX_BYTES within FETCH_SECONDS) into ``$XDG_CACHE_HOME/nb2kfp/catalog``. Lint and
compile read that cache only, and say when a component is missing from it, and when the copy they use is old
or its last fetch failed (:mod:`nb2kfp.catalog.resolve`). Messages never quote what a server
sent. ``[tool.nb2kfp.catalog] sha256`` pins a component's content; under ``nb2kfp serve`` the server's
``NB2KFP_SERVE_CATALOG_URLS`` lists the only URLs a pushed repository may name (NB2KFP_CATALOG_ALLOWED_URLS).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nb2kfp import kfpnames
from nb2kfp.errors import RunError
from nb2kfp.ir import ComponentCall, ComponentPort
from nb2kfp.loader import WORK_TREE, Loader

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MAX_BYTES = 1 << 20
FETCH_SECONDS = 15.0  # the whole download; NB2KFP_CATALOG_TIMEOUT overrides
ALLOWED_ENV = "NB2KFP_CATALOG_ALLOWED_URLS"  # set by `nb2kfp serve` for the CI run it starts


class NotCached(ValueError):
    """A URL catalog component that `nb2kfp catalog fetch` has not downloaded yet."""


@dataclass(frozen=True)
class Component:
    call: ComponentCall  # without arguments
    required: tuple[str, ...]
    description: str
    defaults: dict[str, object]
    spec: str  # JSON text of its componentSpec, as KFP wrote it
    executor: str  # JSON text of its deploymentSpec executor
    fetched: float | None = None  # from a URL catalog: when the cached copy was fetched (epoch seconds)
    fetch_failed: str = ""  # from a URL catalog: why the last fetch failed, when it did (the copy is older)

    @property
    def sha256(self) -> str:
        return self.call.sha256


def bundled_dir() -> Path:
    return Path(str(resources.files("nb2kfp.catalog")))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nb2kfp" / "catalog"


def _version_key(version: str) -> tuple[tuple[int, object], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+-]", version))


def _in_folder(folder: Path, name: str, version: str | None, loader: Loader = WORK_TREE) -> Path | None:
    if version:
        candidate = folder / name / f"{version}.yaml"
        return candidate if loader.is_file(candidate) else None
    flat = folder / f"{name}.yaml"
    if loader.is_file(flat):
        return flat
    versions = sorted(
        (p for p in loader.files(folder / name) if p.suffix == ".yaml"), key=lambda p: _version_key(p.stem)
    )
    return versions[-1] if versions else None


def _cached(url: str, rel: str) -> Path:
    return cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:16] / rel


def _allowed(url: str) -> bool:
    allowed = os.environ.get(ALLOWED_ENV)
    if allowed is None:
        return True
    return any(url == a.rstrip("/") or url.startswith(a.rstrip("/") + "/") for a in allowed.split() if a)


def _download(url: str, target: Path) -> bool:
    """``url`` into ``target`` within the limits; False on 404 (not in this catalog), ValueError on the rest.
    The message names the URL and what went wrong, never what the server sent."""
    import time
    import urllib.error  # only when components are fetched
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            raise ValueError("it redirects (refused: the settings name the URL to use)")

    limit = float(os.environ.get("NB2KFP_CATALOG_TIMEOUT") or FETCH_SECONDS)
    deadline = time.monotonic() + limit
    chunks: list[bytes] = []
    try:
        with urllib.request.build_opener(_NoRedirect).open(url, timeout=min(limit, 5.0)) as response:
            while chunk := response.read1(64 * 1024):  # what has arrived: the deadline holds for a slow drip
                chunks.append(chunk)
                if sum(map(len, chunks)) > MAX_BYTES:
                    raise ValueError(f"it is over {MAX_BYTES >> 20} MiB")
                if time.monotonic() > deadline:
                    raise TimeoutError
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise ValueError(f"catalog URL {url}: HTTP {exc.code}") from None
    except (TimeoutError, OSError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) or "timed out" in str(exc) else type(exc).__name__
        raise ValueError(f"catalog URL {url}: {reason} (limit {limit:.0f} s)") from None
    except ValueError as exc:
        raise ValueError(f"catalog URL {url}: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(b"".join(chunks))
    tmp.replace(target)
    return True


def find(
    name: str,
    version: str | None,
    paths: list[str],
    urls: list[str],
    pins: tuple[tuple[str, str], ...] = (),
    *,
    fetch: bool = False,
    loader: Loader = WORK_TREE,
) -> Component | None:
    """The component NAME[@VERSION] from the first catalog that has it; ValueError if its file is broken, does
    not match its sha256 pin, or (``fetch`` False) a URL catalog has not been fetched into the cache.
    ``loader`` reads the catalog folders (the repository's files: ``plan --against REF`` reads them at REF)."""
    if not _NAME.match(name):
        return None
    found = _find(name, version, paths, urls, fetch=fetch, loader=loader)
    pin = dict(pins).get(f"{name}@{found.call.version}" if found else "") or dict(pins).get(name)
    if found is not None and pin and found.sha256 != pin:
        raise ValueError(
            f"{found.call.source}: its sha256 {found.sha256[:12]}... is not the one [tool.nb2kfp.catalog] sha256 "
            f"pins ({pin[:12]}...)"
        )
    return found


def _find(
    name: str, version: str | None, paths: list[str], urls: list[str], *, fetch: bool, loader: Loader
) -> Component | None:
    for folder in paths:
        found = _in_folder(Path(folder), name, version, loader)
        if found:
            return _read(found, name, version or _version_of(found, name), str(found), loader)
    rel = f"{name}/{version}.yaml" if version else f"{name}.yaml"
    for url in urls:
        cached = _cached(url, rel)
        absent = cached.with_name(cached.name + ".absent")  # the last fetch found no such file there
        failed = cached.with_name(cached.name + ".failed")  # the last fetch failed: why
        if fetch:
            if not _allowed(url):
                raise ValueError(f"catalog URL {url} is not one the server allows (NB2KFP_SERVE_CATALOG_URLS)")
            try:
                downloaded = _download(f"{url}/{rel}", cached)
            except ValueError as exc:  # our own message, never the server's text
                failed.parent.mkdir(parents=True, exist_ok=True)
                failed.write_text(str(exc).removeprefix(f"catalog URL {url}/{rel}: ")[:200], encoding="utf-8")
                raise
            failed.unlink(missing_ok=True)
            if not downloaded:
                absent.parent.mkdir(parents=True, exist_ok=True)
                absent.touch()
                continue
            absent.unlink(missing_ok=True)
        elif absent.is_file():
            continue
        elif not cached.is_file():
            raise NotCached(f"{url}/{rel} is not in the local cache: run `nb2kfp catalog fetch NOTEBOOK` first")
        why = failed.read_text(encoding="utf-8") if failed.is_file() else ""
        component = _read(cached, name, version or "", f"{url}/{rel}")
        return dataclasses.replace(component, fetched=cached.stat().st_mtime, fetch_failed=why)
    found = _in_folder(bundled_dir(), name, version)
    if found:
        shown = f"nb2kfp:catalog/{found.relative_to(bundled_dir()).as_posix()}"
        return _read(found, name, version or _version_of(found, name), shown)
    return None


def _read(file: Path, name: str, version: str, source: str, loader: Loader = WORK_TREE) -> Component:
    text = loader.read(file).decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() reads
    return parse(text, name, version, source, str(file))


# The KFP JSON of every component parsed, by the sha256 of its file: what the spec writer copies for a call
# (content-addressed, so always the content the front end read, even from another commit's files).
_SEEN: dict[str, tuple[str, str]] = {}


def documents(call: ComponentCall) -> tuple[dict[str, Any], dict[str, Any]]:
    """The componentSpec and executor of a call the catalog resolved (the IR carries no KFP JSON): as parsed when it
    was resolved, or read again from its file; RunError when that file changed since (its sha256 differs)."""
    if call.sha256 not in _SEEN:
        try:
            text = Path(call.file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RunError(f"component file {call.file}: {type(exc).__name__}; compile the notebook again") from None
        if hashlib.sha256(text.encode()).hexdigest() != call.sha256:
            raise RunError(f"component file {call.file} changed since the notebook was read: compile it again")
        parse(text, call.name, call.version, call.source, call.file)
    spec, executor = _SEEN[call.sha256]
    return json.loads(spec), json.loads(executor)


def _version_of(path: Path, name: str) -> str:
    return path.stem if path.parent.name == name else ""


def entries(paths: list[str]) -> list[tuple[str, str, str]]:
    """(name, version, file) of every component in the local catalogs and the bundled one, in search order."""
    out: list[tuple[str, str, str]] = []
    for folder in [*(Path(p) for p in paths), bundled_dir()]:
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.yaml")):
            out.append((file.stem, "", str(file)))
        for file in sorted(folder.glob("*/*.yaml"), key=lambda p: (p.parent.name, _version_key(p.stem))):
            if file.parent.name not in ("sources",):
                out.append((file.parent.name, file.stem, str(file)))
    return out


def parse(text: str, name: str, version: str, source: str, file: str = "") -> Component:
    """Read a single-component pipeline spec as the KFP SDK compiles it (``file``: where ``text`` was read)."""
    from nb2kfp import yamlsafe  # only when a notebook calls a component

    try:
        docs = [d for d in yamlsafe.load_all(text) if d is not None]
    except yamlsafe.YamlError as exc:  # located, never quoting the text
        raise ValueError(f"{source}: not YAML ({exc})") from None
    spec = docs[0] if docs else None
    if not isinstance(spec, dict) or not isinstance(spec.get("components"), dict):
        raise ValueError(f"{source}: not a KFP component file (compile one with kfp.compiler.Compiler)")
    comps = {k: v for k, v in spec["components"].items() if isinstance(v, dict)}
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    if len(comps) != 1:
        raise ValueError(f"{source}: holds {len(comps)} components; a catalog file holds exactly one")
    comp: dict[str, Any] = next(iter(comps.values()))
    executor = executors.get(comp.get("executorLabel"))
    if "dag" in comp or not isinstance(executor, dict):
        raise ValueError(f"{source}: a catalog component must be a single container component, not a pipeline")
    inputs, required, defaults = _ports(source, comp.get("inputDefinitions", {}), with_required=True)
    outputs, _, _ = _ports(source, comp.get("outputDefinitions", {}), with_required=False)
    call = ComponentCall(
        name=name,
        version=version,
        inputs=inputs,
        outputs=outputs,
        source=source,
        file=file,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        image=str(executor.get("container", {}).get("image", "")),
    )
    description = str(spec.get("pipelineInfo", {}).get("description", "") or "")
    spec_json, executor_json = json.dumps(comp, sort_keys=True), json.dumps(executor, sort_keys=True)
    _SEEN[call.sha256] = (spec_json, executor_json)
    return Component(call, required, description, defaults, spec_json, executor_json)


def _ports(
    source: str, defs: dict[str, Any], *, with_required: bool
) -> tuple[tuple[ComponentPort, ...], tuple[str, ...], dict[str, object]]:
    """Its parameters with nb2kfp's types (KFP's NUMBER_DOUBLE is a float ...), its artifacts with their schema."""
    ports: list[ComponentPort] = []
    required: list[str] = []
    defaults: dict[str, object] = {}
    for name, d in sorted((defs.get("parameters") or {}).items()):
        kfp_type = str(d.get("parameterType", "STRING"))
        if kfp_type not in kfpnames.IR_TYPES:
            raise ValueError(f"{source}: parameter {name!r} has type {kfp_type[:40]}, which a notebook cannot pass")
        ports.append(ComponentPort(name, "parameter", kfpnames.IR_TYPES[kfp_type]))
        if "defaultValue" in d:
            defaults[name] = d["defaultValue"]
        elif with_required and not d.get("isOptional"):
            required.append(name)
    for name, d in sorted((defs.get("artifacts") or {}).items()):
        ports.append(ComponentPort(name, "artifact", str(d.get("artifactType", {}).get("schemaTitle", ""))))
        if with_required and not d.get("isOptional"):
            required.append(name)
    return tuple(ports), tuple(required), defaults
