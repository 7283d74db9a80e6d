"""The component catalog: prebuilt KFP components that ``component:NAME[@VERSION]`` cells call.

A component is a YAML file as the KFP SDK writes it (``Compiler().compile(component_func, path)``: a
pipeline spec holding one component), named ``NAME.yaml`` or ``NAME/VERSION.yaml``. Catalogs are searched
in order: ``[tool.nb2kfp.catalog] paths`` (folders, relative to the settings file), ``urls`` (fetched with
urllib as ``URL/NAME.yaml`` or ``URL/NAME/VERSION.yaml`` and cached under ``$XDG_CACHE_HOME/nb2kfp/catalog``;
a versioned file is fetched once, an unversioned one again on each compile, with the cache as fallback when
offline), then the catalog bundled with nb2kfp. Without ``@VERSION`` the highest version wins (a flat
``NAME.yaml`` counts as the newest).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nb2kfp.ir import ComponentCall, ComponentPort

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Component:
    call: ComponentCall  # without arguments
    required: tuple[str, ...]
    description: str
    sha256: str
    defaults: dict[str, object]


def bundled_dir() -> Path:
    return Path(str(resources.files("nb2kfp.catalog")))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nb2kfp" / "catalog"


def _version_key(version: str) -> tuple[tuple[int, object], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+-]", version))


def _in_folder(folder: Path, name: str, version: str | None) -> Path | None:
    if version:
        candidate = folder / name / f"{version}.yaml"
        return candidate if candidate.is_file() else None
    flat = folder / f"{name}.yaml"
    if flat.is_file():
        return flat
    versions = sorted((p for p in (folder / name).glob("*.yaml")), key=lambda p: _version_key(p.stem))
    return versions[-1] if versions else None


def _fetch(url: str, name: str, version: str | None) -> Path | None:
    rel = f"{name}/{version}.yaml" if version else f"{name}.yaml"
    cached = cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:16] / rel
    if version and cached.is_file():
        return cached
    import urllib.error  # only when a notebook calls a component from a URL catalog
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/{rel}", timeout=15) as response:  # a catalog URL from the settings
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError):
        return cached if cached.is_file() else None
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return cached


def find(name: str, version: str | None, paths: list[str], urls: list[str]) -> Component | None:
    """The component NAME[@VERSION] from the first catalog that has it; ValueError if its file is broken."""
    if not _NAME.match(name):
        return None
    for folder in paths:
        found = _in_folder(Path(folder), name, version)
        if found:
            return parse(found.read_text(encoding="utf-8"), name, version or _version_of(found, name), str(found))
    for url in urls:
        fetched = _fetch(url, name, version)
        if fetched:
            rel = f"{name}/{version}.yaml" if version else f"{name}.yaml"
            return parse(fetched.read_text(encoding="utf-8"), name, version or "", f"{url}/{rel}")
    found = _in_folder(bundled_dir(), name, version)
    if found:
        shown = f"nb2kfp:catalog/{found.relative_to(bundled_dir()).as_posix()}"
        return parse(found.read_text(encoding="utf-8"), name, version or _version_of(found, name), shown)
    return None


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


def parse(text: str, name: str, version: str, source: str) -> Component:
    """Read a single-component pipeline spec as the KFP SDK compiles it."""
    import yaml  # only when a notebook calls a component

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"{source}: not YAML: {exc}") from None
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
    inputs, required, defaults = _ports(comp.get("inputDefinitions", {}), with_required=True)
    outputs, _, _ = _ports(comp.get("outputDefinitions", {}), with_required=False)
    call = ComponentCall(
        name=name,
        version=version,
        component=json.dumps(comp, sort_keys=True),
        executor=json.dumps(executor, sort_keys=True),
        inputs=inputs,
        outputs=outputs,
        source=source,
    )
    description = str(spec.get("pipelineInfo", {}).get("description", "") or "")
    return Component(call, required, description, hashlib.sha256(text.encode()).hexdigest(), defaults)


def _ports(
    defs: dict[str, Any], with_required: bool
) -> tuple[tuple[ComponentPort, ...], tuple[str, ...], dict[str, object]]:
    ports: list[ComponentPort] = []
    required: list[str] = []
    defaults: dict[str, object] = {}
    for name, d in sorted((defs.get("parameters") or {}).items()):
        ports.append(ComponentPort(name, "parameter", str(d.get("parameterType", "STRING"))))
        if "defaultValue" in d:
            defaults[name] = d["defaultValue"]
        elif with_required and not d.get("isOptional"):
            required.append(name)
    for name, d in sorted((defs.get("artifacts") or {}).items()):
        ports.append(ComponentPort(name, "artifact", str(d.get("artifactType", {}).get("schemaTitle", ""))))
        if with_required and not d.get("isOptional"):
            required.append(name)
    return tuple(ports), tuple(required), defaults
