"""The pinned Python dependencies a step image needs: only what the notebook uses (one image per notebook).

The modules the notebook (and the local modules it imports) import, mapped to the distributions installed here
(``importlib.metadata.packages_distributions``), at the versions installed here; plus every line of a
``requirements.txt`` (or a ``pyproject.toml``'s ``[project] dependencies``) beside the notebook, whose pins win. A
``requirements.txt`` higher up, at the repository root, pins only what the notebook's imports map to (or name): a
repository-wide file never puts another notebook's packages in this image. A module nobody can map is left out
and named (:attr:`Requirements.unmapped`; lint warns, NB103). A library's optional extras whose packages are all
installed here come along too (hist's plots import mplhep only when called: the notebook uses it though no cell
imports it). The step runtime's own needs are added: cloudpickle (values pickle cannot carry) and pyarrow next to
pandas (DataFrames travel as Arrow files).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

from nb2kfp.errors import UsageError

RUNTIME_EXTRAS = ("cloudpickle",)
_COMPANIONS = {"pandas": ("pyarrow",)}


@dataclass(frozen=True)
class Requirements:
    lines: tuple[str, ...]  # requirement specifiers, sorted
    source: str  # where they came from, for messages
    unmapped: tuple[str, ...] = ()  # modules the notebook imports that no distribution here or file provides

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
    return line.strip().lower().replace("_", "-").replace(".", "-")


def _file_lines(path: Path) -> list[str]:
    """Requirement lines of a requirements.txt, or of a pyproject.toml's ``[project] dependencies``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read: {exc}") from None
    if path.name == "pyproject.toml":
        try:
            project = tomllib.loads(text).get("project") or {}
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{path}: {exc}") from None
        deps = project.get("dependencies") or []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise UsageError(f"{path}: [project] dependencies must be a list of requirement strings")
        return [d.strip() for d in deps]
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("-")]


_EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


def installed_extras(distribution: str) -> dict[str, str]:
    """The packages of ``distribution``'s optional extras whose packages are all installed here (what its lazy
    imports find when the notebook runs here): name -> ``name==version``."""
    by_extra: dict[str, list[str]] = {}
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return {}
    for line in requires:
        match = _EXTRA.search(line.split(";", 1)[1]) if ";" in line else None
        if match:
            by_extra.setdefault(match.group(1), []).append(_name(line))
    found: dict[str, str] = {}
    for names in by_extra.values():
        versions = {name: _installed(name) for name in names}
        if all(versions.values()):
            found.update((name, f"{name}=={version}") for name, version in versions.items())
    return found


def is_mappable(module: str, named: set[str]) -> bool:
    """Can a step image get ``module``: the standard library, installed here, or named in a requirements file?"""
    if module in sys.stdlib_module_names or module == "__future__" or _name(module) in named:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def named_in_files(notebook: Path) -> set[str]:
    """The distributions the notebook's requirement files name (normalised)."""
    found: set[str] = set()
    beside = notebook.resolve().parent / "pyproject.toml"
    for path in (find_file(notebook), beside if beside.is_file() else None):
        if path is not None:
            found.update(_name(line) for line in _file_lines(path))
    return found


def resolve(notebook: Path, modules: tuple[str, ...], local: tuple[str, ...] = ()) -> Requirements:
    """The requirements of the step image of ``notebook``, which imports ``modules`` (``local``: modules beside it,
    which the image carries as files)."""
    folder = notebook.resolve().parent
    pins: dict[str, str] = {}
    pinned_only: dict[str, str] = {}  # a repository-wide file: pins, for what the notebook uses
    sources = []
    found = find_file(notebook)
    for path in (found, folder / "pyproject.toml"):
        if path is None or not path.is_file():
            continue
        lines = {_name(ln): ln for ln in _file_lines(path)}
        (pins if path.parent == folder else pinned_only).update(lines)
        sources.append(str(path))
    mapping = metadata.packages_distributions()
    unmapped = []
    mapped = False
    for module in modules:
        if module in local or module in sys.stdlib_module_names or module == "__future__":
            continue
        if _name(module) in pins:
            continue
        if _name(module) in pinned_only:
            pins[_name(module)] = pinned_only[_name(module)]
            continue
        dists = mapping.get(module)
        if not dists:
            unmapped.append(module)
            continue
        for dist in dists:
            key = _name(dist)
            if key not in pins:
                version = _installed(dist)
                pins[key] = pinned_only.get(key) or (f"{dist}=={version}" if version else dist)
                mapped = True
    for dist in {d for module in modules for d in mapping.get(module, ())}:
        for key, line in installed_extras(dist).items():
            pins.setdefault(key, pinned_only.get(key) or line)
    if mapped or not sources:
        sources.append("the versions installed here")
    present = set(pins)
    extras = [*RUNTIME_EXTRAS, *(c for dep, cs in _COMPANIONS.items() if dep in present for c in cs)]
    for extra in extras:
        if extra not in present:
            version = _installed(extra)
            pins[extra] = f"{extra}=={version}" if version else extra
    return Requirements(tuple(sorted(pins.values(), key=str.lower)), " + ".join(sources), tuple(sorted(unmapped)))
