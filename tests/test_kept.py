"""Step processes kept warm between runs (local_run/kept.py, local_run/waiting.py): named in ``ps`` and in ``nb2kfp
runs``, bounded by free memory and a memory budget, and ``runs clean`` stops the current project's only (``--all``:
every one). Each test keeps its processes in a folder of its own (``XDG_RUNTIME_DIR``), apart from other runs'."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nb2kfp.local_run import waiting
from nbfactory import write

pytestmark = pytest.mark.slow


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """A short private folder for the sockets (their paths must stay under 108 bytes); its processes stop after."""
    folder = Path(tempfile.mkdtemp(prefix="kp", dir="/tmp"))
    yield folder
    env = {**os.environ, "XDG_RUNTIME_DIR": str(folder)}
    command = [sys.executable, "-m", "nb2kfp", "runs", "clean", "--keep", "100", "--all"]
    subprocess.run(command, env=env, cwd=folder, capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


def project(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "pyproject.toml").write_text("[project]\nname = 'p'\n")
    return write(
        folder / "nb.ipynb",
        [
            (["imports"], "import decimal"),
            (["step:first"], "x = decimal.Decimal(1)"),
            (["step:second", "prev:first"], "y = x + decimal.Decimal(1)"),
        ],
    )


def nb2kfp(folder: Path, runtime: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "CI"}
    environment.update({"XDG_RUNTIME_DIR": str(runtime), "NB2KFP_WARM_KEEP": "120", **env})
    command = [sys.executable, "-m", "nb2kfp", *args]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=folder, env=environment, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def kept_in(runtime: Path) -> list[dict[str, object]]:
    """The kept processes of runs made with ``runtime`` as their XDG_RUNTIME_DIR, as waiting.processes() lists them."""
    mine = []
    for p in waiting.processes():
        try:
            environ = Path(f"/proc/{p['pid']}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"XDG_RUNTIME_DIR={runtime}".encode() in environ:
            mine.append(p)
    return mine


def wait_for(found: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while not found() and time.monotonic() < deadline:
        time.sleep(0.2)
    return found()


def test_kept_processes_are_named_in_ps_and_runs_and_clean_stops_this_projects_only(
    tmp_path: Path, runtime_dir: Path
) -> None:
    a, b = project(tmp_path, "a"), project(tmp_path, "b")
    for nb in (a, b):
        assert "warm for the next run" in nb2kfp(nb.parent, runtime_dir, "run", nb.name, "--local").stderr
    assert wait_for(lambda: len(kept_in(runtime_dir)) == 4)
    for p in kept_in(runtime_dir):
        argv = Path(f"/proc/{p['pid']}/cmdline").read_bytes().split(b"\0")[:-1]
        step, folder = str(p["step"]).encode(), str(p["project"]).encode()
        assert argv[1:] == [b"-m", b"nb2kfp.local_run.waiting", step, folder, b"kept"]
    assert {(p["project"], p["step"]) for p in kept_in(runtime_dir)} == {
        (str(nb.parent), step) for nb in (a, b) for step in ("first", "second")
    }

    listed = nb2kfp(a.parent, runtime_dir, "runs").stdout
    assert "kept warm: step second (pid" in listed and "kept warm: step first (pid" in listed

    cleaned = nb2kfp(a.parent, runtime_dir, "runs", "clean", "--keep", "5").stdout
    assert f"stopped 2 step processes kept warm for the next run (of {a.parent})" in cleaned
    assert wait_for(lambda: {p["project"] for p in kept_in(runtime_dir)} == {str(b.parent)}, 30)

    cleaned = nb2kfp(a.parent, runtime_dir, "runs", "clean", "--keep", "5", "--all").stdout
    assert "stopped 2 step processes kept warm for the next run (of every project)" in cleaned
    assert wait_for(lambda: not kept_in(runtime_dir), 30)


def test_no_process_is_kept_when_free_memory_is_low_or_over_the_budget(tmp_path: Path, runtime_dir: Path) -> None:
    nb = project(tmp_path, "a")
    low = nb2kfp(nb.parent, runtime_dir, "run", nb.name, "--local", "--no-cache", NB2KFP_WARM_MIN_FREE="100000000")
    assert "warm for the next run" not in low.stderr
    assert not kept_in(runtime_dir)

    nb2kfp(nb.parent, runtime_dir, "run", nb.name, "--local", "--no-cache", NB2KFP_WARM_MEMORY="1")
    assert wait_for(lambda: not kept_in(runtime_dir), 30)  # over the budget once imported: each leaves
    result = json.loads(nb2kfp(nb.parent, runtime_dir, "run", nb.name, "--local", "--json").stdout)
    assert result["status"] == "succeeded"
