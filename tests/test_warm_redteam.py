"""Red-team tests of steps started ahead and kept warm (local_run/ahead.py, local_run/kept.py).

Each test shows a way a step run by a kept (or started-ahead) process behaves differently from a fresh one.
Written by a red-team pass as xfail(strict=True) reproductions of real differences; each now passes: fixed, or
(umask, limits, a changed file or sys.path folder) the kept process steps aside and the step starts afresh.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import time
from pathlib import Path
from typing import Any

import pytest

from clirun import Make
from nb2kfp.local_run import kept
from test_warm import kept_run_process

KEPT = "int(open('/proc/self/cmdline', 'rb').read().split(bytes(1))[2:6:3] == [b'nb2kfp.local_run.waiting', b'kept'])"


@pytest.fixture(autouse=True)
def no_kept(private_kept: Path) -> Path:
    """Every test here keeps its processes apart from other runs' (conftest.private_kept)."""
    return private_kept


def _run(
    nb: Path, *args: str, umask: int | None = None, core: int | None = None, check: bool = True, **env: str
) -> tuple[int, dict[str, Any]]:
    def setting() -> None:  # what the shell that starts nb2kfp may set: its umask, its limits
        if umask is not None:
            os.umask(umask)
        if core is not None:
            resource.setrlimit(resource.RLIMIT_CORE, (core, resource.getrlimit(resource.RLIMIT_CORE)[1]))

    proc = kept_run_process(nb, *args, preexec=setting, **env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else {})


def _edit(nb: Path, n: int) -> None:
    """A new value in the last step's cell: it runs again (the steps above it are cached)."""
    notebook = json.loads(nb.read_text())
    for cell in notebook["cells"]:
        if "step:b" in cell["metadata"].get("tags", []):
            cell["source"] = re.sub(r"edit = \d+", f"edit = {n}", "".join(cell["source"]))
    nb.write_text(json.dumps(notebook))


def _two_steps(make_nb: Make, imports: str, last: str, metrics: str) -> Path:
    return make_nb(
        [
            (["imports"], imports),
            (["step:a"], "x = 1"),
            (["step:b", "prev:a"], f"edit = 0\nb_kept = {KEPT}\n{last}"),
            (["pipeline-metrics"], f"print(b_kept)\n{metrics}"),
        ]
    )


def _log_of(record: dict[str, Any]) -> str:
    return (Path(record["run_dir"]) / "run.log").read_text()


@pytest.mark.slow
def test_redteam_kept_step_uses_the_umask_of_this_run(make_nb: Make) -> None:
    nb = _two_steps(make_nb, "import os", "mask = os.umask(0o22)\nos.umask(mask)", "print(mask)")
    _, first = _run(nb, umask=0o022)
    assert first["metrics"]["mask"] == 0o022
    _edit(nb, 1)
    _, second = _run(nb, umask=0o077)
    assert second["metrics"]["mask"] == 0o077  # a fresh process (and a started-ahead one) has this run's umask
    assert second["metrics"]["b_kept"] == 0  # the umask is part of a kept process's setting: not this run's


def _noisy(tmp_path: Path) -> str:
    """A folder for PYTHONPATH with an installed-looking module that prints and warns when imported."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "noisy.py").write_text(
        "import warnings\nprint('NOISY imported')\nwarnings.warn('NOISY warning', UserWarning)\nVALUE = 7\n"
    )
    return str(lib)


@pytest.mark.slow
def test_redteam_kept_step_has_the_limits_of_this_run(make_nb: Make) -> None:
    nb = _two_steps(make_nb, "import resource", "files = resource.getrlimit(resource.RLIMIT_CORE)[0]", "print(files)")
    _, first = _run(nb, core=0)
    assert first["metrics"]["files"] == 0
    _edit(nb, 1)
    _, second = _run(nb, core=4096)
    assert second["metrics"]["files"] == 4096
    assert second["metrics"]["b_kept"] == 0  # limits are part of a kept process's setting


@pytest.mark.slow
def test_redteam_kept_step_logs_what_its_imports_print(make_nb: Make, tmp_path: Path) -> None:
    lib = _noisy(tmp_path)
    nb = _two_steps(make_nb, "import noisy", "y = noisy.VALUE", "print(y)")
    _, first = _run(nb, PYTHONPATH=lib)
    assert _log_of(first).count("NOISY imported") == 1  # step b (a uses no noisy), started ahead: as fresh
    assert "NOISY warning" in _log_of(first)
    _edit(nb, 1)
    _, second = _run(nb, PYTHONPATH=lib)
    assert second["steps"]["b"] == "succeeded" and second["metrics"]["b_kept"] == 1
    log = _log_of(second)
    assert "NOISY imported" in log and "NOISY warning" in log  # step b's import output, as a fresh b prints it


@pytest.mark.slow
def test_redteam_kept_step_finishes_its_threads_and_atexit_handlers(make_nb: Make, tmp_path: Path) -> None:
    done = tmp_path / "done"
    last = (
        "import atexit, threading, time\n"
        f"def later(name):\n    time.sleep(0.5)\n    open({str(done)!r} + name, 'w').close()\n"
        "threading.Thread(target=later, args=('-thread',)).start()\n"
        "atexit.register(later, '-atexit')"
    )
    nb = _two_steps(make_nb, "import os", f"y = len(os.sep)\n{last}", "print(y)")
    _run(nb)
    assert (tmp_path / "done-thread").exists() and (tmp_path / "done-atexit").exists()  # as a fresh process
    for name in ("done-thread", "done-atexit"):
        (tmp_path / name).unlink()
    _edit(nb, 1)
    _, second = _run(nb)
    assert second["metrics"]["b_kept"] == 1
    assert (tmp_path / "done-thread").exists() and (tmp_path / "done-atexit").exists()


@pytest.mark.slow
def test_redteam_kept_step_failing_by_os_exit_fails_as_a_fresh_one(make_nb: Make) -> None:
    nb = _two_steps(make_nb, "import os", "y = len(os.sep)\nif edit:\n    os._exit(5)", "print(y)")
    _run(nb)
    _edit(nb, 1)
    _, fresh = _run(nb, check=False, NB2KFP_WARM="0")
    kept.stop_all()
    _edit(nb, 2)
    _run(nb, check=False)  # keeps a process for b
    _edit(nb, 3)
    _, taken = _run(nb, check=False)
    assert fresh["status"] == taken["status"] == "failed"
    assert re.sub(r"\d+\.\d+s", "", str(fresh.get("error"))) == re.sub(r"\d+\.\d+s", "", str(taken.get("error")))


@pytest.mark.slow
def test_redteam_kept_step_imports_a_module_added_earlier_on_pythonpath(make_nb: Make, tmp_path: Path) -> None:
    lib = _noisy(tmp_path)
    first_lib = tmp_path / "first"
    first_lib.mkdir()
    path = f"{first_lib}{os.pathsep}{lib}"
    nb = _two_steps(make_nb, "import noisy", "y = noisy.VALUE", "print(y)")
    assert _run(nb, PYTHONPATH=path)[1]["metrics"]["y"] == 7
    time.sleep(3)  # the process kept for b has imported noisy by now
    (first_lib / "noisy.py").write_text("VALUE = 8\n")  # now first on the path: a fresh process imports this one
    _edit(nb, 1)
    _, second = _run(nb, PYTHONPATH=path)
    assert second["metrics"]["y"] == 8
    assert second["metrics"]["b_kept"] == 0  # a folder of sys.path changed since its imports: it steps aside


@pytest.mark.slow
def test_redteam_kept_step_reads_the_matplotlibrc_next_to_the_notebook_as_it_is_now(make_nb: Make) -> None:
    nb = _two_steps(make_nb, "import matplotlib.pyplot as plt", "dpi = plt.rcParams['figure.dpi']", "print(dpi)")
    rc = nb.parent / "matplotlibrc"
    rc.write_text("figure.dpi: 50\n")
    assert _run(nb)[1]["metrics"]["dpi"] == 50
    time.sleep(3)  # the process kept for b has imported matplotlib (and read the file) by now
    rc.write_text("figure.dpi: 70\n")  # same name next to the notebook, new content
    _edit(nb, 1)
    _, second = _run(nb)
    assert second["metrics"]["dpi"] == 70, second
    assert second["metrics"]["b_kept"] == 0  # a file its imports read changed: it steps aside


@pytest.mark.slow
def test_redteam_a_kept_process_ends_after_its_idle_timeout_even_when_poked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    from nb2kfp.backends import step_runtime
    from nb2kfp.runtime.step import RUNTIME_FILE

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("NB2KFP_WARM_KEEP", "2")
    setting = kept.key(["redteam", str(tmp_path)])
    imports = {"prelude": ["import json"], "cell": []}
    kept.keep(setting, step_runtime.runtime_source(), RUNTIME_FILE, imports, dict(os.environ), str(tmp_path))
    deadline = time.monotonic() + 10
    while not kept.kept_for(setting, kept.kept()) and time.monotonic() < deadline:
        time.sleep(0.05)
    (name,) = kept.kept_for(setting, kept.kept())
    end = time.monotonic() + 6  # 3 times its idle timeout: a connection that sends nothing (any local user can)
    while time.monotonic() < end:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as poke, contextlib.suppress(OSError):
            poke.connect(kept.address(name))  # refused once it is gone
        time.sleep(1)
    assert name not in kept.kept()


@pytest.mark.slow
def test_redteam_an_import_that_reads_stdin_gets_nothing_in_a_step_started_ahead(make_nb: Make, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "reader.py").write_text("import sys\nDATA = sys.stdin.readline()\n")  # a step's stdin is /dev/null
    nb = _two_steps(make_nb, "import reader", "y = len(reader.DATA)", "print(y)")
    code, record = _run(nb, "--no-cache", check=False, PYTHONPATH=str(lib), NB2KFP_WARM_KEEP="0")
    assert code == 0 and record["steps"]["b"] == "succeeded"
    assert record["metrics"].get("y") == 0  # observed: b "succeeded" without running its cells (no y)


@pytest.mark.slow
def test_redteam_what_a_cells_first_import_prints_stays_in_the_report(make_nb: Make, tmp_path: Path) -> None:
    lib = _noisy(tmp_path)
    nb = make_nb(
        [
            (["imports"], "import os"),
            (["step:a"], "x = 1"),
            (["step:b", "prev:a"], "import noisy\ny = x + noisy.VALUE"),
            (["pipeline-metrics"], "print(y)"),
        ]
    )
    reports = {}
    for warm in ("0", "1"):
        _, record = _run(nb, "--no-cache", PYTHONPATH=lib, NB2KFP_WARM=warm, NB2KFP_WARM_KEEP="0")
        assert record["metrics"]["y"] == 8
        reports[warm] = (Path(record["run_dir"]) / "reports" / "b.ipynb").read_text()
    assert "NOISY imported" in reports["0"] and "NOISY warning" in reports["0"]  # in the cell's output, fresh
    assert "NOISY imported" in reports["1"] and "NOISY warning" in reports["1"]


def _pids_with(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def _keep_importing(tmp_path: Path, module: str, wait: str) -> tuple[Path, str]:
    """Keep a process whose import of ``module`` (in ``tmp_path/lib``, on its PYTHONPATH) runs ``wait``; the lib
    folder (its processes are found by it) and the setting it is kept in."""
    from nb2kfp.backends import step_runtime
    from nb2kfp.runtime.step import RUNTIME_FILE

    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / f"{module}.py").write_text(f"import time\n{wait}\n")
    setting = kept.key([f"redteam-{module}", str(tmp_path)])
    env = {**os.environ, "PYTHONPATH": str(lib)}
    imports = {"prelude": [f"import {module}"], "cell": []}
    kept.keep(setting, step_runtime.runtime_source(), RUNTIME_FILE, imports, env, str(tmp_path))
    return lib, setting


@pytest.mark.slow
def test_redteam_a_kept_process_stuck_importing_still_ends(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("NB2KFP_WARM_KEEP", "1")
    lib, _ = _keep_importing(tmp_path, "stuck", "time.sleep(3600)  # a lock never released, a network wait")
    try:
        time.sleep(4)  # 4 times its idle timeout
        kept.stop_all()  # what `nb2kfp runs clean` does
        time.sleep(1)
        assert not _pids_with(f"PYTHONPATH={lib}\0")
    finally:
        for pid in _pids_with(f"PYTHONPATH={lib}\0"):
            os.kill(pid, 9)


@pytest.mark.slow
def test_redteam_a_kept_process_too_slow_to_answer_is_killed_so_it_never_runs_the_step_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A run hands a kept process still importing the step's command and, when it does not answer in time, starts
    the step afresh: the kept process must not run the same command once its imports end (twice: one process per
    step). It was left importing with the command waiting in its socket; now the run kills it."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("NB2KFP_WARM_KEEP", "60")
    lib, setting = _keep_importing(tmp_path, "slow", "time.sleep(20)")
    env = {**os.environ, "PYTHONPATH": str(lib)}
    try:
        deadline = time.monotonic() + 10
        while not kept.kept_for(setting, kept.kept()) and time.monotonic() < deadline:
            time.sleep(0.05)
        (name,) = kept.kept_for(setting, kept.kept())
        assert kept.take_named(name, ["--executor-input", "{}"], env, str(tmp_path), ready_seconds=0.5) is None
        time.sleep(0.5)
        assert not _pids_with(f"PYTHONPATH={lib}\0")  # gone long before its import ends
    finally:
        for pid in _pids_with(f"PYTHONPATH={lib}\0"):
            os.kill(pid, 9)


@pytest.mark.slow
def test_redteam_a_file_an_import_writes_lands_in_the_steps_folder(make_nb: Make, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "writer.py").write_text("import os\nWHERE = os.getcwd()\nopen('made_at_import.log', 'a').close()\n")
    nb = _two_steps(make_nb, "import writer", "here = int(writer.WHERE == __import__('os').getcwd())", "print(here)")
    (nb.parent / "nb").mkdir()
    nb = nb.rename(nb.parent / "nb" / nb.name)  # a folder with nothing else in it
    for warm in ("0", "1"):
        _, record = _run(nb, "--no-cache", PYTHONPATH=str(lib), NB2KFP_WARM=warm, NB2KFP_WARM_KEEP="0")
        assert not (nb.parent / "made_at_import.log").exists(), warm  # not in the notebook's folder
        assert record["metrics"]["here"] == 1, warm  # a fresh step imports in its own folder
