"""Optional dependencies: which ``nb2kfp[...]`` extra brings each, and one line when one is missing.

Commands call :func:`require` before they change anything (no half-made run folder); ``main.py`` turns any
other missing optional import into the same line.
"""

from __future__ import annotations

import importlib

from nb2kfp.errors import Nb2KfpError

# top-level module -> the extra of pyproject.toml that installs it
EXTRA_OF = {
    "kfp": "run",
    "kfp_server_api": "run",
    "cloudpickle": "run",
    "nbconvert": "run",
    "docker": "containers",
    "oras": "containers",
    "requests": "containers",
    "gitlab": "gitlab",
    "starlette": "serve",
    "uvicorn": "serve",
    "pandas": "data",
    "pyarrow": "data",
    "numpy": "data",
    "sklearn": "data",
    "scipy": "data",
    "joblib": "data",
}


class MissingExtra(Nb2KfpError):
    def __init__(self, module: str, purpose: str) -> None:
        extra = EXTRA_OF.get(module, "dev")
        super().__init__(f"{purpose} needs {module}, which is not installed: pip install 'nb2kfp[{extra}]'")


def require(purpose: str, *modules: str) -> None:
    """Import each module; a missing one (or a missing dependency of it) raises :class:`MissingExtra`."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = (exc.name or module).split(".")[0]
            raise MissingExtra(missing if missing in EXTRA_OF else module, purpose) from None


def require_installed(purpose: str, *modules: str) -> None:
    """:func:`require` without importing: for a module only some runs import, later (a run whose steps all
    come from the cache renders no report page, so it never imports nbconvert)."""
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(module, purpose)


def missing_extra(exc: ImportError, argv: list[str]) -> MissingExtra | None:
    """The one-line error for an optional module that could not be imported, or None if it is not optional."""
    name = (exc.name or "").split(".")[0]
    if name not in EXTRA_OF:
        return None
    words = [a for a in argv if not a.startswith("-")][:1]
    return MissingExtra(name, " ".join(["nb2kfp", *words]))
