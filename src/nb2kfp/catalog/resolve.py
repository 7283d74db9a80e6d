"""The catalog pass of the front end: each ``component:NAME[@VERSION]`` cell's component, from the catalogs.

It runs before the calls are checked (:mod:`nb2kfp.frontend.component_call`), reads local files only (URL
catalogs through the cache ``nb2kfp catalog fetch`` fills), and reports what it cannot find as located
diagnostics; a component read from the cache is reported (a warning, with its age) when the copy is over a
week old or its last fetch failed, so an offline run never uses a stale copy silently. The components it
returns are neutral: the front end never reads KFP JSON.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from nb2kfp.catalog.lookup import Component, NotCached, find
from nb2kfp.errors import Diagnostic, error, warning
from nb2kfp.loader import WORK_TREE, Loader

if TYPE_CHECKING:
    from nb2kfp.config import Settings

__all__ = ["Component", "component", "components"]

OLD_AFTER = 7 * 86400  # a URL catalog component cached longer than this is reported (NB097) on every read


def components(
    path: str,
    refs: dict[str, tuple[int, str]],
    settings: Settings,
    diags: list[Diagnostic],
    loader: Loader = WORK_TREE,
) -> dict[str, Component]:
    """By step name, the component each ``(cell, NAME[@VERSION])`` names; those not found are reported.
    ``loader`` reads the repository's catalog folders, as it reads the notebook (:mod:`nb2kfp.loader`)."""
    out: dict[str, Component] = {}
    for step, (cell, ref) in refs.items():
        found = component(path, cell, ref, settings, diags, loader)
        if found is not None:
            out[step] = found
    return out


def component(
    path: str, cell: int, ref: str, settings: Settings, diags: list[Diagnostic], loader: Loader = WORK_TREE
) -> Component | None:
    name, _, version = ref.partition("@")
    paths, urls = list(settings.catalog_paths), list(settings.catalog_urls)
    try:
        found = find(name, version or None, paths, urls, settings.catalog_pins, loader=loader)
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
    elif found.fetched is not None:
        age = time.time() - found.fetched
        if found.fetch_failed or age > OLD_AFTER:
            failed = f"; the last fetch failed ({found.fetch_failed})" if found.fetch_failed else ""
            msg = (
                f"component:{ref}: using the copy of {found.call.source} fetched {_age(age)} ago{failed} "
                "(run `nb2kfp catalog fetch NOTEBOOK` to refresh it)"
            )
            diags.append(warning(path, msg, "NB097", cell))
    return found


def _age(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "less than a minute"
