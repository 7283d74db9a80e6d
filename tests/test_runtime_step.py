"""The step runtime run as a spec runs it: `python3 -c BOOTSTRAP --executor-input ... --runtime FILE --spec ...`,
the runtime's source handed in as the nb2kfp-runtime input artifact (backends/step_runtime.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clirun import Make
from nb2kfp.backends import step_runtime
from nb2kfp.backends.kfp_spec import step_spec
from nb2kfp.frontend.builder import build


def test_a_failing_cell_run_by_the_bootstrap_shows_only_the_notebook_frames(make_nb: Make, tmp_path: Path) -> None:
    pipeline = build(make_nb([(["step:a"], "def f():\n    return 1 / 0\n\nprint(f())")], name="t.ipynb")).pipeline
    spec = step_spec(pipeline, pipeline.step("a"))
    runtime = tmp_path / "runtime.py"
    runtime.write_text(step_runtime.runtime_source(), encoding="utf-8")
    args = ["--executor-input", json.dumps({"inputs": {}}), "--runtime", str(runtime), "--spec", json.dumps(spec)]
    proc = subprocess.run(
        [sys.executable, "-c", step_runtime.bootstrap(), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    frames = [line.strip() for line in proc.stderr.splitlines() if line.strip().startswith("File ")]
    assert frames == [
        'File "t.ipynb, step a, cell 1", line 4, in <module>',
        'File "t.ipynb, step a, cell 1", line 2, in f',
    ]
    assert (
        "[nb2kfp] step 'a' failed in t.ipynb, step a, cell 1, line 2: ZeroDivisionError: division by zero"
        in proc.stderr
    )


class _Rich:
    """An object with the rich reprs Jupyter shows: HTML, PNG (bytes) and Markdown with metadata (a tuple)."""

    def __repr__(self) -> str:
        return "<rich>"

    def _repr_html_(self) -> str:
        return "<b>rich</b>"

    def _repr_png_(self) -> bytes:
        return b"\x89PNG\r\n\x1a\n"

    def _repr_markdown_(self) -> tuple[str, dict[str, str]]:
        return "**rich**", {"note": "metadata"}


class _Odd:
    """Rich reprs of the wrong types (Jupyter ignores them): HTML as a number, Markdown as a list, SVG as bytes."""

    def __repr__(self) -> str:
        return "<odd>"

    def _repr_html_(self) -> int:
        return 5

    def _repr_markdown_(self) -> list[str]:
        return ["a", "b"]

    def _repr_svg_(self) -> bytes:
        return b"<svg/>"


def test_the_step_report_is_a_notebook_nbformat_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat

    from nb2kfp.runtime import step

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # the report wraps both streams: put them back afterwards
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    report = step._Report({"report": {"key": "r", "render": False}, "notebook": "nb.ipynb", "step": "a"})
    report.start("nb.ipynb, cell 3", "print('hi')\ndisplay(rich)")
    print("hi")
    print("warned", file=sys.stderr)
    report.display(_Rich())
    report.display(_Odd())
    report.start("nb.ipynb, cell 4", "1 / 0")
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError as exc:
        report.error(exc)
    target = tmp_path / "report.ipynb"
    report.write({"artifacts": {"r": {"artifacts": [{"name": "r", "uri": str(target)}]}}})
    notebook = nbformat.read(target, as_version=4)
    nbformat.validate(notebook)
    kinds = [o["output_type"] for cell in notebook.cells for o in cell.outputs]
    assert kinds == ["stream", "stream", "display_data", "display_data", "error"]
    rich, odd = [o["data"] for o in notebook.cells[0].outputs if o["output_type"] == "display_data"]
    assert (
        set(rich) == {"text/plain", "text/html", "image/png", "text/markdown"} and rich["text/markdown"] == "**rich**"
    )
    assert odd == {"text/plain": "<odd>"}  # what Jupyter shows too: reprs of the wrong type are dropped


def test_the_front_ends_stateful_libraries_are_those_the_runtime_carries() -> None:
    """The runtime owns the names it shares with the host (the host imports them); the front end's list of stateful
    libraries must match the state the runtime reads and sets."""
    from nb2kfp.frontend.calls import STATEFUL_IMPORTS
    from nb2kfp.runtime import step

    stateful = {module.split(".")[0] for module in step._STATE_PARTS} - {"random", "numpy"}
    assert stateful == set(STATEFUL_IMPORTS)


def test_the_shell_stand_in_answers_has_trait_as_a_notebooks_kernel_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """iminuit's `is_jupyter()` (called by `Minuit.interactive()`) asks `get_ipython().has_trait("kernel")`: the
    stand-in raised AttributeError. It answers as Jupyter's shell does for the traits it offers."""
    import IPython
    from iminuit.util import is_jupyter  # type: ignore[import-untyped]
    from ipykernel.zmqshell import ZMQInteractiveShell

    from nb2kfp.runtime import step

    shim = step.IPythonShim({})
    monkeypatch.setattr(IPython, "get_ipython", lambda: shim)  # what the step's import hook sets
    assert is_jupyter()
    assert shim.has_trait("kernel") and not shim.has_trait("display_pub") and not shim.has_trait("colors")
    offered = set(vars(shim)) | set(dir(step.IPythonShim))
    traits = ZMQInteractiveShell.class_traits()
    assert {name for name in offered if name in traits} == step._SHELL_TRAITS
