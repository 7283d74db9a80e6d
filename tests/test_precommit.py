"""The pre-commit hooks, run by the real pre-commit framework (`try-repo` of this checkout).

Both `try-repo` and a user's `.pre-commit-config.yaml` pointing at this repository are exercised, at
`HEAD`: the committed hooks and code (what CI's clean clone has); uncommitted changes in a developer's
checkout are not part of this test. `try-repo` builds its hook environment afresh on every call, so the
other cases go through a config and a module-wide PRE_COMMIT_HOME, where pre-commit caches it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT, require
from nbfactory import write

pytestmark = pytest.mark.slow
PRE_COMMIT = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(EXAMPLES / "wordcount.ipynb", tmp_path / "good.ipynb")
    write(tmp_path / "bad.ipynb", [(["step:a"], "x = 1"), (["step:b", "prev:aa"], "print(x)")])
    yield tmp_path


def _env(home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(home),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    env.pop("VIRTUAL_ENV", None)
    return env


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def hook(repo: Path, home: Path, hook_id: str, *files: str) -> subprocess.CompletedProcess[str]:
    """`pre-commit run HOOK --files ...` with this repository, at HEAD, in the user's config."""
    require(Path(PRE_COMMIT).exists(), "pre-commit is not installed")
    config = f"repos:\n- repo: {ROOT}\n  rev: {_head()}\n  hooks:\n  - id: nb2kfp-lint\n  - id: nb2kfp-compile\n"
    (repo / ".pre-commit-config.yaml").write_text(config)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    return subprocess.run(
        [PRE_COMMIT, "run", hook_id, "--files", *files],
        cwd=repo,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_try_repo_runs_the_lint_hook(repo: Path, pre_commit_home: Path) -> None:
    require(Path(PRE_COMMIT).exists(), "pre-commit is not installed")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    command = [PRE_COMMIT, "try-repo", str(ROOT), "nb2kfp-lint", "--ref", _head(), "--files", "good.ipynb", "bad.ipynb"]
    proc = subprocess.run(command, cwd=repo, env=_env(pre_commit_home), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "bad.ipynb: cell 2: error: prev:aa names no step" in proc.stdout
    assert "good.ipynb:" not in proc.stdout  # a clean notebook gets no diagnostics


def test_lint_hook_passes_good_and_fails_bad_notebooks(repo: Path, pre_commit_home: Path) -> None:
    good = hook(repo, pre_commit_home, "nb2kfp-lint", "good.ipynb")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = hook(repo, pre_commit_home, "nb2kfp-lint", "good.ipynb", "bad.ipynb")
    assert bad.returncode == 1
    assert "bad.ipynb: cell 2: error: prev:aa names no step (did you mean prev:a?)" in bad.stdout


def test_compile_hook_writes_missing_or_stale_output_and_fails_once(repo: Path, pre_commit_home: Path) -> None:
    out = repo / "good.pipeline.yaml"
    first = hook(repo, pre_commit_home, "nb2kfp-compile", "good.ipynb")
    assert first.returncode == 1 and out.exists(), first.stdout
    assert "good.ipynb -> good.pipeline.yaml (stage it)" in first.stdout
    second = hook(repo, pre_commit_home, "nb2kfp-compile", "good.ipynb")
    assert second.returncode == 0, second.stdout
    data = json.loads((repo / "good.ipynb").read_text())
    data["cells"][2]["source"] = ["min_length = 4\n", "top_n = 5\n", "author = 'x'\n", "stopwords = []\n"]
    (repo / "good.ipynb").write_text(json.dumps(data))
    stale = hook(repo, pre_commit_home, "nb2kfp-compile", "good.ipynb")
    assert stale.returncode == 1 and "min_length: int [Default: 4]" in out.read_text()
    broken = hook(repo, pre_commit_home, "nb2kfp-compile", "bad.ipynb")
    assert broken.returncode == 1 and not (repo / "bad.pipeline.yaml").exists()
    assert "cell 2: error: prev:aa names no step" in broken.stdout


def test_the_projects_own_hook_config_is_valid() -> None:
    """.pre-commit-config.yaml (for nb2kfp's developers) is a valid config whose hooks run make check's tools."""
    root = Path(__file__).resolve().parents[1]
    config = root / ".pre-commit-config.yaml"
    checked = subprocess.run(
        [sys.executable, "-m", "pre_commit", "validate-config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = config.read_text(encoding="utf-8")
    assert all(f"id: {hook}" in text for hook in ("ruff", "ruff-format", "mypy", "nb2kfp-lint"))
