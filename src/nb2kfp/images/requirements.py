"""The pinned Python dependencies a step image needs.

From a ``requirements.txt`` beside the notebook or at the repository root (used as written); when there is
none, the versions installed here for the modules the notebook imports (module -> distribution through
``importlib.metadata``). The step runtime's own needs are added: cloudpickle (values pickle cannot carry)
and pyarrow next to pandas (DataFrames travel as Arrow files).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from nb2kfp.errors import UsageError

RUNTIME_EXTRAS = ("cloudpickle",)
_COMPANIONS = {"pandas": ("pyarrow",)}


@dataclass(frozen=True)
class Requirements:
    lines: tuple[str, ...]  # requirement specifiers, sorted
    source: str  # where they came from, for messages

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)


def find_file(notebook: Path) -> Path | None:
    folder = notebook.resolve().parent
    for candidate in [folder, *folder.parents]:
        path = candidate / "requirements.txt"
        if path.is_file():
            return path
        if (candidate / ".git").exists():
            break
    return None


def _installed(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _name(line: str) -> str:
    for sep in ("==", ">=", "<=", "~=", "!=", ">", "<", "[", ";", " ", "@"):
        line = line.split(sep, 1)[0]
    return line.strip().lower().replace("_", "-")


def resolve(notebook: Path, modules: tuple[str, ...]) -> Requirements:
    path = find_file(notebook)
    if path is not None:
        lines = [ln.split("#", 1)[0].strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        pins = {_name(ln): ln for ln in lines if ln and not ln.startswith("-")}
        source = str(path)
    else:
        pins = {}
        source = "the versions installed here"
        mapping = metadata.packages_distributions()
        for module in modules:
            if module in sys.stdlib_module_names or module == "__future__":
                continue
            dists = mapping.get(module)
            if not dists:
                raise UsageError(
                    f"{notebook}: imports {module!r}, which is not installed here and no "
                    "requirements.txt names it; add one beside the notebook"
                )
            for dist in dists:
                version = _installed(dist)
                pins[_name(dist)] = f"{dist}=={version}" if version else dist
    present = set(pins)
    extras = [*RUNTIME_EXTRAS, *(c for dep, cs in _COMPANIONS.items() if dep in present for c in cs)]
    for extra in extras:
        if extra not in present:
            version = _installed(extra)
            pins[extra] = f"{extra}=={version}" if version else extra
    return Requirements(tuple(sorted(pins.values(), key=str.lower)), source)
