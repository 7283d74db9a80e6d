"""Catalog components: component:NAME[@VERSION] cells compile to the copied KFP component, wired to the
notebook's steps; errors are located; the bundled data-drift-check runs end to end under kfp.local."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from clirun import Make
from conftest import run_local
from nb2kfp.backends import kfp_spec
from nb2kfp.catalog import lookup as catalog
from nb2kfp.commands import catalog as catalog_cmd
from nb2kfp.config import find_settings
from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build

BUNDLED = Path(catalog.__file__).resolve().parent.parent / "catalog"

DATA = (
    "import csv, os\n"
    "def write(path, values):\n"
    "    with open(path, 'w', newline='') as fh:\n"
    "        w = csv.writer(fh); w.writerow(['x']); w.writerows([[v] for v in values])\n"
    "    return os.path.abspath(path)\n"
    "ref_path = write('ref.csv', [i % 10 for i in range(200)])\n"
    "cur_path = write('cur.csv', [(i % 10) + shift for i in range(200)])"
)


def drift_notebook(
    make_nb: Make, call: str = "reference = ref_path\ncurrent = cur_path\ncolumn = 'x'\nthreshold = limit"
) -> Path:
    return make_nb(
        [
            (["pipeline-parameters"], "limit = 0.2\nshift = 5"),
            (["step:data"], DATA),
            (["component:data-drift-check"], call),
            (["step:decide"], "verdict = 'drift' if drifted else 'stable'\nscore = drift_score"),
            (["pipeline-metrics"], "print(score)"),
        ],
        name="drift.ipynb",
    )


def test_call_compiles_to_the_copied_component_wired_to_the_steps(make_nb: Make, tmp_path: Path) -> None:
    p = build(drift_notebook(make_nb)).pipeline
    assert [s.name for s in p.steps] == ["data", "data_drift_check", "decide"]
    call = p.step("data_drift_check")
    assert call.component is not None and call.component.version == "0.1.0"
    assert {(x.name, x.kind, x.type) for x in p.step("data").exports} == {
        ("ref_path", "file", "system.Dataset"),
        ("cur_path", "file", "system.Dataset"),
    }
    assert {(e.name, e.kind) for e in p.step("decide").inputs} == {
        ("drifted", "parameter"),
        ("drift_score", "parameter"),
    }
    text = kfp_spec.render(p)
    spec = next(yaml.safe_load_all(text))
    bundled = next(yaml.safe_load_all((BUNDLED / "data-drift-check" / "0.1.0.yaml").read_text()))
    comp = spec["components"]["comp-data-drift-check"]
    assert comp == bundled["components"]["comp-data-drift-check"]
    exe = spec["deploymentSpec"]["executors"]["exec-data-drift-check"]
    assert exe == bundled["deploymentSpec"]["executors"]["exec-data-drift-check"]
    task = spec["root"]["dag"]["tasks"]["data-drift-check"]
    assert task["inputs"]["parameters"] == {
        "column": {"runtimeValue": {"constant": "x"}},
        "method": {"runtimeValue": {"constant": "psi"}},  # its default, passed (tests/kfp_conformance)
        "threshold": {"componentInputParameter": "limit"},
    }
    assert task["inputs"]["artifacts"]["reference"] == {
        "taskOutputArtifact": {"outputArtifactKey": "ref_path-file", "producerTask": "data"}
    }
    assert task["dependentTasks"] == ["data"]
    out = spec["components"]["comp-data"]["outputDefinitions"]["artifacts"]
    assert out["cur_path-file"]["artifactType"]["schemaTitle"] == "system.Dataset"
    decide = spec["root"]["dag"]["tasks"]["decide"]["inputs"]["parameters"]
    assert decide["drifted"] == {
        "taskOutputParameter": {"outputParameterKey": "drifted", "producerTask": "data-drift-check"}
    }
    assert spec["components"]["comp-decide"]["inputDefinitions"]["parameters"]["drift_score"] == {
        "parameterType": "NUMBER_DOUBLE"
    }
    assert kfp_spec.step_spec(p, p.step("decide"))["params"]["drifted"] == "bool"
    from kfp import components

    target = tmp_path / "p.yaml"
    target.write_text(text)
    components.load_component_from_file(str(target))


@pytest.mark.parametrize(
    ("call", "code", "needle"),
    [
        ("reference = ref_path\ncurrent = cur_path\ncolum = 'x'", "NB091", "did you mean 'column'?"),
        ("reference = ref_path\ncolumn = 'x'", "NB092", "missing required input(s): current"),
        ("reference = ref_path\ncurrent = cur_path\ncolumn = 3", "NB093", "a str parameter, got a int"),
        ("reference = 'ref.csv'\ncurrent = cur_path\ncolumn = 'x'", "NB093", "an artifact (system.Dataset)"),
        ("reference = ref_path\ncurrent = cur_path\ncolumn = 'x'\nthreshold = shift + 1", "NB094", "give a literal"),
        ("reference = ref_path\ncurrent = cur_path\ncolumn = shift", "NB093", "parameter 'shift' is a int"),
    ],
)
def test_call_errors_are_located(make_nb: Make, call: str, code: str, needle: str) -> None:
    with pytest.raises(NotebookError) as info:
        build(drift_notebook(make_nb, call))
    found = [d for d in info.value.errors if d.code == code]
    assert found and found[0].cell == 3 and needle in found[0].message, [d.format() for d in info.value.errors]


def test_unknown_component_and_undefined_variable(make_nb: Make) -> None:
    nb = make_nb([(["component:no-such-thing@1.0"], "a = 1")])
    with pytest.raises(NotebookError) as info:
        build(nb)
    assert [d.code for d in info.value.errors] == ["NB090"]
    nb = make_nb([(["component:data-drift-check"], "reference = nowhere\ncurrent = nowhere\ncolumn = 'x'")])
    with pytest.raises(NotebookError) as info:
        build(nb)
    assert any(d.code == "NB020" and "nowhere" in d.message for d in info.value.errors)


def test_catalog_paths_and_versions_from_settings(make_nb: Make, tmp_path: Path) -> None:
    (tmp_path / "nb2kfp.toml").write_text('[catalog]\npaths = ["components"]\n')
    folder = tmp_path / "components" / "drift"
    folder.mkdir(parents=True)
    for version in ("0.9.0", "0.10.0"):
        shutil.copy(BUNDLED / "data-drift-check" / "0.1.0.yaml", folder / f"{version}.yaml")
    nb = drift_notebook(make_nb, "reference = ref_path\ncurrent = cur_path\ncolumn = 'x'")
    raw = json.loads(nb.read_text())
    raw["cells"][2]["metadata"]["tags"] = ["component:drift"]
    nb.write_text(json.dumps(raw))
    p = build(nb, find_settings(tmp_path)).pipeline
    component = p.step("drift").component
    assert component is not None and component.version == "0.10.0"
    raw["cells"][2]["metadata"]["tags"] = ["component:drift@0.9.0", "step:check", "cache:disabled"]
    nb.write_text(json.dumps(raw))
    p = build(nb, find_settings(tmp_path)).pipeline
    assert p.step("check").component.version == "0.9.0" and not p.step("check").caching  # type: ignore[union-attr]
    lines: list[str] = []
    assert catalog_cmd.run_list(tmp_path, lines.append, as_json=False) == 0
    assert lines[:2] == [f"drift@0.9.0  {folder / '0.9.0.yaml'}", f"drift@0.10.0  {folder / '0.10.0.yaml'}"]
    assert any(line.startswith("data-drift-check@0.1.0") for line in lines)
    shown: list[str] = []
    catalog_cmd.run_show("data-drift-check", tmp_path, shown.append, as_json=True)
    doc = json.loads(shown[0])
    assert {i["name"]: i["required"] for i in doc["inputs"]}["column"] is True
    assert [o["name"] for o in doc["outputs"]] == ["drift_score", "drifted"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "served"
    (root / "remote-drift").mkdir(parents=True)
    shutil.copy(BUNDLED / "data-drift-check" / "0.1.0.yaml", root / "remote-drift" / "2.0.yaml")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_catalog_urls_are_fetched_and_cached(served: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(catalog.NotCached):  # lint and compile never fetch
        catalog.find("remote-drift", "2.0", [], [served])
    found = catalog.find("remote-drift", "2.0", [], [served], fetch=True)
    assert found is not None and found.call.source == f"{served}/remote-drift/2.0.yaml"
    assert list((tmp_path / "cache").rglob("2.0.yaml"))
    assert catalog.find("remote-drift", "2.0", [], [served]) == found  # from the cache
    with pytest.raises(ValueError, match=r"URLError"):
        catalog.find("remote-drift", "2.0", [], ["http://127.0.0.1:9"], fetch=True)
    assert catalog.find("remote-drift", "3.0", [], [served], fetch=True) is None
    assert catalog.find("remote-drift", "3.0", [], [served]) is None  # the fetch recorded its absence


def test_bundled_components_load_with_the_kfp_sdk() -> None:
    from kfp import components

    for name in ("data-drift-check", "papermill-runner"):
        comp = components.load_component_from_file(str(BUNDLED / name / "0.1.0.yaml"))
        assert comp.name == name


@pytest.mark.slow
def test_data_drift_check_runs_with_kfp_local(make_nb: Make) -> None:
    nb = drift_notebook(make_nb)

    def run(*args: str) -> dict[str, object]:
        proc = run_local(nb, *args)
        assert proc.returncode == 0, proc.stderr
        return dict(json.loads(proc.stdout))

    drifted = run()
    assert drifted["steps"] == {"data": "succeeded", "data_drift_check": "succeeded", "decide": "succeeded"}
    assert drifted["metrics"]["score"] > 0.2  # type: ignore[index]
    stable = run("-p", "shift=0")
    assert stable["metrics"] == {"score": 0.0}


@pytest.mark.slow
def test_papermill_runner_executes_a_notebook_under_kfp_local(make_nb: Make, tmp_path: Path) -> None:
    """Under kfp.local's SubprocessRunner the component runs in this environment (which has papermill and
    ipykernel); on a cluster its image must provide them, and it says so when they are missing."""

    target = make_nb([(["parameters"], "x = 1"), ([], "y = x * 10\nprint(y)")], name="target.ipynb")
    nb = make_nb(
        [
            (["pipeline-parameters"], "x = 4"),
            (["step:prepare"], f"path = {str(target)!r}\nparams = {{'x': x}}"),
            (["component:papermill-runner"], "notebook_path = path\nparameters = params"),
            (
                ["step:check"],
                "import json\ncells = json.load(open(executed))['cells']\n"
                "[cell] = [c for c in cells if 'y = x' in ''.join(c['source'])]\n"
                "result = float(''.join(cell['outputs'][0]['text']))",
            ),
            (["pipeline-metrics"], "print(result)"),
        ],
        name="runner.ipynb",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--local", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["metrics"] == {"result": 40.0}
