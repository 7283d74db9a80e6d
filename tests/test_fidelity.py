"""Notebooks written elsewhere (Kale 2.3, papermill, nbconvert, Jupyter Book): what they mean compiles as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from clirun import Make
from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build


def test_kale_empty_step_name_joins_the_step_above(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:load"], "x = 1"),
            (["step:"], "y = x + 1"),
            (["step:use", "prev:load"], "print(y)"),
        ]
    )
    result = build(nb)
    assert [s.name for s in result.pipeline.steps] == ["load", "use"]
    assert [c.source for c in result.pipeline.step("load").cells] == ["x = 1", "y = x + 1"]
    assert {e.name for e in result.pipeline.step("use").inputs} == {"y"}


@pytest.mark.parametrize(
    "tag",
    [
        "remove_output",
        "remove_input",
        "remove-stderr",
        "hide-input",
        "scroll-input",
        "skip-execution",
        "nbval-ignore-output",
        "nbval-skip",
        "nbval-raises-exception",
        "nbsphinx-gallery",
        "thebe-init",
        "dropdown",
        "raises-exception",
    ],
)
def test_tags_of_jupyters_own_tools_are_ignored(make_nb: Make, tag: str) -> None:
    nb = make_nb([(["step:a", tag], "x = 1"), ([tag], "y = x")])
    result = build(nb)
    assert not [d for d in result.diagnostics if d.code == "NB010"]


def test_pylab_inline_defines_its_names(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "%pylab inline\nx = linspace(0, 1, 5)\nh = hist(x)\ny = np.sum(x)")])
    result = build(nb)
    source = result.pipeline.step("a").cells[0].source
    assert "from pylab import *" in source and "import numpy as np" in source
    assert source.count("\n") == 3  # one line for one line: tracebacks keep their line numbers


def test_none_in_a_parameters_cell_is_an_optional_parameter(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["parameters"], "limit = None\nname = 'x'"),
            (["step:a"], "n = 10 if limit is None else int(limit)"),
        ]
    )
    result = build(nb)
    p = result.pipeline.parameter("limit")
    assert p.default is None and p.type == "str"
    assert p.optional


def test_function_shadowing_a_builtin_travels(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["step:a"], "def sum(x, y):\n    return x * y"),
            (["step:b", "prev:a"], "z = sum(3, 4)"),
        ]
    )
    result = build(nb)
    assert {(e.name, e.producer) for e in result.pipeline.step("b").inputs} == {("sum", "a")}


def test_builtin_name_read_without_any_step_setting_it_stays_the_builtin(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1"), (["step:b", "prev:a"], "z = sum([x, 2])")])
    assert {e.name for e in build(nb).pipeline.step("b").inputs} == {"x"}


def test_str_metric_is_a_lint_warning_not_an_error(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "bar = 'high'\nacc = 0.5"), (["pipeline-metrics"], "print(bar)\nprint(acc)")])
    result = build(nb)
    warnings = [d.format() for d in result.diagnostics if d.code == "NB047"]
    assert warnings and "'bar'" in warnings[0] and "number" in warnings[0]


def test_unknown_tag_is_still_an_error(make_nb: Make) -> None:
    nb = make_nb([(["step:a", "stpe:b"], "x = 1")])
    with pytest.raises(NotebookError):
        build(nb)


# -- cache stability: a step's spec changes only when what it runs changes -------------------------------------
_CELLS: list[tuple[list[str], str] | tuple[list[str], str, str]] = [
    (["imports"], "import math"),
    (["pipeline-parameters"], "n = 3"),
    ([], "# Load", "markdown"),
    (["step:load"], "x = list(range(n))"),
    ([], "y = [v * 2 for v in x]"),
    (["step:train", "prev:load"], "model = sum(y)"),
    (["step:report", "prev:train"], "score = math.sqrt(model)"),
    (["pipeline-metrics"], "print(score)"),
]


def _step_specs(nb: Path) -> dict[str, str]:
    import json

    from nb2kfp.backends.kfp_spec import build_documents

    spec, _ = build_documents(build(nb).pipeline)
    return {
        name.removeprefix("exec-"): json.dumps([ex, spec["components"]["comp-" + name.removeprefix("exec-")]])
        for name, ex in spec["deploymentSpec"]["executors"].items()
    }


def _changed(make_nb: Make, cells: list) -> set[str]:  # type: ignore[type-arg]
    before = _step_specs(make_nb(_CELLS, name="before.ipynb"))
    after = _step_specs(make_nb(cells, name="before.ipynb"))
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def test_adding_or_removing_markdown_and_empty_cells_changes_no_step(make_nb: Make) -> None:
    cells = list(_CELLS)
    cells.insert(0, ([], "# Title", "markdown"))
    cells.insert(6, ([], "More prose", "markdown"))
    cells.insert(7, ([], "\n"))
    assert _changed(make_nb, cells) == set()
    assert _changed(make_nb, [c for c in _CELLS if len(c) == 2]) == set()


def test_editing_one_step_changes_that_step_only(make_nb: Make) -> None:
    cells = list(_CELLS)
    cells[4] = ([], "y = [v * 3 for v in x]\nz = 1")
    cells.insert(4, ([], "extra = 1"))
    assert _changed(make_nb, cells) == {"load"}


def test_plan_agrees_that_markdown_changes_nothing(make_nb: Make) -> None:
    from nb2kfp.backends import plan

    old = build(make_nb(_CELLS, name="a.ipynb")).pipeline
    cells = list(_CELLS)
    cells.insert(0, ([], "# Title", "markdown"))
    cells[5] = ([], "y = [v * 3 for v in x]")
    new = build(make_nb(cells, name="a.ipynb")).pipeline
    result = plan.diff(old, new)
    assert {s.name: s.status for s in result.steps} == {"load": "changed", "train": "unchanged", "report": "unchanged"}
    assert [s.name for s in result.steps if not s.cached] == ["load", "train", "report"]  # downstream of load re-runs


def test_compile_check_is_fresh_after_a_markdown_edit(make_nb: Make, tmp_path: Path) -> None:
    from nb2kfp.commands.compile import is_fresh
    from nb2kfp.config import Settings
    from nb2kfp.service import compile_notebook

    nb = make_nb(_CELLS, name="c.ipynb")
    target = tmp_path / "c.pipeline.yaml"
    target.write_text(compile_notebook(nb, Settings()).spec(), encoding="utf-8")
    cells = list(_CELLS)
    cells.insert(0, ([], "# Title", "markdown"))
    make_nb(cells, name="c.ipynb")
    assert is_fresh(nb, target)


def test_tracebacks_name_notebook_cells_from_the_runs_table_or_the_step_and_rank(
    make_nb: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2kfp.backends.kfp_spec import cell_numbers, step_spec
    from nb2kfp.runtime import step as runtime

    cells = list(_CELLS)
    cells.insert(0, ([], "# Title", "markdown"))
    pipeline = build(make_nb(cells, name="t.ipynb")).pipeline
    spec = step_spec(pipeline, pipeline.step("load"))
    assert [rank for rank, _ in spec["cells"]] == [1, 2] and "prelude" not in spec  # load imports nothing it uses
    monkeypatch.delenv("NB2KFP_CELLS", raising=False)
    labels = [label for label, _, _ in runtime._labelled(spec, "cells")]
    assert labels == ["t.ipynb, step load, cell 1", "t.ipynb, step load, cell 2"]
    import json

    monkeypatch.setenv("NB2KFP_CELLS", json.dumps(cell_numbers(pipeline)))
    assert [label for label, _, _ in runtime._labelled(spec, "cells")] == ["t.ipynb, cell 5", "t.ipynb, cell 6"]
    report = step_spec(pipeline, pipeline.step("report"))  # uses the imports cell's math
    assert [label for label, _, _ in runtime._labelled(report, "prelude")] == ["t.ipynb, cell 2"]


# -- Kale 2.3 composition: a main notebook of notebook:NAME cells, included notebooks read what the ones above set --
def make_kale_composition(make_nb: Make) -> Path:
    import json

    make_nb(
        [
            (["imports"], "import statistics"),
            (["pipeline-parameters"], "n = 5"),
            (["step:load"], "dataset = list(range(1, n + 1))"),
        ],
        name="a_load.ipynb",
    )
    make_nb(
        [
            (["imports"], "import math"),
            (["step:train"], "model = {'mean': sum(dataset) / len(dataset)}"),
            (["step:"], "model['root'] = math.sqrt(model['mean'])"),
        ],
        name="b_train.ipynb",
    )
    make_nb(
        [(["step:evaluate"], "score = model['mean'] * len(dataset) + model['root']")],
        name="c_eval.ipynb",
    )
    main = make_nb(
        [
            (["notebook:load"], ""),
            (["notebook:train"], ""),
            (["notebook:evaluate"], ""),
            (["pipeline-metrics"], "print(score)"),
        ],
        name="main.ipynb",
    )
    raw = json.loads(main.read_text())
    for cell, path in zip(raw["cells"], ["a_load.ipynb", "b_train.ipynb", "c_eval.ipynb"], strict=False):
        cell["metadata"]["notebook_path"] = path
    main.write_text(json.dumps(raw))
    return main


def test_kale_composition_resolves_names_against_the_notebooks_above(make_nb: Make) -> None:
    from nb2kfp.service import diagnostics as diagnostics_for

    main = make_kale_composition(make_nb)
    p = build(main).pipeline
    assert [s.name for s in p.steps] == ["a_load__load", "b_train__train", "c_eval__evaluate"]
    assert {(e.name, e.producer) for e in p.step("b_train__train").inputs} == {("dataset", "a_load__load")}
    assert {(e.name, e.producer) for e in p.step("c_eval__evaluate").inputs} == {
        ("dataset", "a_load__load"),
        ("model", "b_train__train"),
    }
    assert p.step("b_train__train").after == ("a_load__load",)
    alone = [d for d in diagnostics_for(main.with_name("b_train.ipynb")) if d.code == "NB020"]
    assert alone and "'dataset'" in alone[0].message  # not standalone: lint on its own says so


def test_kale_composition_name_nothing_above_sets_is_located_in_the_included_notebook(make_nb: Make) -> None:
    from nb2kfp.service import diagnostics as diagnostics_for

    main = make_kale_composition(make_nb)
    make_nb([(["step:evaluate"], "score = modell['mean']")], name="c_eval.ipynb")
    found = [d.format() for d in diagnostics_for(main)]
    assert any(f.startswith(str(main.with_name("c_eval.ipynb")) + ": cell 1") and "'modell'" in f for f in found)


def test_lint_says_when_a_relative_file_will_not_be_there(make_nb: Make) -> None:
    cells = [
        (["imports"], "import pandas as pd"),
        (["step:a"], "df = pd.read_csv('input.csv')\ndf.to_csv('features.csv')\nother = pd.read_csv('missing.csv')"),
        (["step:b", "prev:a"], "f = pd.read_csv('features.csv')\nabs_ok = open('/etc/hostname').read()"),
    ]
    nb = make_nb(cells, name="files.ipynb")
    (nb.parent / "input.csv").write_text("x\n1\n")
    found = {d.code: d.format() for d in build(nb).diagnostics if d.code.startswith("NB10")}
    assert "step 'b' reads 'features.csv', which step 'a' writes" in found["NB100"]
    assert "files.ipynb: cell 3, line 1" in found["NB100"]
    assert "'missing.csv'" in found["NB101"]
    assert "NB102" not in found  # input.csv is beside the notebook: nb2kfp build copies it into the step image
    nb = make_nb(cells, name="files.ipynb", metadata={"kubeflow_notebook": {"workspace": "1Gi"}})
    assert "NB100" not in {d.code for d in build(nb).diagnostics}
    (nb.parent / ".nb2kfpinclude").write_text("!*.csv\n")  # kept out of the image: a pod will not have it
    found = {d.code: d.format() for d in build(nb).diagnostics if d.code.startswith("NB10")}
    assert "reads 'input.csv' from the notebook's folder" in found["NB102"]
    assert ".nb2kfpinclude keeps it out of the step image" in found["NB102"]


def test_dict_parameters_travel_as_json_text_unless_a_component_takes_them(make_nb: Make) -> None:
    from nb2kfp.backends.kfp_spec import argument, build_documents

    nb = make_nb(
        [
            (["pipeline-parameters"], "params = {'x': 1}\nconfig = {'b': 2, 'a': 1}\npath = 'nb.ipynb'"),
            (["step:prepare"], "n = len(config)"),
            (["component:papermill-runner"], "notebook_path = path\nparameters = params"),
        ]
    )
    pipeline = build(nb).pipeline
    spec, _ = build_documents(pipeline)
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert root["config"] == {"defaultValue": '{"b": 2, "a": 1}', "isOptional": True, "parameterType": "STRING"}
    assert root["params"] == {"defaultValue": {"x": 1}, "isOptional": True, "parameterType": "STRUCT"}
    assert argument(pipeline, pipeline.parameter("config"), {"z": 1, "a": "{{$}}"}) == '{"z": 1, "a": "{{\\u0024}}"}'


def test_a_workspace_on_kfp_keeps_the_images_working_directory_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2kfp.runtime import step as runtime

    image_dir, workspace = tmp_path / "app", tmp_path / "ws"
    image_dir.mkdir()
    (image_dir / "data.csv").write_text("x\n")
    monkeypatch.chdir(image_dir)
    for name in ("NB2KFP_SEED", "NB2KFP_STEP_DIRS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NB2KFP_WORKSPACE", str(workspace))
    links = runtime._enter_workdir("train")
    assert Path.cwd() == workspace and Path("data.csv").read_text() == "x\n"
    assert links == [str(workspace / "data.csv")]
    monkeypatch.delenv("NB2KFP_WORKSPACE")
    monkeypatch.chdir(image_dir)
    assert runtime._enter_workdir("train") == [] and Path.cwd() == image_dir  # no workspace: the pod's own
