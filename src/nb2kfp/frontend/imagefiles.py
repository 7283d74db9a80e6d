"""What a step image carries from the notebook's folder into its working directory (README, "Files").

``nb2kfp build`` copies, from the folder of the notebook, into the image's working directory (:data:`WORKDIR`,
where a pod starts): the relative files its steps read (as :mod:`files` sees them: string literals in the usual
reading calls) that no step writes, the local modules and packages they import (``helpers.py``, ``mypkg/``, and
the local ones those import), and what the include file (:data:`INCLUDE_FILE`) names. That file takes gitignore
patterns: a line adds what it matches, a ``!`` line keeps it out (the last matching line wins; a pattern that
matches a folder matches what is in it). Lint asks :func:`kept_out` whether a file a step reads will be there.

Nothing leaves the folder: a pattern with ``..`` and a link to outside the folder are refused, as is a file with a
credential in it (:mod:`nb2kfp.security.secrets`), or more than :func:`limit_bytes` in all (data that size
belongs in a workspace or object storage, not in an image).
"""

from __future__ import annotations

import ast
import hashlib
import os
import posixpath
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nb2kfp.errors import Diagnostic, FilesError, UsageError, warning
from nb2kfp.ir import Pipeline
from nb2kfp.security import secrets

INCLUDE_FILE = ".nb2kfpinclude"
WORKDIR = "/opt/nb2kfp/work"  # the step image's working directory: a pod (and a run --docker step) starts here
LIMIT_ENV = "NB2KFP_IMAGE_FILES_MB"
DEFAULT_LIMIT_MB = 200
NEVER = frozenset(
    {".git", ".nb2kfp", ".ipynb_checkpoints", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache"}
)
_SCANNED_BYTES = 2_000_000  # text files up to this size are scanned for credentials (larger ones are data)


@dataclass(frozen=True)
class Rule:
    pattern: str  # as written
    line: int
    negated: bool
    folder_only: bool
    regex: re.Pattern[str]

    def matches(self, relative: str, *, is_dir: bool) -> bool:
        """Does the rule match ``relative`` (posix, inside the folder) or a folder above it?"""
        parts = relative.split("/")
        for end in range(len(parts), 0, -1):
            path_is_dir = is_dir or end < len(parts)
            if (path_is_dir or not self.folder_only) and self.regex.fullmatch("/".join(parts[:end])):
                return True
        return False


def _regex(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (j := body.find("]", i + 2)) != -1:
            inside = body[i + 1 : j]
            inside = "^" + inside[1:] if inside.startswith("!") else inside
            out.append("[" + inside.replace("\\", "\\\\") + "]")
            i = j + 1
        elif c == "\\" and i + 1 < len(body):
            out.append(re.escape(body[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_rules(text: str, where: str) -> list[Rule]:
    """The include file's rules; a pattern that would leave the folder is a located error."""
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        body = line[1:] if negated else line
        body = body[1:] if body.startswith("\\") and body[1:2] in ("!", "#") else body
        if ".." in body.split("/"):
            raise UsageError(f"{where}: line {number}: {line!r}: '..' leaves the notebook's folder; name files in it")
        folder_only = body.endswith("/")
        body = body.rstrip("/")
        if not body:
            raise UsageError(f"{where}: line {number}: {line!r} names no file")
        anchored = "/" in body
        body = body.lstrip("/")
        regex = ("" if anchored or body.startswith("**") else "(?:.*/)?") + _regex(body)
        rules.append(Rule(line, number, negated, folder_only, re.compile(regex, re.DOTALL)))
    return rules


def rules_of(folder: Path) -> list[Rule]:
    path = folder / INCLUDE_FILE
    if not path.is_file():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot be read: {exc}") from None
    return parse_rules(text, str(path))


def decision(rules: list[Rule], relative: str, *, is_dir: bool = False) -> bool | None:
    """True: a rule adds ``relative``; False: a ``!`` rule keeps it out; None: no rule matches it."""
    found: bool | None = None
    for rule in rules:
        if rule.matches(relative, is_dir=is_dir):
            found = not rule.negated
    return found


def limit_bytes() -> int:
    text = os.environ.get(LIMIT_ENV, "").strip()
    try:
        megabytes = float(text) if text else DEFAULT_LIMIT_MB
    except ValueError:
        raise UsageError(f"{LIMIT_ENV}={text!r}: give a number of megabytes, e.g. 500") from None
    return int(megabytes * 1_000_000)


def inside(relative: str) -> str | None:
    """``relative`` normalised (posix), or None when it leaves the folder or names something never carried."""
    path = posixpath.normpath(relative.replace("\\", "/"))
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or path == "." or any(p in NEVER for p in parts):
        return None
    return path


def kept_out(folder: Path, rules: list[Rule], relative: str) -> str | None:
    """Why the step image will not carry ``relative`` (a file a step reads, in the notebook's folder), or None."""
    path = inside(relative)
    if path is None:
        return "it is outside the notebook's folder (no image carries it)"
    if decision(rules, path, is_dir=(folder / path).is_dir()) is False:
        return f"{INCLUDE_FILE} keeps it out of the step image"
    real = os.path.realpath(folder / path)
    if not _under(real, folder):
        return f"it is a link to {real}, outside the notebook's folder (not copied into the image)"
    return None


def _under(real: str, folder: Path) -> bool:
    root = os.path.realpath(folder)
    return real == root or real.startswith(root + os.sep)


@dataclass(frozen=True)
class Carried:
    """The files a step image carries: (path inside the working directory, file here), sorted."""

    files: tuple[tuple[str, Path], ...]
    local_modules: tuple[str, ...]  # modules and packages beside the notebook that the steps import
    imports: tuple[str, ...]  # top-level modules those local modules import (for the image's requirements)

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for _, p in self.files)

    def digest(self) -> str:
        """A hash of the names, modes and contents (not times): an unchanged folder gives the same image tag."""
        h = hashlib.sha256()
        for name, path in self.files:
            h.update(f"{name}\0{os.access(path, os.X_OK):d}\0".encode())
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            h.update(b"\0")
        return h.hexdigest()


def _walk(folder: Path, start: str) -> Iterator[tuple[str, bool]]:
    """(relative path, is a link) of every file under ``start`` (relative; "" for the folder), links to folders
    included as entries (not followed), the folders in :data:`NEVER` left out."""
    top = folder / start if start else folder
    for root, dirs, names in os.walk(top):
        here = Path(root).relative_to(folder).as_posix()
        prefix = "" if here == "." else here + "/"
        dirs[:] = sorted(d for d in dirs if d not in NEVER and not os.path.islink(os.path.join(root, d)))
        for name in sorted(names):
            yield prefix + name, os.path.islink(os.path.join(root, name))
        for name in sorted(os.listdir(root)):
            full = os.path.join(root, name)
            if name not in NEVER and os.path.islink(full) and os.path.isdir(full):
                yield prefix + name, True


def _reads(pipeline: Pipeline) -> tuple[set[str], set[str]]:
    """The relative paths the notebook's own steps (and its imports/functions cells) read, and those they write."""
    from nb2kfp.frontend import files

    reads: set[str] = set()
    writes: set[str] = set()
    cells = [
        *pipeline.prelude,
        *(c for s in pipeline.steps if s.origin is None and s.component is None for c in s.cells),
    ]
    for cell in cells:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        r, w = files.accesses(cell.index, tree)
        reads.update(p for p, _, _ in r)
        writes.update(p for p, _, _ in w)
    return reads, writes


def _imports_of(source: str) -> set[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def local_module(folder: Path, name: str) -> str | None:
    """``name.py`` or the folder ``name`` beside the notebook (what ``import name`` finds there), or None."""
    if name in NEVER or not name.isidentifier():
        return None
    if (folder / f"{name}.py").is_file():
        return f"{name}.py"
    if (folder / name).is_dir() and any((folder / name).glob("*.py")):
        return name
    return None


def collect(notebook: Path, pipeline: Pipeline) -> Carried:
    """What the step image of ``pipeline`` (compiled from ``notebook``) carries; a located error for a link out
    of the folder, a credential in a file, or more than :func:`limit_bytes` in all."""
    folder = notebook.resolve().parent
    rules = rules_of(folder)
    chosen: dict[str, bool] = {}  # relative path: is a link

    def add_tree(relative: str) -> None:
        if (folder / relative).is_dir() and not (folder / relative).is_symlink():
            for path, link in _walk(folder, relative):
                if decision(rules, path) is not False:
                    chosen[path] = link
        elif decision(rules, relative) is not False:
            chosen[relative] = (folder / relative).is_symlink()

    reads, writes = _reads(pipeline)
    for read in sorted(reads - writes):
        path = inside(read)
        if path is not None and os.path.lexists(folder / path):
            add_tree(path)
    if any(not r.negated for r in rules):
        for path, link in _walk(folder, ""):
            if decision(rules, path) is True:
                chosen[path] = link
    pending = [m for m in pipeline.modules if m not in sys.stdlib_module_names]
    local: set[str] = set()
    imports: set[str] = set()
    while pending:
        name = pending.pop()
        where = local_module(folder, name)
        if where is None or name in local:
            continue
        local.add(name)
        add_tree(where)
        sources = [folder / where] if where.endswith(".py") else sorted((folder / where).rglob("*.py"))
        for source in sources:
            found = _imports_of(source.read_text(encoding="utf-8", errors="replace"))
            imports.update(found)
            pending.extend(found - local)
    chosen.pop(INCLUDE_FILE, None)
    carried = Carried(
        files=tuple((path, _checked(folder, path, link=link)) for path, link in sorted(chosen.items())),
        local_modules=tuple(sorted(local)),
        imports=tuple(sorted(m for m in imports - local if m not in sys.stdlib_module_names)),
    )
    _check_secrets(folder, carried.files)
    _check_size(notebook, folder, carried)
    return carried


def _checked(folder: Path, relative: str, *, link: bool) -> Path:
    path = folder / relative
    if link:
        real = os.path.realpath(path)
        if not _under(real, folder):
            raise FilesError(
                f"{path}: a link to {real}, outside the notebook's folder: step images carry only what is in the "
                f"folder; copy the file here, or keep it out with '!{relative}' in {INCLUDE_FILE}"
            )
        if os.path.isdir(real):
            raise FilesError(
                f"{path}: a link to a folder: step images do not follow them; name the folder it points to, or keep "
                f"it out with '!{relative}' in {INCLUDE_FILE}"
            )
    return path


def _check_secrets(folder: Path, files: Iterable[tuple[str, Path]]) -> None:
    found: list[str] = []
    for relative, path in files:
        if path.stat().st_size > _SCANNED_BYTES:
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            continue
        found.extend(f"  {relative}: line {line}: {kind}" for kind, line in secrets.scan(text))
    if found:
        raise FilesError(
            f"{folder}: files the step image would carry hold credentials (not copied; values not shown):\n"
            + "\n".join(found)
            + f"\nremove them (a step gets a secret with secret:NAME:KEY:ENV), or keep the file out with a '!' "
            f"line in {INCLUDE_FILE}"
        )


def _check_size(notebook: Path, folder: Path, carried: Carried) -> None:
    limit = limit_bytes()
    total = carried.size
    if total <= limit:
        return
    biggest = sorted(carried.files, key=lambda f: -f[1].stat().st_size)[:3]
    names = ", ".join(f"{name} {p.stat().st_size / 1e6:.0f} MB" for name, p in biggest)
    raise FilesError(
        f"{notebook}: the files its step image would carry from {folder} come to {total / 1e6:.0f} MB, over the "
        f"{limit / 1e6:.0f} MB an image should hold (largest: {names}): put data that size in the pipeline's "
        "workspace (kubeflow_notebook.workspace) or in object storage (S3, GCS, MinIO) and read it from there, keep "
        f"it out with a '!' line in {INCLUDE_FILE}, or raise the limit with {LIMIT_ENV}=MEGABYTES"
    )


def check_imports(notebook: str, cells: Iterable[tuple[int, ast.Module]], diags: list[Diagnostic]) -> None:
    """NB103: a module the notebook imports that its step image cannot get: not in the standard library, not
    beside the notebook, not installed here and not named in its requirement files (``nb2kfp build`` installs the
    distributions installed here for what the notebook imports)."""
    from nb2kfp import requirements

    folder = Path(notebook).parent
    named: set[str] | None = None
    told: set[str] = set()
    for cell, tree in cells:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module.split(".")[0]]
            else:
                continue
            for name in names:
                if name in told or local_module(folder, name) is not None:
                    continue
                if named is None:
                    named = requirements.named_in_files(Path(notebook))
                if requirements.is_mappable(name, named):
                    continue
                told.add(name)
                msg = (
                    f"imports {name!r}, which is not installed here, not beside the notebook and not in its "
                    "requirements.txt: its step image will not have it (install it where you run nb2kfp, or add "
                    "its distribution to requirements.txt beside the notebook)"
                )
                diags.append(warning(notebook, msg, "NB103", cell, node.lineno))
