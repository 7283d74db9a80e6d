"""Incremental local runs: kfp.local's own task cache (``local.init(enable_caching=True, cache_root=...)``),
with the key completed and cache hits reported.

kfp.local keys a task on its component name, image, command, arguments (parameter values, and input
artifacts by URI and metadata) and the container's env. That covers a step's code (the step spec is in
its args), its parameters, the nb2kfp runtime (its SHA-256 is in every step's command) and its inputs: an
upstream step that ran again wrote new artifact URIs, so everything below it misses. It does not cover
what SubprocessRunner steps really run on (this interpreter and its installed packages: the spec's image
string is not them) nor the files next to the notebook that a step may read: :class:`StepCache` mixes
both into every key. Entries refer to the artifacts of the run that made them (kfp.local treats an entry
whose files are gone as a miss), signed with the cache's own artifact key (:func:`artifact_key`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nb2kfp import __version__
from nb2kfp.errors import UsageError
from nb2kfp.local_run import kfp_local
from nb2kfp.local_run.records import RESULT

KEY_FILE = "artifact.key"
_SKIPPED = {"__pycache__", "node_modules"}  # and hidden folders (.git, .nb2kfp, .venv, .ipynb_checkpoints)
_MAX_FILES = 20_000
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


def folder_state(seed: Path, notebook: Path) -> str:
    """Names, sizes and modification times of the files next to the notebook (which steps see in their
    working directory), the notebook itself and run folders (``--run-dir`` ones, with a ``result.json``)
    left out: a data file that changes re-runs the steps."""
    lines: list[str] = []
    skip = notebook.resolve()
    for root, dirs, files in os.walk(seed):
        dirs[:] = sorted(d for d in dirs if not _left_out(Path(root) / d))
        for name in sorted(files):
            path = Path(root) / name
            if path.resolve() == skip:
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            lines.append(f"{path.relative_to(seed)}\0{st.st_size}\0{st.st_mtime_ns}")
            if len(lines) >= _MAX_FILES:
                return "\n".join([*lines, "..."])
    return "\n".join(lines)


def _left_out(folder: Path) -> bool:
    return folder.name.startswith(".") or folder.name in _SKIPPED or (folder / RESULT).is_file()


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


def _check_private(path: Path, st: os.stat_result, folder: bool) -> None:
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


class StepCache(kfp_local.LocalCache):  # type: ignore[misc]
    """kfp.local's LocalCache with ``extra`` (environment, files) in every key; ``on_hit`` hears of hits."""

    def __init__(self, cache_root: str, extra: str, on_hit: Hit) -> None:
        super().__init__(cache_root=cache_root)
        self.extra = hashlib.sha256(extra.encode("utf-8")).hexdigest()
        self.on_hit = on_hit
        self._asked = threading.local()  # the component whose key was computed last, in this thread

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
        self._asked.component = component_name
        return hashlib.sha256(f"{base}\0{self.extra}".encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = super().get(key)
        if found is not None:
            self.on_hit(getattr(self._asked, "component", ""), found)
        return found


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
