"""nbformat's schema as the judge when nb2kfp's own checks refuse a notebook (frontend/notebook.py).

nb2kfp checks only the structure it relies on, quickly, on every read. When that check fails, nbformat's schema
(through nbformat's jsonschema validator, which reports every error where the default one stops at the first)
says precisely where the notebook breaks it: ``cell 4: metadata.tags[1]: 5 is not of type 'string'``. It
runs on that failure path only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

_SHOWN = 200  # characters of the validator's messages


def explain(raw: dict[str, Any], cell: int | None = None) -> str:
    """The schema's most specific finding in the refused part of ``raw`` (``cell``: its 1-based number, else
    the notebook's metadata) as ``PATH: MESSAGE``, the path from the cell on; "" when the schema finds nothing
    wrong there."""
    import nbformat
    from nbformat.validator import get_validator

    minor = raw.get("nbformat_minor")
    current = nbformat.v4.nbformat_minor
    minor = minor if type(minor) is int and 0 <= minor <= current else current
    validator = get_validator(version=4, version_minor=minor, name="jsonschema")
    where = ["cells", cell - 1] if cell is not None else ["metadata"]
    try:
        found = [e for e in itertools.islice(_leaves(validator.iter_errors(raw)), 1000) if e[0][:2] == where]
    except RecursionError:  # nested deeper than the validator recurses: nb2kfp's own message stands alone
        return ""
    refused = raw["cells"][cell - 1] if cell is not None else None
    kind = refused.get("cell_type") if isinstance(refused, dict) else None
    if kind in ("code", "markdown", "raw"):  # the schema's branches for the other cell types are not the news
        found = [(path, message) for path, message in found if path[2:] != ["cell_type"]]
    if not found:
        return ""
    path = max((path for path, _ in found), key=len)  # the deepest: a wrong tag, not the cell around it
    text = "; ".join(dict.fromkeys(" ".join(message.split()) for at, message in found if at == path))
    text = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
    inside = _path(path[2:] if cell is not None else path)  # in a cell: from the cell on (the error names it)
    return f"{inside}: {text}" if inside else text


def _leaves(errors: Any) -> Iterator[tuple[list[Any], str]]:
    """(path, message) of each error, with a oneOf/anyOf error replaced by the errors of its branches."""
    for error in errors:
        if error.context:
            yield from _leaves(error.context)
        else:
            yield list(error.absolute_path), str(error.message)


def _path(parts: list[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else str(part)
    return out
