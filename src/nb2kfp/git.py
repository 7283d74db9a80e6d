"""The one place nb2kfp runs git: a small wrapper over the git command line (no shell).

Paths given to and returned by these functions are relative to the repository root, with ``/``
separators, as git prints them. Every failure becomes a one-line :class:`RunError`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from nb2kfp.errors import RunError

ZERO_SHA = "0" * 40


def _git(args: list[str], cwd: Path | str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    cmd = ["git", "-c", "core.quotepath=off", *args]
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise RunError("git is not installed (needed to compare with another commit)") from None
    except NotADirectoryError:
        raise RunError(f"git {args[0]}: {cwd} is not a folder") from None
    if check and done.returncode != 0:
        raise RunError(f"git {args[0]}: {_first_line(done.stderr) or f'exit code {done.returncode}'}")
    return done


def _first_line(data: bytes) -> str:
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip().removeprefix("fatal: ").removeprefix("error: ")
    return ""


def is_zero(ref: str | None) -> bool:
    """An empty or all-zeros commit id, as GitLab sends for a new or deleted branch."""
    return not ref or set(ref) == {"0"}


def repo_root(path: Path | str) -> Path:
    """The top folder of the git work tree holding ``path`` (a file or a folder)."""
    start = Path(path)
    folder = start if start.is_dir() else start.parent
    done = _git(["rev-parse", "--show-toplevel"], folder or Path("."), check=False)
    if done.returncode != 0:
        raise RunError(f"{path} is not inside a git repository")
    return Path(done.stdout.decode("utf-8").strip())


def rev_parse(ref: str, cwd: Path | str) -> str:
    """The full commit id ``ref`` names; RunError when it names no commit."""
    done = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], cwd, check=False)
    if done.returncode != 0:
        raise RunError(f"git: {ref!r} names no commit in {cwd}")
    return done.stdout.decode("ascii").strip()


def _resolves(ref: str, cwd: Path | str) -> bool:
    args = ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]
    return _git(args, cwd, check=False).returncode == 0


def show(ref: str, path: str, cwd: Path | str) -> bytes | None:
    """The bytes of file ``path`` (relative to the repository root) at ``ref``; None when absent there."""
    commit = rev_parse(ref, cwd)
    spec = f"{commit}:{path.replace(chr(92), '/').removeprefix('./')}"
    kind = _git(["cat-file", "-t", spec], cwd, check=False)
    if kind.returncode != 0 or kind.stdout.strip() != b"blob":
        return None
    return _git(["cat-file", "blob", spec], cwd).stdout


def tracked_files(ref: str, cwd: Path | str) -> list[str]:
    """Every file in the tree of ``ref``."""
    out = _git(["ls-tree", "-r", "-z", "--name-only", rev_parse(ref, cwd)], cwd).stdout
    return sorted(p.decode("utf-8") for p in out.split(b"\0") if p)


def index_files(cwd: Path | str) -> list[str] | None:
    """Files git tracks in the index at ``cwd`` (paths relative to it); None outside a repository."""
    done = _git(["ls-files", "-z"], cwd, check=False)
    if done.returncode != 0:
        return None
    return sorted(p.decode("utf-8") for p in done.stdout.split(b"\0") if p)


def changed_files(base: str | None, head: str, cwd: Path | str) -> list[str]:
    """Files that differ between ``base`` and ``head`` (deleted ones included; both sides of a rename).

    With no usable base (empty, all zeros as GitLab sends for a new branch, or a commit this clone
    does not have, e.g. in a shallow clone) every file tracked at ``head`` counts as changed.
    """
    if base is None or is_zero(base) or not _resolves(base, cwd):
        return tracked_files(head, cwd)
    out = _git(["diff", "--name-only", "--no-renames", "-z", rev_parse(base, cwd), rev_parse(head, cwd)], cwd).stdout
    return sorted({p.decode("utf-8") for p in out.split(b"\0") if p})
