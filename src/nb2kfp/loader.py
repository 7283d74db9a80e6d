"""Where the front end reads its files: the work tree, or a commit of the git repository.

Every file compiling a notebook reads (the notebook, the notebooks its ``notebook:`` cells include, the
``nb2kfp.toml`` / ``pyproject.toml`` settings) goes through one :class:`Loader`, so a notebook compiled as of
another commit (``plan --against REF``, the merge request note's plan) reads all of them as of that commit.
Paths stay work-tree paths (messages show them as usual); :class:`AtRef` maps them into the commit's tree.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Protocol


class Loader(Protocol):
    def read(self, path: Path) -> bytes:
        """The file's bytes; OSError (FileNotFoundError when there is no such file) as reading it from disk would."""

    def is_file(self, path: Path) -> bool:
        """Whether ``path`` is a file (not a folder) there."""

    def files(self, folder: Path) -> list[Path]:
        """The files directly in ``folder`` there, sorted (none when there is no such folder)."""


class WorkTree:
    """The files on disk."""

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def is_file(self, path: Path) -> bool:
        return path.is_file()

    def files(self, folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


WORK_TREE = WorkTree()


class AtRef:
    """The files of commit ``ref`` of the git repository holding ``start``; paths outside it do not exist."""

    def __init__(self, ref: str, start: Path) -> None:
        from nb2kfp import git  # git (and subprocess) only when a commit is read: compile --check stays light

        self.root = git.repo_root(start).resolve()
        self.commit = git.rev_parse(ref, self.root)  # RunError when ``ref`` names no commit
        self._files: dict[str, bytes | None] = {}
        self._tree: list[str] | None = None  # every file of the commit, when a folder was listed

    def _blob(self, path: Path) -> bytes | None:
        try:
            relative = path.resolve().relative_to(self.root).as_posix()
        except (OSError, ValueError):
            return None
        if relative not in self._files:
            from nb2kfp import git

            self._files[relative] = git.show(self.commit, relative, self.root)
        return self._files[relative]

    def read(self, path: Path) -> bytes:
        data = self._blob(path)
        if data is None:
            raise FileNotFoundError(errno.ENOENT, f"no such file at commit {self.commit[:12]}", str(path))
        return data

    def is_file(self, path: Path) -> bool:
        return self._blob(path) is not None

    def files(self, folder: Path) -> list[Path]:
        try:
            relative = folder.resolve().relative_to(self.root).as_posix()
        except (OSError, ValueError):
            return []
        if self._tree is None:
            from nb2kfp import git

            self._tree = git.tracked_files(self.commit, self.root)
        prefix = "" if relative == "." else relative + "/"
        names = [p[len(prefix) :] for p in self._tree if p.startswith(prefix)]
        return sorted(folder / n for n in names if n and "/" not in n)
