"""Steps started ahead (local_run/ahead.py): a step's process starts and imports while the steps before it run.

What it imports ahead must not change what the step does: these runs use kfp.local, and each step reports
whether its own process was one started ahead (its command line says so).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from clirun import Make
from conftest import require, run_local_json
from nb2kfp.ir import CodeCell
from nb2kfp.local_run import kept, waiting
from nb2kfp.local_run.ahead import binding_imports, installed_here, leading_imports

AGG = "int(__import__('os').environ.get('MPLBACKEND') == 'Agg')"
# the step's own command line (its code, this text included, is in its arguments): the program it runs; one forked
# from a run's template has the template's
AHEAD = (
    "int(open('/proc/self/cmdline', 'rb').read().split(bytes(1))[2:6:3]"
    " in ([b'nb2kfp.local_run.waiting', b'ahead'], [b'nb2kfp.local_run.waiting', b'template']))"
)


def _statements(source: str, installed: Callable[[str], bool] = lambda name: True) -> list[str]:
    return leading_imports([CodeCell(1, source)], installed)[0]


def test_modules_a_step_receives_are_imported_as_unpickling_would() -> None:
    cell = CodeCell(
        1, "import numpy as np\nimport matplotlib.pyplot as plt\nimport os.path\nfrom json import dumps as d"
    )
    assert binding_imports([cell], "np", lambda name: True) == ["import numpy"]
    assert binding_imports([cell], "plt", lambda name: True) == ["import matplotlib.pyplot"]
    assert binding_imports([cell], "os", lambda name: True) == ["import os"]  # `import os.path` binds os
    assert binding_imports([cell], "d", lambda name: True) == ["from json import dumps"]
    assert binding_imports([cell], "np", lambda name: name != "numpy") == []


def test_only_the_leading_imports_of_installed_modules_are_taken() -> None:
    assert _statements("from __future__ import annotations\nimport os\nfrom json import dumps as d") == [
        "import os",
        "from json import dumps as d",
    ]
    # anything else may change what a later import does: the warm-up stops there
    assert _statements("import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\nimport json") == ["import os"]
    assert _statements("import matplotlib\nmatplotlib.use('pdf')\nimport matplotlib.pyplot") == ["import matplotlib"]
    assert _statements("import warnings\nwarnings.filterwarnings('ignore')\nimport json") == ["import warnings"]
    assert _statements("from . import sibling\nimport json") == []
    assert _statements("import json\nimport mine\nimport csv", lambda name: name != "mine") == ["import json"]
    assert _statements("import json\nx = (") == []  # not Python: nothing


def test_a_file_next_to_the_notebook_is_never_taken_for_an_installed_module(tmp_path: Path) -> None:
    (tmp_path / "decimal.py").write_text("WHO = 'local'\n")
    (tmp_path / "mylib").mkdir()
    installed = installed_here(tmp_path)
    assert not installed("decimal") and not installed("mylib")
    assert installed("json") and installed("pytest") and not installed("no_such_module_here")


def _chain(make_nb: Make, imports: str = "import decimal", last: str = "") -> Path:
    return make_nb(
        [
            (["imports"], imports),
            (["step:a"], f"x = decimal.Decimal(1)\na_ahead = {AHEAD}"),
            (["step:b", "prev:a"], f"y = x + decimal.Decimal(1)\nb_ahead = {AHEAD}\nb_hash = hash('nb2kfp') % 1000003"),
            (["step:c", "prev:b"], f"z = y + decimal.Decimal(1)\nc_ahead = {AHEAD}\n{last}"),
            (["pipeline-metrics"], "print(a_ahead)\nprint(b_ahead)\nprint(c_ahead)\nprint(b_hash)"),
        ]
    )


@pytest.mark.slow
def test_steps_start_ahead_and_run_as_they_would_afresh(make_nb: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = _chain(make_nb)
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    metrics = record["metrics"]
    assert (metrics["a_ahead"], metrics["b_ahead"], metrics["c_ahead"]) == (1, 1, 1)
    # in the step's own environment (the container's PYTHONHASHSEED=0), not the driver's
    fixed = subprocess.run(
        [sys.executable, "-c", "print(hash('nb2kfp') % 1000003)"],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert metrics["b_hash"] == int(fixed.stdout)

    monkeypatch.setenv("NB2KFP_WARM", "0")
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert (record["metrics"]["a_ahead"], record["metrics"]["b_ahead"]) == (0, 0)
    assert record["metrics"]["b_hash"] == int(fixed.stdout)


@pytest.mark.slow
def test_with_the_cache_only_steps_below_a_step_that_runs_start_ahead(make_nb: Make) -> None:
    nb = _chain(make_nb)
    first, _ = run_local_json(nb)
    assert first.returncode == 0, first.stderr
    text = json.loads(nb.read_text())
    for cell in text["cells"]:
        if "step:b" in cell["metadata"].get("tags", []):
            cell["source"] = "".join(cell["source"]).replace("x + decimal", "x + 1 + decimal")
    nb.write_text(json.dumps(text))
    proc, record = run_local_json(nb)
    assert proc.returncode == 0, proc.stderr
    assert record["steps"] == {"a": "cached", "b": "succeeded", "c": "succeeded"}
    # b is known to run only when the cache misses it, right before it starts; c is known once b runs
    assert (record["metrics"]["b_ahead"], record["metrics"]["c_ahead"]) == (0, 1)


@pytest.mark.slow
def test_a_module_next_to_the_notebook_is_imported_by_the_step_itself(make_nb: Make) -> None:
    """It shadows an installed one, and it is imported in the step's own folder (where its import-time code runs
    and its ``__file__`` points), never ahead in the notebook's."""
    here = "int(decimal.WHERE == __import__('os').getcwd() and decimal.__file__.startswith(decimal.WHERE))"
    nb = _chain(make_nb, last=f"c_local = {here}")
    module = "import os\nWHERE = os.getcwd()\n\n\ndef Decimal(n):\n    return n\n"
    (nb.parent / "decimal.py").write_text(module)
    text = json.loads(nb.read_text())
    text["cells"][-1]["source"] += "\nprint(c_local)"
    nb.write_text(json.dumps(text))
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"]["c_local"] == 1


@pytest.mark.slow
def test_a_figure_shown_in_a_step_started_ahead_is_in_its_report(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["imports"], "import matplotlib.pyplot as plt"),
            (["step:a"], "xs = [1, 2, 3]"),
            (["step:b", "prev:a"], f"plt.plot(xs)\nplt.show()\nb_ahead = {AHEAD}\nb_agg = {AGG}"),
            (["pipeline-metrics"], "print(b_ahead)\nprint(b_agg)"),
        ]
    )
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"]["b_ahead"] == record["metrics"]["b_agg"] == 1  # MPLBACKEND as in a step: child too
    page = json.loads((Path(record["run_dir"]) / "reports" / "b.ipynb").read_text())
    shown = [o for c in page["cells"] for o in c["outputs"] if "image/png" in o.get("data", {})]
    assert len(shown) == 1


def _waiting_in(folder: Path, role: str) -> list[int]:
    """The waiting step processes (``python -m nb2kfp.local_run.waiting STEP PROJECT ROLE``) in ``role`` that wait in
    ``folder`` (a kept process) or below it (one started ahead waits in its step's folder)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
                here = cwd == str(folder) or cwd.startswith(f"{folder}/")
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    program = fh.read().split(b"\0")[2:6:3]
            except OSError:
                continue
            if here and program == [waiting.MODULE.encode(), role.encode()]:
                found.append(int(entry))
    return found


def _started_ahead_in(folder: Path) -> list[int]:
    """The processes started ahead for a notebook in ``folder`` (they wait there), and the run's templates."""
    return _waiting_in(folder, waiting.AHEAD) + _waiting_in(folder, waiting.TEMPLATE)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_or_killed_run_leaves_no_process_started_ahead(make_nb: Make, tmp_path: Path, sig: int) -> None:
    marker = tmp_path / "a-started"
    nb = make_nb(
        [
            (["imports"], "import decimal"),
            (["pipeline-parameters"], f"marker = {str(marker)!r}"),
            (["step:a"], "import time\nopen(marker, 'w').close()\ntime.sleep(300)\nx = decimal.Decimal(1)"),
            (["step:b", "prev:a"], "y = x + decimal.Decimal(1)"),
        ]
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--no-cache"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not marker.exists() or not _started_ahead_in(tmp_path):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 30
    while _started_ahead_in(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _started_ahead_in(tmp_path)


@pytest.mark.slow
def test_modules_handed_on_as_values_and_a_steps_first_imports_load_ahead(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "import decimal as dm\nx = dm.Decimal(1)"),
            (["step:b", "prev:a"], f"y = x + dm.Decimal(1)\nb_ahead = {AHEAD}"),  # receives dm, hands it on
            (
                ["step:c", "prev:b"],
                f"import fractions\nz = int(dm.Decimal(2) + y) + fractions.Fraction(2).numerator\nc_ahead = {AHEAD}",
            ),
            (["pipeline-metrics"], "print(b_ahead)\nprint(c_ahead)\nprint(z)"),
        ]
    )
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert (record["metrics"]["b_ahead"], record["metrics"]["c_ahead"], record["metrics"]["z"]) == (1, 1, 6)


# -- kept warm between runs (local_run/kept.py) ---------------------------------------------------------------
KEPT = "int(open('/proc/self/cmdline', 'rb').read().split(bytes(1))[2:6:3] == [b'nb2kfp.local_run.waiting', b'kept'])"


def kept_run_process(
    nb: Path, *args: str, preexec: Callable[[], None] | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """`nb2kfp run NB --local --json ARGS` as a user's run (no CI, processes kept 120 s), with ``env`` on top."""
    return subprocess.run(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--json", *args],
        capture_output=True,
        text=True,
        cwd=nb.parent,
        timeout=600,
        env={**{k: v for k, v in os.environ.items() if k != "CI"}, "NB2KFP_WARM_KEEP": "120", **env},
        preexec_fn=preexec,
    )


def _kept_run(nb: Path, *args: str, **env: str) -> dict[str, Any]:
    proc = kept_run_process(nb, *args, preexec=None, **env)
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout), "stderr": proc.stderr}


def _edit_last_step(nb: Path, n: int, pattern: str = r"z = (\d+ \+ )?y \+", text: str = "z = {n} + y +") -> None:
    notebook = json.loads(nb.read_text())
    for cell in notebook["cells"]:
        if "step:c" in cell["metadata"].get("tags", []):
            cell["source"] = re.sub(pattern, text.format(n=n), "".join(cell["source"]))
    nb.write_text(json.dumps(notebook))


@pytest.mark.slow
@pytest.mark.usefixtures("private_kept")
def test_a_step_run_again_takes_the_process_the_last_run_kept_warm(make_nb: Make) -> None:
    nb = _chain(make_nb, last=f"c_kept = {KEPT}")
    text = json.loads(nb.read_text())
    text["cells"][-1]["source"] += "\nprint(c_kept)\nprint(z)"
    nb.write_text(json.dumps(text))
    first = _kept_run(nb)
    assert first["metrics"]["c_kept"] == 0
    # it says so: the latest steps first, one per core
    said = r"kept [1-3] step process(es)? warm for the next run \(c[,;].* 120 s; `nb2kfp runs clean`"
    assert re.search(said, first["stderr"])
    _edit_last_step(nb, 10)
    # files no import can load, written beside the notebook meanwhile (notes, the compiled spec), change nothing
    (nb.parent / "notes-1.txt").write_text("scratch")
    (nb.parent / f"{nb.stem}.pipeline.yaml").write_text("{}")
    second = _kept_run(nb)  # at once: it waits for the kept process's imports
    assert second["steps"] == {"a": "cached", "b": "cached", "c": "succeeded"}
    assert second["metrics"]["c_kept"] == 1 and second["metrics"]["z"] == 13
    # another setting (here one more environment variable) never gets it: the step starts afresh
    _edit_last_step(nb, 20)
    other = _kept_run(nb, NB2KFP_TEST_SETTING="1")
    assert other["metrics"]["c_kept"] == 0 and other["metrics"]["z"] == 23
    # nor does a module beside the notebook, which an import could now find there
    (nb.parent / "helpers.py").write_text("VALUE = 1\n")
    _edit_last_step(nb, 30)
    beside = _kept_run(nb)
    assert beside["metrics"]["c_kept"] == 0 and beside["metrics"]["z"] == 33
    # `runs clean` stops them all
    assert _kept_for(nb.parent)
    cleaned = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "runs", "clean", "--keep", "1"],
        capture_output=True,
        text=True,
        cwd=nb.parent,
        check=True,
    )
    assert "kept warm for the next run" in cleaned.stdout
    assert _gone(lambda: _kept_for(nb.parent), 30)


def _kept_for(folder: Path) -> list[int]:
    """The processes kept warm for a notebook in ``folder`` (they wait there); other tests' and runs' are not."""
    return _waiting_in(folder, waiting.KEPT)


def _appears(found: Callable[[], list[int]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not found() and time.monotonic() < deadline:
        time.sleep(0.1)
    return bool(found())


def _gone(found: Callable[[], list[int]], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while found() and time.monotonic() < deadline:
        time.sleep(0.2)
    return not found()


@pytest.mark.slow
@pytest.mark.usefixtures("private_kept")
def test_nothing_is_kept_under_ci_and_a_kept_process_ends_when_unused(make_nb: Make) -> None:
    nb = _chain(make_nb)
    assert "warm for the next run" not in _kept_run(nb, "--no-cache", CI="true")["stderr"]
    assert not _kept_for(nb.parent)
    _kept_run(nb, "--no-cache", NB2KFP_WARM_KEEP="5")
    assert _appears(lambda: _kept_for(nb.parent), 3)  # there once it entered the notebook's folder
    assert _gone(lambda: _kept_for(nb.parent), 60)  # unused for 5 s: it ends


def test_another_user_can_neither_listen_under_a_kept_name_nor_connect(tmp_path: Path) -> None:
    """Kept processes listen in a folder only the user can enter (0700, the user's own): another user can neither
    take a kept process's name first (and get a run's command and environment) nor connect to one."""
    require(os.getuid() == 0, "needs root, to try as another user")  # CI runs as root: never skipped there
    where = kept.folder()
    assert where is not None and where.stat().st_mode & 0o777 == 0o700 and where.stat().st_uid == os.getuid()
    name = f"{kept.key(['a setting', str(tmp_path)])}-1"
    other = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, socket\n"
            "os.setuid(65534)\n"
            "for act in ('bind', 'connect'):\n"
            "    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "    try:\n"
            f"        getattr(s, act)({str(where / name)!r})\n"
            "        print(act, 'done')\n"
            "    except OSError as exc:\n"
            "        print(act, type(exc).__name__)\n",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert other.stdout.split("\n")[:2] == ["bind PermissionError", "connect PermissionError"], other.stderr
    assert name not in kept.kept()


@pytest.mark.slow
@pytest.mark.usefixtures("private_kept")
def test_a_kept_process_never_runs_a_module_older_than_the_disk(make_nb: Make, tmp_path: Path) -> None:
    """An editable install edited between two runs: the kept process imported the old code, so it steps aside."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "nb2kfp_test_lib.py").write_text("VALUE = 1\n")
    nb = make_nb(
        [
            (["imports"], "import nb2kfp_test_lib as lib"),
            (["step:a"], "x = 10"),
            (["step:c", "prev:a"], f"z = lib.VALUE + x\nc_kept = {KEPT}"),
            (["pipeline-metrics"], "print(z)\nprint(c_kept)"),
        ]
    )
    assert _kept_run(nb, PYTHONPATH=str(lib))["metrics"]["z"] == 11
    _edit_last_step(nb, 0, r"\+ x( \+ \d+)?", "+ x + 1")  # c runs again: a process kept for it waits
    unchanged = _kept_run(nb, PYTHONPATH=str(lib))
    assert (unchanged["metrics"]["z"], unchanged["metrics"]["c_kept"]) == (12, 1)
    (lib / "nb2kfp_test_lib.py").write_text("VALUE = 2  # edited\n")
    _edit_last_step(nb, 0, r"\+ x( \+ \d+)?", "+ x + 2")
    edited = _kept_run(nb, PYTHONPATH=str(lib))
    assert (edited["metrics"]["z"], edited["metrics"]["c_kept"]) == (14, 0)


@pytest.mark.usefixtures("private_kept")
def test_the_oldest_kept_processes_make_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nb2kfp.backends.step_runtime import runtime_source

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("NB2KFP_WARM_KEEP", "60")
    settings = [kept.key(["room", str(tmp_path), n]) for n in range(3)]
    env = dict(os.environ)
    for setting in settings:
        imports = {"prelude": ["import json"], "cell": []}
        kept.keep(setting, runtime_source(), "<nb2kfp runtime>", imports, env, str(tmp_path))
        time.sleep(0.01)

    def mine() -> list[list[str]]:
        names = kept.kept()
        return [kept.kept_for(s, names) for s in settings]

    deadline = time.monotonic() + 30
    while not all(mine()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(mine())
    monkeypatch.setattr(kept, "KEEP_IN_ALL", len(kept.kept()))  # full: one more must stop the oldest
    kept.make_room(1)
    deadline = time.monotonic() + 30
    while mine()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [bool(k) for k in mine()] == [False, True, True]


@pytest.mark.parametrize("second_read", ["listdir", "open"])
def test_a_process_binding_its_name_while_the_kept_ones_are_listed_keeps_its_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second_read: str
) -> None:
    """kept() removes the files of sockets nobody binds (a killed process's). A process starting meanwhile binds
    its name between kept()'s two reads (CI hit it: a kept process lost its file and no run could reach it)."""
    import builtins
    import socket

    where = kept.folder()
    assert where is not None
    path = where / (kept.key(["binding meanwhile", str(tmp_path)]) + f"-{time.time_ns():x}")
    starting = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    real = os.listdir if second_read == "listdir" else builtins.open

    def bind_then_read(*args: Any, **kwargs: Any) -> Any:  # the process starting binds just before this read
        if not path.exists():
            starting.bind(str(path))
            starting.listen(1)
        return real(*args, **kwargs)

    try:
        if second_read == "listdir":
            monkeypatch.setattr(os, "listdir", bind_then_read)
        else:
            monkeypatch.setattr(kept, "open", bind_then_read, raising=False)
        kept.kept()
        monkeypatch.undo()
        assert path.exists(), f"its socket's file was removed (bound just before kept() called {second_read})"
        assert path.name in kept.kept()
    finally:
        starting.close()
        path.unlink(missing_ok=True)
