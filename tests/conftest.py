from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nbfactory import Cell, write

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IN_CI = os.environ.get("CI", "").lower() == "true"
# The runs of the suite keep no step process warm for a next run (local_run/kept.py); its own tests ask for it.
os.environ["NB2KFP_WARM_KEEP"] = "0"
# Kept processes share one memory budget per user, counted over all of the user's (another project's runs on this
# machine too): the tests that keep processes must not depend on those, so theirs is unbounded here; the tests of the
# budget itself set it (tests/test_kept.py).
os.environ["NB2KFP_WARM_MEMORY"] = "1000000"
os.environ["NB2KFP_WARM_MIN_FREE"] = "0"


def require(condition: bool, reason: str) -> None:
    """Skip when an external part is missing, but fail under CI, which must provide it."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


GIT_ENV = {  # commits with a fixed author, untouched by the machine's git configuration
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd`` (new repositories on branch main); its stdout, stripped. Raises on failure."""
    done = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture
def make_nb(tmp_path: Path) -> Callable[..., Path]:
    def make(cells: list[Cell], name: str = "nb.ipynb", metadata: dict[str, Any] | None = None) -> Path:
        return write(tmp_path / name, cells, metadata)

    return make


@pytest.fixture
def example_copy(tmp_path: Path) -> Callable[[str], Path]:
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copy(EXAMPLES / name, target)
        return target

    return copy


def run_local(nb: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nb2kfp run NB --local --json ARGS` in the notebook's folder, as users call it."""
    return subprocess.run(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--json", *args],
        capture_output=True,
        text=True,
        cwd=nb.parent,
        timeout=600,
    )


def run_local_json(nb: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """`run_local`, and the run's `--json` record (empty when the run printed none)."""
    proc = run_local(nb, *args)
    return proc, json.loads(proc.stdout) if proc.stdout.strip() else {}


@pytest.fixture
def engine() -> Any:
    """A Docker client with an engine answering and the test base image named (.ci/services.sh)."""
    require(bool(os.environ.get("NB2KFP_TEST_BASE_IMAGE")), "no NB2KFP_TEST_BASE_IMAGE: run .ci/services.sh")
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception:  # the docker package missing or no engine answering: both mean no engine for this test
        client = None
    require(client is not None, "no Docker engine answers")
    return client


@pytest.fixture
def private_kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """This test's kept step processes in a folder of their own (``XDG_RUNTIME_DIR``, short: a socket's path must
    stay under 108 bytes): the test, and the runs it starts, see and stop only those, never another project's or
    another test's; they are stopped after it."""
    from nb2kfp.local_run import kept

    folder = Path(tempfile.mkdtemp(prefix="kp", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    yield folder
    kept.stop_all()
    shutil.rmtree(folder, ignore_errors=True)
