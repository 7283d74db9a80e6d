"""The one place nb2kfp runs git: a small wrapper over the git command line (no shell).

Paths given to and returned by these functions are relative to the repository root, with ``/``
separators, as git prints them. Every failure becomes a one-line :class:`RunError`; every call is bounded
by GIT_TIMEOUT. The webhook's clones (:func:`fetch_commit`) run git with :func:`remote_env`: no prompts, only
the transport of the server's own GitLab URL, the token as an HTTP header for that URL only (never in a URL, a
command line or a message).
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from nb2kfp.errors import RunError
from nb2kfp.masking import Masker

GIT_TIMEOUT = 600
# never passed on to git (it could hand them to hooks or helpers)
_SECRET_VARIABLES = ("NB2KFP_WEBHOOK_SECRET", "NB2KFP_WEBHOOK_SIGNING_TOKEN", "NB2KFP_GIT_TOKEN")

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}", re.ASCII)
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def check_sha(text: object, what: str) -> str:
    """``text`` when it is a full commit id (40 or 64 lower-case hex digits); else ValueError (value not echoed)."""
    if not isinstance(text, str) or not _SHA.fullmatch(text):
        raise ValueError(f"{what} is not a commit id (40 or 64 hex digits)")
    return text


def check_ref(text: object, what: str = "ref") -> str:
    """``text`` when it is a branch or tag ref git accepts (``git check-ref-format`` rules, under refs/heads/ or
    refs/tags/); else ValueError (value not echoed)."""
    ok = isinstance(text, str) and text.startswith(("refs/heads/", "refs/tags/")) and text.isprintable()
    if ok:
        assert isinstance(text, str)
        ok = not any(0xD800 <= ord(c) <= 0xDFFF for c in text)  # a lone surrogate is no UTF-8 text
        ok = ok and not _REF_FORBIDDEN.search(text) and not text.endswith(("/", "."))
        ok = ok and all(p and not p.startswith(".") and not p.endswith(".lock") for p in text.split("/"))
    if not ok:
        raise ValueError(f"{what} is not a branch or tag ref git accepts")
    return str(text)


_PROJECT_PATH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*", re.ASCII)


def check_server_url(url: object, *, allow_local: bool) -> str:
    """The GitLab a server fetches its projects from (its own setting, never a payload's), without a trailing ``/``:
    https; plain http only to a loopback host; a local folder or ``file://`` only with ``allow_local``; no user
    info, query or fragment; never something git would read as an option. ValueError (short reason) otherwise."""
    from nb2kfp.oci.registry import is_loopback

    if not isinstance(url, str) or not url or url.startswith("-") or re.search(r"[\x00-\x20\x7f]", url):
        raise ValueError("the GitLab URL is missing or malformed")
    base = url.rstrip("/")
    parts = urlsplit(base) if "://" in base else None
    if parts is None:
        if allow_local and base.startswith("/"):
            return base
    elif parts.scheme == "file":
        if allow_local and not parts.netloc:
            return base
    elif parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValueError("the GitLab URL must hold no user name, password, query or fragment")
    elif parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or "")):
        return base
    raise ValueError(
        "the GitLab URL must be https (plain http only to 127.0.0.1/localhost; a local folder or file:// only "
        "with NB2KFP_SERVE_ALLOW_LOCAL_REPOS=1)"
    )


def check_project_path(path: object) -> str:
    """``path`` when it is a GitLab project path (``group/sub/name``: letters, digits, ``_.+-``, no part starting with
    a dot or a dash); else ValueError (value not echoed)."""
    if not isinstance(path, str) or not _PROJECT_PATH.fullmatch(path) or path.endswith((".git", ".atom")):
        raise ValueError("not a GitLab project path (group/name)")
    return path


def _git(
    args: list[str],
    cwd: Path | str,
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    mask: Masker | None = None,
) -> subprocess.CompletedProcess[bytes]:
    cmd = ["git", "-c", "core.quotepath=off", *args]
    shown = mask or Masker()
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, check=False, timeout=GIT_TIMEOUT)
    except FileNotFoundError:
        raise RunError("git is not installed") from None
    except NotADirectoryError:
        raise RunError(f"git {args[0]}: {cwd} is not a folder") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RunError(shown(f"git {args[0]}: {exc}")) from None
    if check and done.returncode != 0:
        raise RunError(shown(f"git {args[0]}: {_last_line(done.stderr) or f'exit code {done.returncode}'}"))
    return done


def _last_line(data: bytes) -> str:
    """What git says last on failure ("fatal: ..."), which names the cause (earlier lines are remote chatter)."""
    lines = [line.strip() for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].removeprefix("fatal: ").removeprefix("error: ") if lines else ""


def remote_env(token: str | None, url: str) -> dict[str, str]:
    """Environment for git against the repository at ``url``: no prompts, only the transport ``url`` uses, no
    redirects, and the token (if any) as an HTTP header that git sends to ``url`` only (``http.<url>.extraHeader``)
    and never logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_VARIABLES)}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", GIT_PROTOCOL_FROM_USER="0")
    scheme = urlsplit(url).scheme if "://" in url else "file"
    env["GIT_ALLOW_PROTOCOL"] = scheme
    config = {"http.followRedirects": "false"}  # a redirect would take the header elsewhere
    if token:
        basic = base64.b64encode(f"oauth2:{token}".encode()).decode()
        config[f"http.{url}.extraHeader"] = f"Authorization: Basic {basic}"
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for n, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{n}"], env[f"GIT_CONFIG_VALUE_{n}"] = key, value
    return env


def fetch_commit(tree: Path, url: str, sha: str, token: str | None) -> str:
    """Fetch the repository at ``url`` into the clone at ``tree`` (made if missing) and check out commit ``sha``,
    cleanly; its full id. ``url`` is built from the server's settings (:func:`check_server_url`,
    :func:`check_project_path`), ``sha`` comes checked (:func:`check_sha`); both reach git after ``--end-of-options``
    where git takes options."""
    env, mask = remote_env(token, url), Masker(token)

    def git(*args: str, check: bool = True) -> str:
        return _git(list(args), tree, check=check, env=env, mask=mask).stdout.decode("utf-8", "replace")

    tree.mkdir(parents=True, exist_ok=True)
    if not (tree / ".git").is_dir():
        git("init", "-q")
    git("remote", "remove", "origin", check=False)
    git("remote", "add", "origin", "--end-of-options", url)
    git(
        "fetch", "-q", "--prune", "--force", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"
    )
    if not has_commit(sha, tree):
        git("fetch", "-q", "--end-of-options", "origin", sha, check=False)  # pushed over since: ask for it
        if not has_commit(sha, tree):
            raise RunError(f"commit {sha[:12]} is no longer in the repository")
    commit = rev_parse(sha, tree)
    git("checkout", "-q", "--force", "--detach", commit)
    git("clean", "-q", "-ffdx")
    return commit


def is_zero(ref: str | None) -> bool:
    """An empty or all-zeros commit id, as GitLab sends for a new or deleted branch: the one test for it."""
    return not ref or set(ref) == {"0"}


def confinement_root(folder: Path) -> Path:
    """Where notebooks compiled from ``folder`` may live (links followed): the git work tree holding it (the
    nearest folder with a ``.git``), else ``folder`` itself. Asks no git: a checkout of another project is no
    further away than a ``..``."""
    folder = folder.resolve()
    return next((c for c in [folder, *folder.parents] if (c / ".git").exists()), folder)


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


def has_commit(ref: str, cwd: Path | str) -> bool:
    """Whether ``ref`` names a commit this repository has."""
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
    if base is None or is_zero(base) or not has_commit(base, cwd):
        return tracked_files(head, cwd)
    out = _git(["diff", "--name-only", "--no-renames", "-z", rev_parse(base, cwd), rev_parse(head, cwd)], cwd).stdout
    return sorted({p.decode("utf-8") for p in out.split(b"\0") if p})
