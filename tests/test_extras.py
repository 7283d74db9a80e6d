"""A missing optional dependency is one line naming it and the pip command, exit 1, nothing half-made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES

BLOCKER = Path(__file__).parent / "data" / "block_imports"


def nb2kfp_without(modules: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(BLOCKER), "NB2KFP_TEST_BLOCK": modules}
    return subprocess.run(
        [sys.executable, "-m", "nb2kfp", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


@pytest.mark.parametrize(
    ("blocked", "args", "extra"),
    [
        ("kfp", ["run", "wordcount.ipynb", "--local"], "run"),
        ("cloudpickle", ["run", "wordcount.ipynb"], "run"),
        ("kfp", ["run", "wordcount.ipynb", "--host", "http://127.0.0.1:9"], "run"),
        ("kfp_server_api", ["publish", "wordcount.ipynb", "--host", "http://127.0.0.1:9"], "run"),
        ("starlette", ["serve", "--port", "0"], "serve"),
        ("docker", ["build", "wordcount.ipynb", "--registry", "127.0.0.1:9"], "containers"),
        ("oras", ["model", "build", "wordcount.ipynb", "--image", "127.0.0.1:9/m"], "containers"),
        ("docker", ["run", "wordcount.ipynb", "--docker"], "containers"),
    ],
)
def test_missing_extra_is_one_line(tmp_path: Path, blocked: str, args: list[str], extra: str) -> None:
    shutil.copy(EXAMPLES / "wordcount.ipynb", tmp_path)
    proc = nb2kfp_without(blocked, args, tmp_path)
    assert proc.returncode == 1, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert blocked in lines[0] and f"pip install 'nb2kfp[{extra}]'" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wordcount.ipynb"], "left something behind"


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    """Without the block the same run gets past the import check (so the test above tests the check)."""
    proc = nb2kfp_without("", ["run", "missing.ipynb", "--local"], tmp_path)
    assert "pip install" not in proc.stderr


def test_publish_needs_a_destination(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "wordcount.ipynb", tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "publish", "wordcount.ipynb"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 2 and "--host URL" in proc.stderr and "--manifests DIR" in proc.stderr
    assert "not both" not in proc.stderr
