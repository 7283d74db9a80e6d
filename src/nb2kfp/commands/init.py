"""``nb2kfp init``: add nb2kfp to a repository without clobbering what is there.

Adds (each only when missing): ``[tool.nb2kfp]`` settings (pyproject.toml, else nb2kfp.toml), the
pre-commit hooks, the GitLab CI component include (when ``--ci-component`` names one), and an example
notebook when the repository has none. Shows a unified diff, then asks (or ``--yes``). Every result is
parsed back before anything is written, and files are replaced atomically, keeping their mode. A link out of the
repository (a cloned repository can hold ``.gitignore -> ~/.ssh/id_rsa`` or a ``notebooks`` link to elsewhere) is
refused before anything is read; a link inside it is written through, and stays a link.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from nb2kfp import yamlsafe
from nb2kfp.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

HOOK_IDS = ("nb2kfp-lint", "nb2kfp-compile")
SETTINGS = """[tool.nb2kfp]
# nb2kfp settings: the default step image, KFP caching, tags of other tools to ignore.
image = "python:3.11-slim"
caching = true
ignore_tags = []
"""
_LOCAL_HOOKS = """- repo: local
  hooks:
    - id: nb2kfp-lint
      name: nb2kfp lint
      entry: nb2kfp lint
      language: system
      types: [jupyter]
    - id: nb2kfp-compile
      name: nb2kfp compile
      entry: nb2kfp compile --changed-only --fail-on-write
      language: system
      types: [jupyter]
"""
_REMOTE_HOOKS = """- repo: {repo}
  rev: {rev}
  hooks:
    - id: nb2kfp-lint
    - id: nb2kfp-compile
"""
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", ".tox", ".nb2kfp", "site-packages"}


@dataclass(frozen=True)
class Change:
    path: Path
    old: str | None
    new: str

    def diff(self, root: Path) -> str:
        name = str(self.path.relative_to(root))
        if self.old is None and self.path.suffix == ".ipynb":
            return f"new notebook {name} (a tagged example pipeline)\n"
        old = (self.old or "").splitlines(keepends=True)
        lines = difflib.unified_diff(
            old, self.new.splitlines(keepends=True), "/dev/null" if self.old is None else f"a/{name}", f"b/{name}"
        )
        return "".join(lines)


def _inside(root: Path, name: str | Path) -> Path:
    """``root / name`` when it, its links followed, stays inside ``root``; else UsageError (one line)."""
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()):
        raise UsageError(
            f"{path}: a link out of the repository; nb2kfp init reads and writes only inside it: make it a file "
            "(or folder) of the repository, or add nb2kfp by hand (see README)"
        )
    return path


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None


def _settings(root: Path) -> Change | None:
    project, own = _inside(root, "pyproject.toml"), _inside(root, "nb2kfp.toml")
    if own.exists():
        return None
    text = _read(project)
    if text is None:
        return Change(own, None, SETTINGS.replace("[tool.nb2kfp]\n", ""))
    try:
        if "nb2kfp" in tomllib.loads(text).get("tool", {}):
            return None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{project}: not valid TOML ({exc}); fix it and re-run") from None
    new = text + ("" if text.endswith("\n") or not text else "\n") + ("\n" if text.strip() else "") + SETTINGS
    tomllib.loads(new)
    return Change(project, text, new)


def _indent_block(block: str, indent: int) -> str:
    return "".join((" " * indent + line) if line.strip() else line for line in block.splitlines(keepends=True))


def _pre_commit(root: Path, repo: str | None, rev: str | None) -> Change | None:
    path = _inside(root, ".pre-commit-config.yaml")
    block = _REMOTE_HOOKS.format(repo=repo, rev=rev) if repo else _LOCAL_HOOKS
    text = _read(path)
    if text is None:
        return Change(path, None, "repos:\n" + _indent_block(block, 2))
    try:
        data = yamlsafe.load(text) or {}
    except yamlsafe.YamlError as exc:
        raise UsageError(f"{path}: not valid YAML ({exc}); fix it and re-run") from None
    hooks = [h.get("id") for r in data.get("repos", []) or [] if isinstance(r, dict) for h in r.get("hooks", [])]
    if any(h in HOOK_IDS for h in hooks):
        return None
    new = _insert_into_list(text, "repos", block)
    _check_yaml(path, new, lambda d: any(h.get("id") == HOOK_IDS[0] for r in d["repos"] for h in r["hooks"]))
    return Change(path, text, new)


def _insert_into_list(text: str, key: str, block: str) -> str:
    """Add ``block`` (a YAML list item) at the end of the top-level list ``key``, keeping everything else."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(rf"{key}:\s*(#.*)?$", ln)), None)
    if start is None:
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + f"{key}:\n" + _indent_block(block, 2)
    end = start + 1
    indent = None
    while end < len(lines):
        ln = lines[end]
        if ln.strip() and not ln.startswith((" ", "\t", "-", "#")):
            break
        if indent is None and ln.lstrip().startswith("- "):
            indent = len(ln) - len(ln.lstrip())
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    insert = _indent_block(block, 2 if indent is None else indent)
    if end > 0 and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    return "".join([*lines[:end], insert, *lines[end:]])


def _check_yaml(path: Path, text: str, ok: Callable[[dict], bool]) -> None:  # type: ignore[type-arg]
    try:
        data = yamlsafe.load(text)
        good = isinstance(data, dict) and ok(data)
    except (yamlsafe.YamlError, KeyError, TypeError):
        good = False
    if not good:
        raise UsageError(f"{path}: cannot add nb2kfp safely to this file's layout; add it by hand (see README)")


def _gitlab_ci(root: Path, component: str | None) -> Change | None:
    if not component:
        return None
    path = _inside(root, ".gitlab-ci.yml")
    item = f"- component: {component}\n"
    text = _read(path)
    if text is None:
        return Change(path, None, "include:\n" + _indent_block(item, 2))
    if component.split("@")[0] in text:
        return None
    if re.search(r"^include:[ \t]*[^\s#]", text, re.MULTILINE):
        raise UsageError(f"{path}: `include:` is a single value; make it a list and re-run")
    new = _insert_into_list(text, "include", item)
    _check_yaml(path, new, lambda d: any(isinstance(i, dict) and i.get("component") == component for i in d["include"]))
    return Change(path, text, new)


def _example(root: Path) -> Change | None:
    for path in root.rglob("*.ipynb"):
        if not (_SKIP_DIRS & set(path.relative_to(root).parts)) and ".ipynb_checkpoints" not in path.parts:
            return None
    text = resources.files("nb2kfp.commands").joinpath("example_pipeline.ipynb").read_text(encoding="utf-8")
    _inside(root, "notebooks")
    return Change(_inside(root, "notebooks/example_pipeline.ipynb"), None, text)


def _gitignore(root: Path) -> Change | None:
    """Run folders, built specs and serve data live in .nb2kfp/: keep them out of git."""
    path = _inside(root, ".gitignore")
    text = _read(path)
    if text is not None and any(
        line.strip() in (".nb2kfp", ".nb2kfp/", "/.nb2kfp", "/.nb2kfp/") for line in text.splitlines()
    ):
        return None
    old = text or ""
    new = old + ("\n" if old and not old.endswith("\n") else "") + "# nb2kfp's local runs and outputs\n.nb2kfp/\n"
    return Change(path, text, new)


def plan(root: Path, hooks_repo: str | None, hooks_rev: str | None, ci_component: str | None) -> list[Change]:
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    if bool(hooks_repo) != bool(hooks_rev):
        raise UsageError("--hooks-repo and --hooks-rev go together")
    found = [
        _settings(root),
        _pre_commit(root, hooks_repo, hooks_rev),
        _gitlab_ci(root, ci_component),
        _gitignore(root),
        _example(root),
    ]
    return [c for c in found if c is not None]


def run(
    root: Path,
    changes: list[Change],
    *,
    yes: bool,
    dry_run: bool,
    confirm: Callable[[], bool],
    report: Callable[[str], None],
) -> int:
    from nb2kfp.atomic import write_text

    if not changes:
        report(f"{root}: nb2kfp is already set up; nothing to change")
        return 0
    for change in changes:
        report(change.diff(root))
    if dry_run:
        return 0
    if not yes and not confirm():
        report("nothing changed")
        return 1
    for change in changes:
        # checked again just before writing; a link inside the repository stays a link (its target is written)
        write_text(_inside(root, change.path.relative_to(root)).resolve(), change.new)
        report(f"{'updated' if change.old is not None else 'created'} {change.path.relative_to(root)}")
    return 0
