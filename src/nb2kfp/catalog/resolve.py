"""The catalog pass of the front end: each ``component:NAME[@VERSION]`` cell's component, from the catalogs.

It runs before the calls are checked (:mod:`nb2kfp.frontend.component_call`), reads local files only (URL
catalogs through the cache ``nb2kfp catalog fetch`` fills), and reports what it cannot find as located
diagnostics. The components it returns are neutral: the front end never reads KFP JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nb2kfp.catalog.lookup import Component, NotCached, find
from nb2kfp.errors import Diagnostic, error

if TYPE_CHECKING:
    from nb2kfp.config import Settings

__all__ = ["Component", "component", "components"]


def components(
    path: str, refs: dict[str, tuple[int, str]], settings: Settings, diags: list[Diagnostic]
) -> dict[str, Component]:
    """By step name, the component each ``(cell, NAME[@VERSION])`` names; those not found are reported."""
    out: dict[str, Component] = {}
    for step, (cell, ref) in refs.items():
        found = component(path, cell, ref, settings, diags)
        if found is not None:
            out[step] = found
    return out


def component(path: str, cell: int, ref: str, settings: Settings, diags: list[Diagnostic]) -> Component | None:
    name, _, version = ref.partition("@")
    paths, urls = list(settings.catalog_paths), list(settings.catalog_urls)
    try:
        found = find(name, version or None, paths, urls, settings.catalog_pins)
    except NotCached as exc:
        diags.append(error(path, f"component:{ref}: {exc}", "NB096", cell))
        return None
    except ValueError as exc:
        diags.append(error(path, f"component:{ref}: {exc}", "NB095", cell))
        return None
    if found is None:
        where = "@" + version if version else ""
        msg = (
            f"component:{name}{where} is in no catalog "
            "(see `nb2kfp catalog list`; [tool.nb2kfp.catalog] adds paths and urls)"
        )
        diags.append(error(path, msg, "NB090", cell))
    return found
