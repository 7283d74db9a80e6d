"""The rendered pipeline spec: deterministic, KFP-shaped, and loadable by the real KFP SDK."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from clirun import Make
from conftest import EXAMPLES, ROOT, require
from nb2kfp.backends import kfp_spec, step_runtime
from nb2kfp.frontend.builder import build
from nbfactory import write


def spec_of(path: Path) -> dict[str, Any]:
    return next(yaml.safe_load_all(kfp_spec.render(build(path).pipeline)))


@pytest.mark.parametrize("name", ["wordcount.ipynb", "iris_diamond.ipynb", "magics_functions.ipynb"])
def test_examples_load_with_the_kfp_sdk(name: str, tmp_path: Path) -> None:
    from kfp import components

    out = tmp_path / "p.yaml"
    out.write_text(kfp_spec.render(build(EXAMPLES / name).pipeline))
    component = components.load_component_from_file(str(out))
    assert component.name == build(EXAMPLES / name).pipeline.name.replace("-", "_") or component.name


def test_render_is_byte_identical_and_path_independent(tmp_path: Path) -> None:
    src = EXAMPLES / "iris_diamond.ipynb"
    copy = tmp_path / "deep" / "folder" / "iris_diamond.ipynb"
    copy.parent.mkdir(parents=True)
    shutil.copy(src, copy)
    first = kfp_spec.render(build(src).pipeline, "s")
    assert first == kfp_spec.render(build(src).pipeline, "s")
    assert first == kfp_spec.render(build(copy).pipeline, "s")
    assert str(tmp_path) not in first and "/tmp" not in first


def test_spec_shape(make_nb: Make) -> None:
    nb = make_nb(
        [
            (["pipeline-parameters"], 'n = 2\nname = "O\'Brien"'),
            (
                ["step:load", "cache:disabled", "limit:cpu:500m", "limit:memory:2Gi", "limit:nvidia.com/gpu:1"],
                "xs = list(range(n))",
            ),
            (
                ["step:train", "prev:load", "label:team:ml", "annotation:owner:me", "secret:db-creds:password:DB_PASS"],
                "total = sum(xs)\nprint(name)",
            ),
            (["pipeline-metrics"], "print(total)"),
        ]
    )
    text = kfp_spec.render(build(nb).pipeline)
    spec, platform = yaml.safe_load_all(text)
    root = spec["root"]
    assert root["inputDefinitions"]["parameters"]["n"] == {
        "defaultValue": 2,
        "isOptional": True,
        "parameterType": "NUMBER_INTEGER",
    }
    tasks = root["dag"]["tasks"]
    assert tasks["load"]["cachingOptions"] == {}
    assert tasks["train"]["cachingOptions"] == {"enableCache": True}
    assert tasks["train"]["dependentTasks"] == ["load", "nb2kfp-runtime"]
    assert tasks["train"]["inputs"]["artifacts"]["xs"] == {
        "taskOutputArtifact": {"outputArtifactKey": "xs", "producerTask": "load"}
    }
    assert tasks["train"]["inputs"]["parameters"] == {"name": {"componentInputParameter": "name"}}
    assert tasks["train"]["inputs"]["artifacts"]["nb2kfp-runtime"] == {
        "taskOutputArtifact": {"outputArtifactKey": "runtime", "producerTask": "nb2kfp-runtime"}
    }
    res = spec["deploymentSpec"]["executors"]["exec-load"]["container"]["resources"]
    assert res["cpuLimit"] == 0.5 and res["resourceMemoryLimit"] == "2Gi"
    assert res["memoryLimit"] == pytest.approx(2 * 2**30 / 1e9)
    assert res["accelerator"]["resourceType"] == "nvidia.com/gpu" and res["accelerator"]["count"] == "1"
    comp = spec["components"]["comp-train"]
    assert comp["outputDefinitions"]["artifacts"]["pipeline-metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    ex = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert ex["podMetadata"] == {"annotations": {"owner": "me"}, "labels": {"team": "ml"}}
    assert ex["secretAsEnv"][0]["keyToEnv"] == [{"envVar": "DB_PASS", "secretKey": "password"}]
    assert "O'Brien" not in str(spec["deploymentSpec"])  # parameter values are inputs, never pasted into code


def test_placeholders_in_user_code_are_escaped(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "s = '{{$}} and {{$.inputs}}'")])
    args = spec_of(nb)["deploymentSpec"]["executors"]["exec-a"]["container"]["args"]
    assert args[:4] == ["--executor-input", "{{$}}", "--runtime", "{{$.inputs.artifacts['nb2kfp-runtime'].path}}"]
    assert not any("{{$" in a for a in args[4:])


def test_pipeline_name_never_equals_a_component(make_nb: Make) -> None:
    nb = make_nb([(["step:train"], "x = 1")], name="train.ipynb")
    assert spec_of(nb)["pipelineInfo"]["name"] == "train-pipeline"


def test_other_python_versions_render_the_same_bytes() -> None:
    """Runs the compiler under each interpreter in NB2KFP_OTHER_PYTHONS (set by .ci/run: 3.12)."""
    others = os.environ.get("NB2KFP_OTHER_PYTHONS", "").split()
    require(bool(others), "NB2KFP_OTHER_PYTHONS names no other interpreter with nb2kfp installed")
    code = (
        "import sys; from nb2kfp.backends import kfp_spec; from nb2kfp.frontend.builder import build;"
        "sys.stdout.write(kfp_spec.render(build(sys.argv[1]).pipeline, 'x'))"
    )
    for name in ["iris_diamond.ipynb", "magics_functions.ipynb", "wordcount.ipynb"]:
        here = kfp_spec.render(build(EXAMPLES / name).pipeline, "x")
        for python in others:
            out = subprocess.run(
                [python, "-c", code, str(EXAMPLES / name)], capture_output=True, text=True, check=True, cwd=ROOT
            )
            assert out.stdout == here, f"{python} renders {name} differently"


def test_header_comments_stay_valid_yaml(make_nb: Make) -> None:
    meta = {"kubeflow_notebook": {"pipeline_description": "first line\nsecond \x7f line"}}
    nb = make_nb([(["pipeline-parameters"], "p = '\\x7f\\x00é'"), (["step:a"], "print(p)")], metadata=meta)
    text = kfp_spec.render(build(nb).pipeline)
    assert "# Description: first line\n#              second \\x7f line\n" in text
    assert 'p: str [Default: "\\x7f\\u0000é"]' in text
    spec = next(yaml.safe_load_all(text))
    assert spec["root"]["inputDefinitions"]["parameters"]["p"]["defaultValue"] == "\x7f\x00é"


def test_kale_pvc_volumes_become_pvc_mounts(make_nb: Make, tmp_path: Path) -> None:
    from kfp import components

    meta = {
        "kubeflow_notebook": {
            "volumes": [
                {"name": "raw-data", "type": "pvc", "mount_point": "/data", "expose_as_env_var": True},
                {"name": "scratch", "type": "new_pvc", "mount_point": "/scratch", "size": 1},
            ]
        }
    }
    nb = make_nb([(["step:load"], "p = '/data/x'"), (["step:train"], "q = p + '!'")], metadata=meta)
    result = build(nb)
    assert any(d.code == "NB052" and "'new_pvc'" in d.message for d in result.diagnostics)
    text = kfp_spec.render(result.pipeline)
    spec, platform = yaml.safe_load_all(text)
    for task in ("load", "train"):
        ex = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"][f"exec-{task}"]
        assert ex["pvcMount"] == [
            {
                "constant": "raw-data",
                "mountPath": "/data",
                "pvcNameParameter": {"runtimeValue": {"constant": "raw-data"}},
            }
        ]
        container = spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]
        assert {"name": "KALE_VOLUME_RAW_DATA", "value": "/data"} in container["env"]
    assert spec["root"]["dag"]["tasks"]["train"]["dependentTasks"] == ["load", "nb2kfp-runtime"]
    out = tmp_path / "p.yaml"
    out.write_text(text)
    components.load_component_from_file(str(out))


def test_scheduling_tags_match_what_the_kfp_sdk_writes(make_nb: Make, tmp_path: Path) -> None:
    """request:, node:, toleration:, retry: and timeout: against the SDK + kfp-kubernetes on the same settings."""
    from kfp import compiler, components, dsl, kubernetes

    tags = [
        "step:train",
        "request:cpu:500m",
        "request:memory:1Gi",
        "node:gpu:a100",
        "toleration:dedicated:ml:NoSchedule",
        "toleration:spot:NoExecute",
        "retry:3",
        "timeout:10m",
    ]
    ours_text = kfp_spec.render(build(make_nb([(tags, "x = 1")])).pipeline)
    ours, ours_platform = yaml.safe_load_all(ours_text)

    @dsl.container_component
    def train():  # type: ignore[no-untyped-def]  # kfp reads the real annotation: none here
        return dsl.ContainerSpec(image="python:3.11-slim", command=["true"])

    @dsl.pipeline(name="p")
    def reference():  # type: ignore[no-untyped-def]
        t = train().set_cpu_request("500m").set_memory_request("1Gi").set_retry(num_retries=3)
        kubernetes.add_node_selector(t, label_key="gpu", label_value="a100")
        kubernetes.add_toleration(t, key="dedicated", operator="Equal", value="ml", effect="NoSchedule")
        kubernetes.add_toleration(t, key="spot", operator="Exists", effect="NoExecute")
        kubernetes.set_timeout(t, 600)

    compiler.Compiler().compile(reference, str(tmp_path / "ref.yaml"))
    ref, ref_platform = yaml.safe_load_all((tmp_path / "ref.yaml").read_text())
    container = ours["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert container["resources"] == ref["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert "retryPolicy" in ref["root"]["dag"]["tasks"]["train"]  # a notebook step retries in its pod instead:
    assert "retryPolicy" not in ours["root"]["dag"]["tasks"]["train"]  # tests/kfp_conformance (retry:N)
    assert (
        ours_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
        == ref_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    )
    (tmp_path / "ours.yaml").write_text(ours_text)
    components.load_component_from_file(str(tmp_path / "ours.yaml"))


@pytest.mark.parametrize(
    ("tag", "fragment"),
    [
        ("request:nvidia.com/gpu:1", "takes requests for cpu"),
        ("retry:1000", "unknown tag"),
        ("timeout:0", "unknown tag"),
        ("toleration:k:v:Sometimes", "unknown tag"),
    ],
)
def test_bad_scheduling_tags_are_located_errors(make_nb: Make, tag: str, fragment: str) -> None:
    from nb2kfp.errors import NotebookError

    with pytest.raises(NotebookError) as info:
        build(make_nb([(["step:a", tag], "x = 1")]))
    assert any(fragment in d.message and d.cell == 1 for d in info.value.errors)


def test_workspace_is_shared_by_every_step_and_runs_under_kfp_local(make_nb: Make, tmp_path: Path) -> None:
    """A workspace (`workspace = "1Gi"` in settings) is KFP's pipeline workspace; kfp.local backs it with a folder."""
    import json
    import subprocess
    import sys

    (tmp_path / "nb2kfp.toml").write_text('workspace = "1Gi"\n')
    nb = make_nb(
        [
            (["step:write"], "import os\nopen(os.path.join(os.environ['NB2KFP_WORKSPACE'], 'f.txt'), 'w').write('hi')"),
            (["step:read"], "import os\nsize = len(open(os.environ['NB2KFP_WORKSPACE'] + '/f.txt').read())"),
            (["pipeline-metrics"], "print(size)"),
        ]
    )
    from nb2kfp.config import find_settings

    text = kfp_spec.render(build(nb, find_settings(tmp_path)).pipeline)
    spec, platform = yaml.safe_load_all(text)
    assert platform["platforms"]["kubernetes"]["pipelineConfig"]["workspace"]["size"] == "1Gi"
    assert spec["root"]["dag"]["tasks"]["read"]["inputs"]["parameters"]["nb2kfp-workspace"] == {
        "runtimeValue": {"constant": "{{$.workspace_path}}"}
    }
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "run", str(nb), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["metrics"] == {"size": 2.0}
    (tmp_path / "nb2kfp.toml").write_text('workspace = "lots"\n')
    from nb2kfp.errors import UsageError

    with pytest.raises(UsageError):
        find_settings(tmp_path)


def test_runtime_is_in_the_spec_once(tmp_path: Path) -> None:
    """The step runtime once per spec, not once per step: a 200-step pipeline stays well under Kubernetes'
    ~1.5 MiB object limit (it was 4.3 MB with the runtime in every step's command). It travels as the output
    artifact of one task (compressed in its command), never as a parameter: no pipeline input holds it. The
    README's figures for both sizes stay within 5% of the real ones."""
    cells = [(["step:s0"], "x0 = 1")] + [
        ([f"step:s{i}", f"prev:s{i - 1}"], f"x{i} = x{i - 1} + 1") for i in range(1, 200)
    ]
    text = kfp_spec.render(build(write(tmp_path / "long.ipynb", cells)).pipeline)
    runtime = step_runtime.runtime_source()
    spec = yaml.safe_load(text)
    assert "inputDefinitions" not in spec["root"]  # the notebook has no parameters: the pipeline has none
    executors = spec["deploymentSpec"]["executors"]
    writer = executors.pop("exec-nb2kfp-runtime")["container"]
    assert writer["command"] == ["python3", "-c", step_runtime.writer()] and text.count("zlib.decompress") == 1
    assert len(text.encode()) < 512 * 1024
    commands = {tuple(e["container"]["command"]) for e in executors.values()}
    assert commands == {("python3", "-c", step_runtime.bootstrap())} and len(step_runtime.bootstrap()) < 640
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    found = re.search(r"step runtime \((\d+) KB as steps get it.*?A 200-step pipeline compiles to (\d+) KB", readme)
    assert found, "README: the Spec size paragraph"
    for stated, real in zip(map(int, found.groups()), (len(runtime.encode()), len(text.encode())), strict=True):
        assert abs(stated * 1000 - real) <= real * 0.05, f"README says {stated} KB, it is {real / 1000:.0f} KB"


def test_steps_in_a_built_step_image_run_the_runtime_inside_it(make_nb: Make) -> None:
    """After `nb2kfp build` (pin), steps on the built image run /opt/nb2kfp/step.py from it: no runtime in the
    spec at all when every step uses it; a step with its own image: tag still gets the shared copy."""
    from nb2kfp.service import pin

    built = "registry.example.com/ml/p@sha256:" + "0" * 64
    only = make_nb([(["step:a"], "x = 1"), (["step:b", "prev:a"], "print(x)")])
    spec = yaml.safe_load(kfp_spec.render(pin(build(only).pipeline, built)))
    containers = [e["container"] for e in spec["deploymentSpec"]["executors"].values()]
    assert [(c["image"], c["command"]) for c in containers] == [(built, ["python3", "/opt/nb2kfp/step.py"])] * 2
    assert "inputDefinitions" not in spec["root"] and "def _user_traceback(" not in str(spec)

    mixed = make_nb([(["step:a"], "x = 1"), (["step:b", "prev:a", "image:python:3.12"], "print(x)")], name="m.ipynb")
    spec = yaml.safe_load(kfp_spec.render(pin(build(mixed).pipeline, built)))
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-a"]["container"]["command"] == ["python3", "/opt/nb2kfp/step.py"]
    assert executors["exec-b"]["container"]["command"] == ["python3", "-c", step_runtime.bootstrap()]
    assert set(spec["root"]["dag"]["tasks"]["b"]["inputs"]["artifacts"]) == {"nb2kfp-runtime", "x"}
    assert executors["exec-nb2kfp-runtime"]["container"]["image"] == "python:3.12"  # the image of a step it serves
    assert "inputs" not in spec["root"]["dag"]["tasks"]["a"]
