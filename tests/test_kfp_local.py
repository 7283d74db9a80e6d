"""The one adapter over kfp.local's internals (nb2kfp.local_run.kfp_local): what nb2kfp relies on is there in
the installed kfp, a kfp that changed it is refused with a clear message, and a run says so without a traceback."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from nb2kfp.local_run import kfp_local


def test_the_installed_kfp_has_every_part_of_kfp_local_that_nb2kfp_relies_on() -> None:
    import kfp

    found = kfp_local.problems()
    assert found == [], f"kfp {kfp.__version__} changed what nb2kfp.local_run.kfp_local relies on: {found}"


def test_kfp_local_calls_the_swapped_functions_through_their_modules() -> None:
    """A swap only works while kfp.local looks the function up on its module at each call."""
    import kfp
    from kfp.local import pipeline_orchestrator, subprocess_task_handler
    from kfp.local.orchestrator import task_executor

    calls = {
        pipeline_orchestrator: "dag_orchestrator.run_dag(",
        task_executor: "task_dispatcher.run_single_task_implementation(",
        subprocess_task_handler: "run_local_subprocess(",
    }
    for module, call in calls.items():
        assert call in inspect.getsource(module), f"kfp {kfp.__version__}: {module.__name__} no longer calls {call})"
    assert "cache_module.get_local_cache()" in inspect.getsource(task_executor), f"kfp {kfp.__version__}"


def test_a_changed_signature_names_the_kfp_version_and_the_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    import kfp
    from kfp.local import cache, subprocess_task_handler

    monkeypatch.setattr(subprocess_task_handler, "run_local_subprocess", lambda full_command: 0)
    monkeypatch.delattr(cache, "get_local_cache")
    monkeypatch.setattr(kfp, "__version__", "9.9.9")
    with pytest.raises(kfp_local.UnsupportedKfp) as caught:
        kfp_local.check()
    message = str(caught.value)
    assert "kfp 9.9.9" in message and f"kfp=={kfp_local.TESTED_KFP}" in message
    assert "kfp.local.subprocess_task_handler.run_local_subprocess takes (full_command)" in message
    assert "kfp.local.cache.get_local_cache is missing" in message
    assert len(caught.value.problems) == 2


def test_a_run_with_a_changed_kfp_stops_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    notebook = Path(__file__).resolve().parent.parent / "examples" / "iris_diamond.ipynb"
    (tmp_path / notebook.name).write_bytes(notebook.read_bytes())
    changed_kfp = (  # as if kfp had renamed a function nb2kfp swaps
        "import sys; from kfp.local.orchestrator import dag_orchestrator as d; d.run_tasks = d.run_dag; del d.run_dag;"
        "from nb2kfp.cli.main import main; sys.argv = ['nb2kfp', 'run', sys.argv[1], '--local']; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", changed_kfp, notebook.name], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "kfp.local.orchestrator.dag_orchestrator.run_dag is missing" in proc.stderr
    assert f"does not work with kfp {kfp_local.TESTED_KFP}" in proc.stderr  # names the installed version
    assert not (tmp_path / ".nb2kfp" / "runs").exists() or not any((tmp_path / ".nb2kfp" / "runs").iterdir())


def test_a_local_run_does_not_import_kfp_client(tmp_path: Path) -> None:
    """kfp's __init__ imports kfp.client (and kubernetes, 0.4-0.7 s) that a local run never uses."""
    notebook = Path(__file__).resolve().parent.parent / "examples" / "wordcount.ipynb"
    (tmp_path / notebook.name).write_bytes(notebook.read_bytes())
    code = (
        "import atexit, sys; atexit.register(lambda: print('kfp.client' in sys.modules, file=sys.stderr));"
        "from nb2kfp.cli.main import main; sys.argv = ['nb2kfp', 'run', sys.argv[1], '--local', '--no-report']; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, notebook.name], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[-1] == "False", proc.stderr


def test_kfp_is_imported_without_its_api_client_and_the_rest_still_works() -> None:
    code = (
        "import os, sys\n"
        "from nb2kfp.local_run import kfp_local\n"
        "assert 'kfp.client' not in sys.modules, 'kfp.client imported'\n"
        "assert '_KFP_RUNTIME' not in os.environ, 'the flag leaks into the steps'\n"
        "from kfp import dsl\n"
        "assert callable(dsl.pipeline) and callable(dsl.component), 'kfp.dsl incomplete'\n"
        "from kfp.client import Client\n"
        "print(Client.__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Client"


def test_no_module_but_the_adapter_imports_kfp_local() -> None:
    """Every use of kfp.local (public or private) goes through local_run/kfp_local.py."""
    import re

    src = Path(__file__).resolve().parent.parent / "src" / "nb2kfp"
    uses = re.compile(
        r"^\s*(from kfp(\.local\S*)? import (local|\w+_handler|cache|io|status)\b|import kfp\.local)", re.M
    )
    offenders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if path.name != "kfp_local.py" and uses.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
