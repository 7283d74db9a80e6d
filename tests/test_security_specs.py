"""Security case 10 (issue 14): specs KFP cannot load are refused with a located error, and odd JSON gives a located
error instead of a traceback. A spec at the limits is loaded by the real KFP SDK."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clirun import Make, nb2kfp
from nb2kfp import kfpnames
from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build
from nbfactory import notebook


def messages(path: Path) -> str:
    with pytest.raises(NotebookError) as info:
        build(path)
    return "\n".join(d.format() for d in info.value.errors)


def test_names_over_the_limit_are_located_errors(make_nb: Make) -> None:
    long = "a" * 1100
    text = messages(make_nb([([f"step:{long}"], "x = 1"), (["step:b", f"prev:{long}"], "print(x)")]))
    assert "cell 1" in text and "step name" in text and long not in text
    var = "v" * 1100
    text = messages(make_nb([(["step:a"], f"{var} = 1"), (["step:b", "prev:a"], f"print({var})")]))
    assert "variable name" in text


def test_an_integer_default_beyond_a_double_is_a_located_error(make_nb: Make) -> None:
    text = messages(make_nb([(["pipeline-parameters"], "n = " + "9" * 400), (["step:a"], "print(n)")]))
    assert "cell 1, line 1" in text and "parameter 'n'" in text and "2**53" in text


@pytest.mark.parametrize("source", ['s = "\\ud800"', 's = ["ok", {"k": "\\udfff"}]'])
def test_a_lone_surrogate_in_a_parameter_is_a_located_error(make_nb: Make, source: str) -> None:
    text = messages(make_nb([(["pipeline-parameters"], source), (["step:a"], "print(s)")]))
    assert "parameter 's'" in text and "surrogate" in text


@pytest.mark.parametrize(
    ("where", "expected"),
    [("description", "metadata"), ("label", "cell 1"), ("source", "cell 1")],
)
def test_a_lone_surrogate_in_the_notebook_json_is_a_located_error(tmp_path: Path, where: str, expected: str) -> None:
    nb = notebook([(["step:a"], "x = 1")])
    if where == "description":
        nb["metadata"]["kubeflow_notebook"] = {"pipeline_description": "\ud800"}
    elif where == "label":
        nb["cells"][0]["metadata"]["tags"].append("label:k:\ud800")
    else:
        nb["cells"][0]["source"] = ["print('\udfff')"]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))  # ensure_ascii: the surrogate travels as a \\ud800 escape, as an attacker writes it
    proc = nb2kfp("compile", str(path), cwd=tmp_path)
    assert proc.returncode == 1 and "surrogate" in proc.stderr and expected in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "nb.pipeline.yaml").exists()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '{"cells": [], "metadata": {"x": ' + "[" * 5000 + "]" * 5000 + '}, "nbformat": 4, "nbformat_minor": 5}',
            "deep",
        ),
        ('{"cells": [], "metadata": [], "nbformat": 4, "nbformat_minor": 5}', "metadata must be an object"),
    ],
)
@pytest.mark.parametrize("command", ["lint", "compile"])
def test_odd_json_is_a_located_error_not_a_traceback(tmp_path: Path, text: str, fragment: str, command: str) -> None:
    (tmp_path / "nb.ipynb").write_text(text)
    proc = nb2kfp(command, "nb.ipynb", cwd=tmp_path)
    out = proc.stdout + proc.stderr  # lint reports on stdout
    assert proc.returncode == 1 and "nb.ipynb" in out and fragment in out, out
    assert "Traceback" not in out


@pytest.mark.parametrize("ref", ["a\x00b.ipynb", "x" * 5000 + ".ipynb"])
def test_unusable_include_paths_are_located_errors(tmp_path: Path, ref: str) -> None:
    nb = notebook([(["notebook:sub.ipynb"], ""), (["step:a"], "x = 1")])
    nb["cells"][0]["metadata"]["notebook_path"] = ref
    (tmp_path / "nb.ipynb").write_text(json.dumps(nb))
    proc = nb2kfp("lint", "nb.ipynb", cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "cell 1" in out and "Traceback" not in out, out


def test_a_spec_at_the_limits_loads_in_kfp(make_nb: Make, tmp_path: Path) -> None:
    from kfp import components

    name = "s" * kfpnames.MAX_TASK_NAME  # Argo's 128 less the "-driver" KFP adds
    nb = make_nb([(["pipeline-parameters"], f"n = {2**53}\nt = 'é'"), ([f"step:{name}"], "print(n, t)")])
    proc = nb2kfp("compile", str(nb), "-o", "out.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    components.load_component_from_file(str(tmp_path / "out.yaml"))


def test_the_cached_step_runtime_is_used_only_when_nobody_else_could_have_written_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every step runs the runtime that compile embeds; the stripped copy cached in the user's cache folder is
    trusted only when it and its folder are the user's own and writable by nobody else (as ssh checks its keys)."""
    import hashlib
    from importlib import resources

    from nb2kfp.backends import step_runtime

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    source = resources.files("nb2kfp.runtime").joinpath("step.py").read_text(encoding="utf-8")
    folder = tmp_path / "nb2kfp"
    folder.mkdir(mode=0o777)
    folder.chmod(0o777)  # a shared folder: anyone could have put a file there
    planted = folder / f"runtime-{hashlib.sha256(source.encode()).hexdigest()[:32]}.py"
    planted.write_text("print('not the runtime')\n")
    step_runtime.runtime_source.cache_clear()
    try:
        assert step_runtime.runtime_source() != "print('not the runtime')\n"
        assert "def main(" in step_runtime.runtime_source()
        folder.chmod(0o700)
        step_runtime.runtime_source.cache_clear()
        assert "def main(" in step_runtime.runtime_source()  # made again, now private
        assert planted.stat().st_mode & 0o077 == 0
    finally:
        step_runtime.runtime_source.cache_clear()
