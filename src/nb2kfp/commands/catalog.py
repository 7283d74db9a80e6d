"""``nb2kfp catalog list`` and ``nb2kfp catalog show NAME[@VERSION]``: the components cells can call."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nb2kfp import kfpnames
from nb2kfp.config import find_settings
from nb2kfp.errors import UsageError
from nb2kfp.ir import ComponentPort


def run_list(folder: Path, report: Callable[[str], None], *, as_json: bool) -> int:
    """Every component in the catalogs of the settings found from ``folder`` (URL catalogs: cached ones)."""
    from nb2kfp.catalog import lookup as catalog

    settings = find_settings(folder)
    rows = catalog.entries(list(settings.catalog_paths))
    if as_json:
        report(json.dumps([{"name": n, "version": v, "file": f} for n, v, f in rows], indent=2))
        return 0
    for name, version, file in rows:
        report(f"{name}{'@' + version if version else ''}  {file}")
    if settings.catalog_urls:
        report(f"also fetched on use from: {', '.join(settings.catalog_urls)}")
    return 0


def run_show(ref: str, folder: Path, report: Callable[[str], None], *, as_json: bool) -> int:
    """A component's inputs (type, default) and outputs: what a component: cell passes and gets."""
    from nb2kfp.catalog import lookup as catalog

    settings = find_settings(folder)
    name, _, version = ref.partition("@")
    paths, urls = list(settings.catalog_paths), list(settings.catalog_urls)
    try:
        found = catalog.find(name, version or None, paths, urls, settings.catalog_pins)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if found is None:
        raise UsageError(f"component {ref!r} is in no catalog (nb2kfp catalog list shows them)")
    call = found.call
    if as_json:
        doc = {
            "name": call.name,
            "version": call.version,
            "source": call.source,
            "description": found.description,
            "inputs": [
                {"name": p.name, "kind": p.kind, "type": _kfp_type(p), "required": p.name in found.required}
                | ({"default": found.defaults[p.name]} if p.name in found.defaults else {})
                for p in call.inputs
            ],
            "outputs": [{"name": p.name, "kind": p.kind, "type": _kfp_type(p)} for p in call.outputs],
        }
        report(json.dumps(doc, indent=2))
        return 0
    report(f"{call.name}{'@' + call.version if call.version else ''}  ({call.source})")
    if found.description:
        report(f"  {found.description}")
    report("inputs (write `name = value` lines in the component: cell):")
    for p in call.inputs:
        extra = " required" if p.name in found.required else ""
        if p.name in found.defaults:
            extra = f" = {json.dumps(found.defaults[p.name])}"
        report(f"  {p.name}: {p.kind} {_kfp_type(p)}{extra}")
    report("outputs (variables later steps can read):")
    for p in call.outputs:
        how = "value" if p.kind == "parameter" else "local path (str)"
        report(f"  {p.name}: {p.kind} {_kfp_type(p)} -> {how}")
    return 0


def _kfp_type(port: ComponentPort) -> str:
    """The type as the component file declares it (KFP's parameter type, or the artifact's schema)."""
    return kfpnames.PARAMETER_TYPES[port.type] if port.kind == "parameter" else port.type


def run_fetch(notebooks: list[Path], report: Callable[[str], None]) -> int:
    """The network step: each component: cell's component from the URL catalogs, into the local cache (within
    the size and time limits, checked against the sha256 pins). Exit 1 if any could not be fetched."""
    from nb2kfp import service

    return 0 if service.fetch_components(notebooks, report) else 1
