"""Incremental local runs: kfp.local's own task cache (``local.init(enable_caching=True, cache_root=...)``),
with the key completed and cache hits reported.

kfp.local keys a task on its component name, image, command, arguments (parameter values, and input
artifacts by URI and metadata) and the container's env. That covers a step's code (the step spec is in
its args), its parameters, the nb2kfp runtime (its SHA-256 is in every step's command) and its inputs: an
upstream step that ran again wrote new artifact URIs, so everything below it misses. It does not cover
what SubprocessRunner steps really run on (this interpreter and its installed packages: the spec's image
string is not them) nor the files next to the notebook that a step reads: :class:`StepCache` mixes both in.

Files, precisely: each step records what it opened to read and which folders it listed next to the notebook
(``runtime/step.py`` ``_Reads``, an audit hook; into ``<run>/reads/<step>.json``). The cache keeps, per key of
kfp.local (plus the environment), the list its step read last time (``deps/<key>.json``), and the entry's key
adds those files' contents (SHA-256, remembered by size, times and inode in ``digests.json``) and the folders'
listings as they are now. So a new file beside the notebook re-runs no step unless a step lists that folder
(or had looked for that name); an edited ``data.csv`` re-runs the steps that read it, and those below them.
Files outside the notebook's folder (absolute paths elsewhere, ``~/.config``) are not part of any key, as
before; nor is what native code reads without Python's ``open`` (pyarrow's, HDF5's own readers) nor a file a
step only tests (``os.path.exists``) without opening it: README, "Local runs at notebook speed".

Entries refer to the artifacts of the run that made them (kfp.local treats an entry whose files are gone as a
miss), signed with the cache's own artifact key (:func:`artifact_key`). The cache is the project's
(:func:`nb2kfp.local_run.records.cache_folder`), whichever folder a run starts from.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import secrets
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nb2kfp import __version__
from nb2kfp.atomic import write_text
from nb2kfp.errors import UsageError
from nb2kfp.local_run import kfp_local
from nb2kfp.runtime.step import NOT_SEEDED

KEY_FILE = "artifact.key"
READS = "reads"  # in a run folder: what each step read next to the notebook (``<step>.json``)
_DEPS = "deps"  # in the cache: per kfp.local key, what its step read last time
_DIGESTS = "digests.json"  # in the cache: the SHA-256 of files read, by path, size, times and inode
Hit = Callable[[str, dict[str, Any]], None]  # (component name, cached outputs)


def environment() -> str:
    """What a SubprocessRunner step runs on: this interpreter, its installed distributions, nb2kfp.
    Distributions by their metadata folders' names (``name-version.dist-info``): reading every one's
    metadata, as ``importlib.metadata`` does, took 0.3-0.7 s of each run."""
    return "\n".join([f"nb2kfp {__version__}", sys.executable, sys.version, *_distributions()])


def _distributions() -> list[str]:
    found: set[str] = set()
    for entry in sys.path:
        with contextlib.suppress(OSError), os.scandir(entry or ".") as items:
            found.update(f"{entry}/{i.name}" for i in items if i.name.endswith((".dist-info", ".egg-info")))
    return sorted(found)


def has_entries(root: Path) -> bool:
    """Whether the cache holds any task's result (kfp.local's entries: ``KEY.json``)."""
    return any(root.glob("*.json"))


def artifact_key(root: Path) -> str:
    """The key cached artifacts are signed with (nb2kfp.runtime.step.ARTIFACT_KEY_ENV): one per cache, made
    on first use; a run that does not cache uses a fresh key of its own. Whoever can replace or read the key
    can sign values that steps unpickle, so, as ssh does with its keys, the cache folder must be the user's own
    and writable by nobody else (made 0700), the key the user's own regular file, private (made 0600); anything
    else is refused (UsageError), read through descriptors so that nothing is swapped after the check."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o700)
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:  # a link (ELOOP) or no folder (ENOTDIR)
        raise UsageError(f"{root}: the step cache must be a folder of yours, not a link; {_FIX}") from exc
    try:
        _check_private(root, os.fstat(folder), folder=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder)
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_hex(32))
        path = root / KEY_FILE
        try:
            fd = os.open(KEY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
        except OSError as exc:
            raise UsageError(f"{path}: the cache's key must be a file of yours, not a link; {_FIX}") from exc
        with os.fdopen(fd, encoding="ascii") as fh:
            _check_private(path, os.fstat(fd), folder=False)
            text = fh.read(256).strip()
        if len(text) < 32:  # an empty file (a run killed between create and write): start a new key
            os.unlink(KEY_FILE, dir_fd=folder)
            return artifact_key(root)
        return text
    finally:
        os.close(folder)


_FIX = "remove it (`nb2kfp runs clean --cache`) and run again: a new private cache is made"


def _check_private(path: Path, st: os.stat_result, *, folder: bool) -> None:
    """Refuses (one line naming ``path`` and the fix) what is not the user's own folder (writable by nobody else)
    or regular file (no access for group or others)."""
    kind, forbidden, who = ("folder", 0o022, "writable") if folder else ("file", 0o077, "readable or writable")
    if not (stat.S_ISDIR(st.st_mode) if folder else stat.S_ISREG(st.st_mode)):
        raise UsageError(f"{path}: not a {kind}; {_FIX}")
    if st.st_uid != os.geteuid():
        raise UsageError(f"{path}: owned by uid {st.st_uid}, not by you: others could sign artifacts; {_FIX}")
    if st.st_mode & forbidden:
        raise UsageError(
            f"{path}: {who} by group or others (mode {stat.S_IMODE(st.st_mode):04o}): others could sign artifacts; "
            f"{_FIX}"
        )


class FileState:
    """What the files and folders a step read next to the notebook (``seed``) hold now: each file's SHA-256 (kept
    in ``digests.json`` with its size, times and inode, so an unchanged file is not read again), each folder's
    listing."""

    def __init__(self, seed: Path, digests: Path) -> None:
        self.seed, self.path = seed.resolve(), digests
        try:
            known = json.loads(digests.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        self.known: dict[str, list[Any]] = known if isinstance(known, dict) else {}
        self.changed = False
        self._lock = threading.Lock()

    def of(self, reads: dict[str, list[Any]]) -> str:
        """One line per file, folder and pattern of ``reads`` (``{"files": [...], "listed": [...], "globbed":
        [[pattern, recursive], ...]}``, relative to the notebook's folder)."""
        lines = [f"f {name}\0{self.digest(name)}" for name in reads.get("files", [])]
        lines += [f"l {name}\0{self.listing(name)}" for name in reads.get("listed", [])]
        lines += [
            f"g {pattern}\0{deep}\0{self.matches(pattern, recursive=deep)}"
            for pattern, deep in reads.get("globbed", [])
        ]
        return "\n".join(lines)

    def _inside(self, name: str) -> Path | None:
        path = os.path.normpath(self.seed / name)
        return Path(path) if path == str(self.seed) or path.startswith(f"{self.seed}{os.sep}") else None

    def digest(self, name: str) -> str:
        path = self._inside(name)
        try:
            st = os.stat(path) if path is not None else None
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            return "folder" if st is not None and stat.S_ISDIR(st.st_mode) else "absent"
        key, seen = str(path), [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
        with self._lock:
            known = self.known.get(key)
        if isinstance(known, list) and known[:-1] == seen:
            return str(known[-1])
        sha = hashlib.sha256()
        try:
            with open(key, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    sha.update(chunk)
        except OSError:
            return "unreadable"
        with self._lock:
            self.known[key] = [*seen, sha.hexdigest()]
            self.changed = True
        return sha.hexdigest()

    def listing(self, name: str) -> str:
        path = self._inside(name)
        try:
            names = sorted(os.listdir(path)) if path is not None else None
        except OSError:
            names = None
        if names is None:
            return "absent"
        if name == ".":  # what a step's folder shows of the notebook's (runtime/step.py seeds it)
            names = [n for n in names if n not in NOT_SEEDED]
        return hashlib.sha256("\0".join(names).encode("utf-8", "surrogateescape")).hexdigest()

    def matches(self, pattern: str, *, recursive: bool) -> str:
        """The names ``glob.glob(pattern)`` finds from the notebook's folder, as a step's folder shows them."""
        found = sorted(glob.glob(pattern, root_dir=self.seed, recursive=recursive))
        shown = [name for name in found if Path(name).parts[0] not in NOT_SEEDED]
        return hashlib.sha256("\0".join(shown).encode("utf-8", "surrogateescape")).hexdigest()

    def save(self) -> None:
        if self.changed:
            with self._lock:
                known = {k: v for k, v in self.known.items() if os.path.exists(k)}
            write_text(self.path, json.dumps(known))


class StepCache(kfp_local.LocalCache):  # type: ignore[misc]
    """kfp.local's LocalCache with ``extra`` (the environment) and the files each step read (:class:`FileState`)
    in every key; ``on_hit`` hears of hits. ``reads`` is the run's folder of what its steps read, ``step_of`` the
    step a component is (None: nb2kfp's own task, which reads nothing there)."""

    def __init__(
        self,
        cache_root: str,
        extra: str,
        on_hit: Hit,
        seed: Path,
        reads: Path,
        step_of: Callable[[str], str | None],
    ) -> None:
        super().__init__(cache_root=cache_root)
        self.extra = hashlib.sha256(extra.encode("utf-8")).hexdigest()
        self.on_hit = on_hit
        self.reads, self.step_of = reads, step_of
        self.files = FileState(seed, Path(cache_root) / _DIGESTS)
        self._asked = threading.local()  # the component and base key computed last, in this thread

    def compute_key(
        self,
        component_name: str,
        image: str,
        full_command: list[str],
        arguments: dict[str, Any],
        env_vars: dict[str, str] | None = None,
        custom_cache_key: str | None = None,
    ) -> str:
        base = super().compute_key(component_name, image, full_command, arguments, env_vars, custom_cache_key)
        base = hashlib.sha256(f"{base}\0{self.extra}".encode()).hexdigest()
        try:
            reads = json.loads((Path(self.cache_root) / _DEPS / f"{base}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            reads = None
        self._asked.component, self._asked.base, self._asked.reads = component_name, base, reads
        if reads is None:
            return hashlib.sha256(f"{base}\0never ran".encode()).hexdigest()
        return self._key(base, reads)

    def _key(self, base: str, reads: dict[str, list[Any]]) -> str:
        return hashlib.sha256(f"{base}\0{self.files.of(reads)}".encode("utf-8", "surrogateescape")).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = super().get(key)
        if found is not None:
            self.on_hit(getattr(self._asked, "component", ""), found)
        return found

    def put(self, key: str, outputs: dict[str, Any]) -> None:  # noqa: ARG002 - kfp.local's cache API; the key is the reads'
        """Under the key of the files the step read in this run (its own record), which the next runs look up."""
        base, step = self._asked.base, self.step_of(self._asked.component)
        reads: dict[str, list[Any]] = {"files": [], "listed": [], "globbed": []}
        if step is not None:
            try:
                reads = json.loads((self.reads / f"{step}.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return  # a step that said nothing of what it read: not cached
        if reads != self._asked.reads:
            write_text(Path(self.cache_root) / _DEPS / f"{base}.json", json.dumps(reads))
        super().put(self._key(base, reads), outputs)


def used(cache: StepCache | None) -> contextlib.AbstractContextManager[None]:
    """kfp.local's tasks look their results up in ``cache`` (None: no caching) while inside."""
    return kfp_local.caching(cache)


def output_folders(outputs: dict[str, Any]) -> set[Path]:
    """The task folders a cached task's output artifacts live in (``<run>/artifacts/<id>/<task>``)."""
    folders = set()
    for value in outputs.values():
        for artifact in value if isinstance(value, list) else [value]:
            uri = getattr(artifact, "uri", "")
            if uri and not kfp_local.is_remote_uri(uri):
                folders.add(Path(uri).parent)
    return folders
