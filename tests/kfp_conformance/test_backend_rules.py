"""What the KFP backend does with nb2kfp's specs, one test per rule, each naming the backend source it encodes
(kubeflow/pipelines at the tag given, argoproj/argo-workflows v4.0.5; read with `fetch`, quoted in
docs/kfp-backend.md). Nothing here runs a KFP cluster: the tests hold the specs to what that code accepts, and run
what can run here (kfp.local, the step's bootstrap) the way the cluster would.

Specs checked: the bundled examples, a 200-step chain, and a notebook that uses every step tag.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from clirun import Make
from conftest import EXAMPLES, require, run_local_json
from nb2kfp import kfpnames
from nb2kfp.backends import kfp_manifests, kfp_spec, step_runtime
from nb2kfp.config import find_settings
from nb2kfp.errors import NotebookError, UsageError
from nb2kfp.frontend.builder import build
from nbfactory import Cell, write

EVERY_TAG: list[Cell] = [
    (["imports"], "import json\nimport math"),
    (["functions"], "def double(v):\n    return 2 * v"),
    (["pipeline-parameters"], "n = 3\nname = 'run [[RunUUID]] at {{$.inputs}}'\nopts = {'k': [1, 2]}"),
    (
        ["step:load", "limit:cpu:1", "limit:memory:1Gi", "request:cpu:500m", "label:team:ml", "annotation:owner:me"],
        "xs = list(range(n))",
    ),
    (
        ["step:train", "prev:load", "retry:2", "timeout:10m", "cache:disabled", "secret:db:password:DB_PASS"],
        "total = sum(double(x) for x in xs)",
    ),
    (
        ["step:report", "prev:train", "node:pool:cpu", "toleration:dedicated:ml:NoSchedule", "report:enabled"],
        "score = total / 2\nprint(name, opts)",
    ),
    (["skip"], "print('not in the pipeline')"),
    (["pipeline-metrics"], "print(score)"),
]

Specs = dict[str, Any]  # the specs fixture: name -> compiled spec


def _errors(path: Path) -> list[Any]:
    """The error diagnostics of compiling ``path`` (none when it compiles)."""
    try:
        build(path)
    except NotebookError as exc:
        return list(exc.errors)
    return []


def _chain(steps: int) -> list[Cell]:
    first: list[Cell] = [(["step:s0"], "x0 = 1")]
    return first + [([f"step:s{i}", f"prev:s{i - 1}"], f"x{i} = x{i - 1} + 1") for i in range(1, steps)]


@pytest.fixture(scope="module")
def specs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Any, dict[str, Any], dict[str, Any] | None]]]:
    """name -> (IR pipeline, spec, platform document) for every notebook the rules are checked on."""
    folder = tmp_path_factory.mktemp("conformance")
    notebooks = {p.stem: p for p in sorted(EXAMPLES.glob("*.ipynb"))}
    notebooks["every-tag"] = write(folder / "every_tag.ipynb", EVERY_TAG)
    notebooks["chain-200"] = write(folder / "chain.ipynb", _chain(200))
    out = {}
    for name, path in notebooks.items():
        pipeline = build(path).pipeline
        docs = list(yaml.safe_load_all(kfp_spec.render(pipeline)))
        out[name] = (pipeline, docs[0], docs[1] if len(docs) > 1 else None)
    yield out


def test_the_runtime_is_never_a_parameter_and_each_executor_input_holds_only_the_notebooks(
    specs: dict[str, Any],
) -> None:
    """kubeflow/pipelines 2.14.0 backend/src/v2/driver/driver.go:166,192 and 2.17.0 driver/driver.go:280,326:
    the driver marshals a task's whole executor input (every input parameter value) into the launcher command of the
    pod-spec-patch it outputs, which Argo records per node. A step's parameters are the notebook's own: the runtime
    reaches it as an artifact, whose executor-input entry is a URI."""
    for name, (pipeline, spec, _) in specs.items():
        declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        assert set(declared) == {p.name for p in pipeline.parameters}, name
        for task, body in spec["root"]["dag"]["tasks"].items():
            wired = body.get("inputs", {}).get("parameters", {})
            assert set(wired) <= {p.name for p in pipeline.parameters}, (name, task)
        runtime = step_runtime.runtime_source()
        assert runtime not in json.dumps(spec), name  # the source is only in the runtime task, compressed


def test_a_run_parameter_cannot_change_a_steps_code(specs: Specs, tmp_path: Path) -> None:
    """The runtime comes from one task's output artifact and each step checks its SHA-256 before running it: a
    run's parameters (kubeflow/pipelines 2.17.0 backend/src/apiserver/template/v2_template.go:343 passes them to
    every task that wires them) cannot name it, and an artifact replaced in the object store is refused."""
    for name, (_, spec, _) in specs.items():
        assert kfpnames.RUNTIME_TASK not in spec["root"].get("inputDefinitions", {}).get("parameters", {}), name
    forged = tmp_path / "runtime.py"
    forged.write_text("open('pwned', 'w').write('x')\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", step_runtime.bootstrap(), "--executor-input", "{}", "--runtime", str(forged)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "not the step runtime of this pipeline" in proc.stderr
    assert not (tmp_path / "pwned").exists()


def test_the_runtime_task_is_one_cached_container_every_unbuilt_step_depends_on(specs: Specs) -> None:
    """argocompiler stores each distinct component and container once in spec.arguments (kubeflow/pipelines 2.17.0
    backend/src/v2/compiler/argocompiler/container.go:73-80, saveComponentSpec/saveComponentImpl): the compressed
    runtime is in the Workflow once, and its task is cached like any step."""
    for name, (pipeline, spec, _) in specs.items():
        tasks = spec["root"]["dag"]["tasks"]
        assert tasks[kfpnames.RUNTIME_TASK]["cachingOptions"] == {"enableCache": True}, name
        executors = spec["deploymentSpec"]["executors"]
        writer = executors[kfpnames.executor_key(kfpnames.RUNTIME_TASK)]["container"]
        assert len(writer["command"][2]) < 32 * 1024, name  # compressed: 22 KB for the 51 KB runtime
        for step in pipeline.steps:
            if step.component is None:
                task = tasks[kfpnames.task_name(step.name)]
                assert kfpnames.RUNTIME_TASK in task["dependentTasks"], (name, step.name)


def test_the_runtime_task_hands_the_runtime_over_under_kfp_local(make_nb: Make) -> None:
    """The runtime task's outputs come from its executor output file, as kfp.local reads them
    (kfp/local/executor_output_utils.py get_outputs_for_task) and KFP's launcher does (kubeflow/pipelines 2.17.0
    backend/src/v2/component/launcher_v2.go:1232); a step then runs the runtime from the artifact."""
    nb = make_nb([(["step:a"], "x = 20"), (["step:b", "prev:a"], "y = x + 1"), (["pipeline-metrics"], "print(y)")])
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"y": 21} and set(record["steps"]) == {"a", "b"}  # nb2kfp's task is no step


def test_workspaces_name_an_access_mode_and_2_14_is_refused(make_nb: Make, tmp_path: Path) -> None:
    """kubeflow/pipelines 2.15.0 backend/src/v2/compiler/argocompiler/argo.go:549 (2.17.0 argo.go:664): "workspace
    PVC spec must specify accessModes" unless the admin configured a default; 2.15.0 argo.go:552 (2.16.0 :578) also
    "must specify storageClassName", 2.17 takes the cluster's default class. 2.14.0 has workspaces in the compiler
    but its driver never substitutes {{$.workspace_path}} (2.15.0 backend/src/v2/driver/resolve.go:414 does)."""
    cells = [(["step:a"], "open('f', 'w').write('1')"), (["step:b", "prev:a"], "print(open('f').read())")]
    nb = make_nb(cells, metadata={"kubeflow_notebook": {"workspace": "1Gi"}})
    docs = list(yaml.safe_load_all(kfp_spec.render(build(nb).pipeline)))
    workspace = docs[1]["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]
    assert workspace["kubernetes"]["pvcSpecPatch"] == {"accessModes": ["ReadWriteOnce"]}  # argo.go:609-611: no more
    spec = tmp_path / "p.yaml"
    spec.write_text(kfp_spec.render(build(nb).pipeline))
    with pytest.raises(UsageError, match="has no pipeline workspaces"):
        kfp_manifests.write_manifests(spec, "nb", "v1", tmp_path / "out", kfp_version="2.14.0")
    with pytest.raises(UsageError, match="needs the workspace's storage class: set workspace_storage_class"):
        kfp_manifests.write_manifests(spec, "nb", "v1", tmp_path / "out", kfp_version="2.16.1")
    assert kfp_manifests.write_manifests(spec, "nb", "v1", tmp_path / "out", kfp_version="2.17.0")

    (tmp_path / "nb2kfp.toml").write_text('workspace_storage_class = "standard-rwo"\n')
    spec.write_text(kfp_spec.render(build(nb, find_settings(tmp_path)).pipeline))
    patch = list(yaml.safe_load_all(spec.read_text()))[1]["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]
    assert patch["kubernetes"]["pvcSpecPatch"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard-rwo"}
    assert kfp_manifests.write_manifests(spec, "nb", "v1", tmp_path / "out15", kfp_version="2.15.0")


def test_catalog_calls_pass_every_input_that_has_a_default(make_nb: Make) -> None:
    """kubeflow/pipelines 2.17.0 backend/src/v2/driver/driver.go:309-315 resolves the container's args with
    util.go:176 ("parameter %q not found in executor input") before the launcher applies component defaults
    (component/launcher_v2.go:1311-1330): a task must pass every input the args name."""
    nb = make_nb(
        [
            (
                ["step:data"],
                "ref_path = 'r.csv'\ncur_path = 'c.csv'\n"
                "open(ref_path, 'w').write('x\\n1\\n')\nopen(cur_path, 'w').write('x\\n1\\n')",
            ),
            (["component:data-drift-check"], "reference = ref_path\ncurrent = cur_path\ncolumn = 'x'"),
        ]
    )
    spec = next(yaml.safe_load_all(kfp_spec.render(build(nb).pipeline)))
    declared = spec["components"]["comp-data-drift-check"]["inputDefinitions"]["parameters"]
    passed = spec["root"]["dag"]["tasks"]["data-drift-check"]["inputs"]["parameters"]
    assert set(passed) == set(declared)
    assert passed["method"] == {"runtimeValue": {"constant": "psi"}}
    assert passed["threshold"] == {"runtimeValue": {"constant": 0.2}}


def test_a_nan_or_infinite_metric_is_left_out_and_the_step_succeeds(make_nb: Make) -> None:
    """KFP's launcher parses the step's executor output with protojson (kubeflow/pipelines 2.14.0
    backend/src/v2/component/launcher_v2.go:879, 2.17.0 :1232), which has no NaN or Infinity: a NaN metric failed
    the step after its code succeeded (and `run --local` crashed in kfp.local's protobuf parser)."""
    nb = make_nb(
        [
            (["step:a"], "import math\nacc = float('nan')\nloss = math.inf\nok = 0.5"),
            (["pipeline-metrics"], "print(acc)\nprint(loss)\nprint(ok)"),
        ]
    )
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"ok": 0.5}
    log = (Path(record["run_dir"]) / "run.log").read_text()
    assert "metric 'acc' is nan: KFP metrics are finite numbers" in log and "metric 'loss' is inf" in log


def test_step_and_pipeline_names_fit_argo_and_the_api_server(make_nb: Make) -> None:
    """Argo refuses DAG task names over 128 characters (argo-workflows v4.0.5 workflow/validate/validate.go:1626)
    and KFP names each driver TASK-driver (kubeflow/pipelines 2.17.0 backend/src/v2/compiler/argocompiler/
    dag.go:250): step names up to 121. The API server refuses pipeline names over 128 (2.14.0-2.17.0
    backend/src/apiserver/common/utils.go:114), suffix included."""
    at_limit = "s" * kfpnames.MAX_TASK_NAME
    assert _errors(make_nb([([f"step:{at_limit}"], "x = 1")])) == []
    over = _errors(make_nb([([f"step:{at_limit}x"], "x = 1")], name="o.ipynb"))
    assert [d.code for d in over] == ["NB055"]
    assert "cell 1" in over[0].format() and "-driver" in over[0].message
    name = "p" * kfpnames.MAX_TASK_NAME  # a step named as the pipeline: KFP's loader needs the name "-pipeline"
    nb = make_nb(
        [([f"step:{name}"], "x = 1")], name="clash.ipynb", metadata={"kubeflow_notebook": {"pipeline_name": name}}
    )
    spec = next(yaml.safe_load_all(kfp_spec.render(build(nb).pipeline)))
    assert len(spec["pipelineInfo"]["name"]) <= kfpnames.MAX_PIPELINE_NAME and spec["pipelineInfo"]["name"].endswith(
        "-pipeline"
    )


@pytest.mark.parametrize(
    ("tag", "refused"),
    [
        ("label:team:ml/vision:v2", True),  # a label value holds no '/' or ':'
        ("label:team:" + "v" * 64, True),  # 63 at most
        ("label:" + "k" * 64 + ":v", True),
        ("label:Example.COM/team:ml", True),  # a key's prefix is a lowercase DNS subdomain
        ("label:example.com/team:ml-vision_2.0", False),
        ("label:team:", False),  # an empty value is a value
        ("annotation:owner:any text: even / and :", False),  # annotation values are free text
    ],
)
def test_pod_labels_and_annotations_kubernetes_refuses_are_lint_errors(make_nb: Make, tag: str, refused: bool) -> None:
    """KFP copies label:/annotation: tags into the pod's metadata (kubeflow/pipelines 2.17.0 backend/src/v2/
    compiler/argocompiler/container.go:746-770, extendPodMetadata); Kubernetes' validation refuses keys and label
    values outside its qualified-name rules, so the pod never starts."""
    errors = _errors(make_nb([(["step:a", tag], "x = 1")]))
    assert [d.code for d in errors] == (["NB056"] if refused else []), [d.format() for d in errors]


def test_run_macros_in_text_parameters_arrive_as_written(make_nb: Make) -> None:
    """KFP 2.16+ replaces [[RunUUID]], [[CurrentTime]], [[ScheduledTime]], [[Index]] in every string parameter of
    a run (kubeflow/pipelines 2.16.0 backend/src/apiserver/template/v2_template.go:326, 2.17.0 :343, with
    backend/src/common/util/parameter_formatter.go:28-33,91). Such text travels encoded and the step decodes it."""
    text = "id [[RunUUID]] at [[CurrentTime.2006]] n [[Index]] / [[ScheduledTime]] and [[other]]"
    nb = make_nb(
        [
            (["pipeline-parameters"], f"label = {text!r}\nnested = {{'k': [{text!r}]}}"),
            (["step:a"], "got = label\ngot_nested = nested['k'][0]"),
            (["step:b", "prev:a"], "same = int(got == got_nested)"),
            (["pipeline-metrics"], "print(same)"),
        ]
    )
    spec = next(yaml.safe_load_all(kfp_spec.render(build(nb).pipeline)))
    defaults = json.dumps(spec["root"]["inputDefinitions"]["parameters"])
    for macro in kfp_spec.RUN_MACROS:
        assert macro not in defaults
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"same": 1}
    proc, record = run_local_json(nb, "--no-cache", "-p", "label=[[RunUUID]]")
    assert proc.returncode == 0, proc.stderr


def test_a_parameter_too_large_for_one_argument_is_a_lint_error(make_nb: Make) -> None:
    """The driver hands a step its executor input, every parameter value, as one argument of the launcher command
    (kubeflow/pipelines 2.17.0 backend/src/v2/driver/driver.go:326); Linux caps one argv string at 128 KiB
    (MAX_ARG_STRLEN), so such a pod fails to start. Refused at lint, located."""
    big = "x" * (100 * 1024)
    errors = _errors(make_nb([(["pipeline-parameters"], f"blob = {big!r}"), (["step:a"], "n = len(blob)")]))
    assert [d.code for d in errors] == ["NB057"] and "128 KiB" in errors[0].message


def test_retry_n_reruns_a_failing_step_whatever_the_clusters_retry_policy(make_nb: Make) -> None:
    """KFP's task retryPolicy cannot choose Argo's retryPolicy, and KFP 2.17's default install gives every template
    ``retryPolicy: OnError`` (kubeflow/pipelines 2.17.0 manifests/kustomize/third-party/argo/base/
    workflow-controller-configmap-patch.yaml:57-59): a Python exception (a Failed pod) was never retried, and
    ``backoffMaxDuration`` (argo-workflows v4.0.5 workflow/controller/operator.go:1028) is a window from the first
    attempt. retry:N now reruns the step's code in its pod, each attempt a fresh process."""
    flaky = (
        "import os\n"
        "seen = int(open('count').read()) if os.path.exists('count') else 0\n"
        "open('count', 'w').write(str(seen + 1))\n"
        "leaked = globals().get('leaked', 0) + 1\n"
        "if seen < 2:\n"
        "    raise RuntimeError('flaky')\n"
        "attempts = seen + 1"
    )
    nb = make_nb([(["step:a", "retry:2"], flaky), (["pipeline-metrics"], "print(attempts)\nprint(leaked)")])
    spec = next(yaml.safe_load_all(kfp_spec.render(build(nb).pipeline)))
    assert "retryPolicy" not in spec["root"]["dag"]["tasks"]["a"]
    proc, record = run_local_json(nb, "--no-cache")
    assert proc.returncode == 0, proc.stderr
    assert record["metrics"] == {"attempts": 3, "leaked": 1}  # each attempt a fresh process
    assert (
        "failed (attempt 1 of 3): trying again in 1 s"
        in proc.stderr + (Path(record["run_dir"]) / "run.log").read_text()
    )

    never = make_nb([(["step:a", "retry:1"], "raise ValueError('always')")], name="never.ipynb")
    proc, record = run_local_json(never, "--no-cache")
    assert proc.returncode == 1 and record["steps"] == {"a": "failed"}
    assert "failed 2 times (retry:1)" in (Path(record["run_dir"]) / "run.log").read_text()


def test_a_step_report_is_a_page_the_ui_can_show_without_nbconvert(make_nb: Make, tmp_path: Path) -> None:
    """KFP's UI shows a system.HTML artifact as a page; without nbconvert in the step image the report was the
    notebook's JSON, shown raw. Now a page of the runtime's own, whose HTML outputs sit in a sandboxed frame."""
    pipeline = build(
        make_nb(
            [
                (
                    ["step:a", "report:enabled"],
                    "from IPython.display import HTML\n"
                    "print('rows <3>')\n"
                    "display(HTML('<table><tr><td>cell-1</td></tr></table>'\n"
                    "             '<script>document.title = \"PWNED\"</script>'))",
                )
            ],
            name="r.ipynb",
        )
    ).pipeline
    blocker = tmp_path / "blocker"
    (blocker / "nbconvert").mkdir(parents=True)
    (blocker / "nbconvert" / "__init__.py").write_text("raise ImportError('no nbconvert in this image')\n")
    report = tmp_path / "out" / "report"
    executor_input = {
        "inputs": {},
        "outputs": {"artifacts": {kfp_spec.REPORT_KEY: {"artifacts": [{"name": "r", "uri": str(report)}]}}},
    }
    runtime = tmp_path / "runtime.py"
    runtime.write_text(step_runtime.runtime_source(), encoding="utf-8")
    spec = kfp_spec.step_spec(pipeline, pipeline.step("a"))
    args = ["--executor-input", json.dumps(executor_input), "--runtime", str(runtime), "--spec", json.dumps(spec)]
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", step_runtime.bootstrap(), *args],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(blocker)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and "rows &lt;3&gt;" in page and "<iframe sandbox=" in page
    shown = shutil.which("chromium")
    require(shown is not None, "chromium is not installed (apt-get install chromium)")
    opened = shutil.copy(report, tmp_path / "report.html")  # as the UI serves it: a page
    dom = subprocess.run(
        [str(shown), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", Path(opened).as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "<title>r.ipynb: step a</title>" in dom and "PWNED" not in dom.split("</title>")[0]


@pytest.mark.parametrize(
    ("source", "warned"),
    [
        ("!sudo apt-get install -y graphviz", True),
        ("!apt-get update", True),
        ("%%bash\necho start\napt-get install -y jq\n", True),
        ("!echo apt is a word here\n!ls", False),
        ("!pip install pandas", False),  # skipped in a step anyway (NB2KFP_ALLOW_INSTALL)
    ],
)
def test_shell_commands_that_need_privileges_are_a_lint_warning(make_nb: Make, source: str, warned: bool) -> None:
    """KFP 2.16+ drops every capability and privilege escalation in the user container (kubeflow/pipelines 2.16.0
    backend/src/v2/compiler/argocompiler/security_context.go:163-172, 2.17.0 the same): `!apt-get`, `!sudo` fail."""
    result = build(make_nb([(["step:a"], source)]))
    codes = [d.code for d in result.diagnostics if d.code != "NB033"]  # NB033: installs are skipped in a step
    assert codes == (["NB058"] if warned else []), [d.format() for d in result.diagnostics]
    if warned:
        assert "cell 1" in result.diagnostics[0].format() and "step image" in result.diagnostics[0].message


def test_a_200_step_chain_fits_argos_limit_on_every_release(specs: Specs) -> None:
    """The Workflow KFP makes of a 200-step chain, after every node ran (2.17's retry wrappers counted), stays under
    Argo's 1 MiB (argo-workflows v4.0.5 workflow/packer/packer.go:17-23,89-96), for the default image and for a
    built step image (nb2kfp.backends.argo_size models the copies; docs/kfp-backend.md cites them)."""
    from nb2kfp.backends import argo_size
    from nb2kfp.service import pin

    pipeline = specs["chain-200"][0]
    built = pin(pipeline, "registry.example.com/ml/p@sha256:" + "0" * 64)
    for which in (pipeline, built):
        spec, platform = kfp_spec.build_documents(which)
        for version in argo_size.KFP_VERSIONS:
            found = argo_size.estimate(spec, platform, version)
            assert argo_size.fits(found), (version, found.total)


def test_compile_and_publish_refuse_a_pipeline_argo_would_fail(tmp_path: Path) -> None:
    """A run whose Workflow outgrows Argo's limit ends in Error mid-run (kubeflow/pipelines#13738): compile and
    publish say so first, with the figure, the limit and what to do, and write nothing."""
    nb = write(tmp_path / "long.ipynb", _chain(330))
    out = tmp_path / "long.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "compile", str(nb), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and not out.exists(), proc.stderr
    assert "long.ipynb: error: on KFP 2.17 this pipeline becomes an Argo Workflow of about" in proc.stderr
    assert "1 MiB limit" in proc.stderr and "[NB059]" in proc.stderr and "Traceback" not in proc.stderr
    manifests = tmp_path / "k8s"
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "publish", str(nb), "--manifests", str(manifests), "--commit", "a" * 40],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "[NB059]" in proc.stderr and not list(manifests.glob("*")), proc.stderr
