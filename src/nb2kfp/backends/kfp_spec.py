"""IR -> KFP v2 pipeline spec (IR YAML), rendered directly: no kfp import on the compile path.

The output follows what KFP 2.17's compiler writes (sorted keys, the same header comments,
the kfp-kubernetes platform document for pod metadata and secrets) and is byte-identical for
the same input. Each step is a container component running nb2kfp's step runtime
(:mod:`nb2kfp.runtime.step`) through a short ``python3 -c`` bootstrap, with the executor input ``{{$}}`` and
a JSON step spec as arguments; the runtime is in the spec once (a first task hands it to the steps as an
artifact), or in nb2kfp's step image (:mod:`nb2kfp.backends.step_runtime`). Tests keep the real KFP SDK as the
judge: every spec must load and run.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nb2kfp import __version__, kfpnames
from nb2kfp import stamp as stamps
from nb2kfp.backends import components as called
from nb2kfp.backends import step_runtime, yaml_text
from nb2kfp.ir import CodeCell, Parameter, ParamValue, Pipeline, Step
from nb2kfp.runtime.step import PARAM_PREFIX
from nb2kfp.words import printable

SCHEMA_VERSION = "2.1.0"
METRICS_KEY = "pipeline-metrics"
# Beside a metrics step's system.Metrics (numbers only): a system.Markdown table of all its metrics, text included,
# which the KFP UI shows in the step's Visualizations (docs/kfp-backend.md, g)
METRICS_TEXT_KEY = "pipeline-metrics-text"
REPORT_KEY = "nb2kfp-report"  # a step's report (system.HTML), when Step.report asks for one
# A str value KFP would change (its {{$...}} placeholders, kfp.local's /kfp-workspace, the run macros the API
# server of KFP 2.16+ expands in string parameters) travels as JSON text after this prefix, with those spellings
# escaped; the step runtime decodes it (PARAM_PREFIX, imported from the runtime that owns it).
# kubeflow/pipelines 2.16.0+ backend/src/apiserver/template/v2_template.go:343 formats every string parameter of a
# run with backend/src/common/util/parameter_formatter.go:28-33 (2.17.0): these macro spellings are replaced.
RUN_MACROS = ("[[RunUUID]]", "[[ScheduledTime", "[[CurrentTime", "[[Index]]")
_SUBSTITUTED = ("{{$", "/kfp-workspace", PARAM_PREFIX, *RUN_MACROS)
_MAX_ARG = 96 * 1024  # Linux caps one argv string at 128 KiB
_UNITS = {
    "E": 10**18,
    "P": 10**15,
    "T": 10**12,
    "G": 10**9,
    "M": 10**6,
    "K": 10**3,
    "k": 10**3,
    "Ei": 2**60,
    "Pi": 2**50,
    "Ti": 2**40,
    "Gi": 2**30,
    "Mi": 2**20,
    "Ki": 2**10,
    "": 1,
}


def _as_json(pipeline: Pipeline, param: Parameter) -> bool:
    """Lists and dicts travel as JSON text, except those a catalog component takes as they are (KFP types)."""
    if param.type not in ("list", "dict"):
        return False
    direct = (a.value for s in pipeline.steps if s.component for a in s.component.args if a.source == "parameter")
    return param.name not in set(direct)


def parameter_type(pipeline: Pipeline, param: Parameter) -> str:
    """Its KFP type; lists and dicts as JSON text (STRING), since KFP's Struct/List turn ints into doubles."""
    return "STRING" if _as_json(pipeline, param) else kfpnames.PARAMETER_TYPES[param.type]


def argument(pipeline: Pipeline, param: Parameter, value: ParamValue) -> ParamValue:
    """A parameter's value as the pipeline receives it: lists and dicts as JSON text (their order and int
    types kept), text KFP would substitute in encoded form; every other value as it is."""
    if _as_json(pipeline, param):
        return _safe_json(value)
    if isinstance(value, str) and any(s in value for s in _SUBSTITUTED):
        return PARAM_PREFIX + _safe_json(value)
    return value


def _safe_json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for macro in RUN_MACROS:  # only inside JSON strings (they hold letters): "\u005b[RunUUID]]" reads back the same
        text = text.replace(macro, "\\u005b" + macro[1:])
    return text.replace("$", "\\u0024").replace("/kfp-workspace", "\\/kfp-workspace")


def render(
    pipeline: Pipeline, stamp: str = "", documents: tuple[dict[str, Any], dict[str, Any] | None] | None = None
) -> str:
    """The pipeline spec as YAML text (header comments, spec, and the platform document if any).
    ``stamp`` identifies the inputs (notebook content, settings, nb2kfp version) for ``--check``; ``documents``:
    :func:`build_documents` of the pipeline, when the caller has them already."""
    spec, platform = documents or build_documents(pipeline)
    body = _dump(spec)
    if platform:
        body += "---\n" + _dump(platform)
    return _header(pipeline, stamp) + body


def build_documents(pipeline: Pipeline) -> tuple[dict[str, Any], dict[str, Any] | None]:
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    platform_execs: dict[str, Any] = {}
    for step in pipeline.steps:
        task = kfpnames.task_name(step.name)
        if step.component is not None:  # a catalog component: copied, then wired
            comp, executor = kfpnames.component_key(task), kfpnames.executor_key(task)
            components[comp], executors[executor] = called.documents(step, task, _resources(step))
            tasks[task] = called.component_task(pipeline, step, _task(step, task))
            called.pass_defaults(components[comp], tasks[task])
        else:
            comp, executor = kfpnames.component_key(task), kfpnames.executor_key(task)
            components[comp] = _component(pipeline, step, task)
            executors[executor] = {"container": _container(pipeline, step)}
            tasks[task] = _task(step, task)
            called.patch_notebook_step(pipeline, step, components[comp], tasks[task])
        extra = _platform(step)
        if extra:
            platform_execs[kfpnames.executor_key(task)] = extra
    name = pipeline.name
    if kfpnames.executor_key(name) in executors:  # KFP would load the file as that one component
        name = name[: kfpnames.MAX_PIPELINE_NAME - len("-pipeline")].rstrip("-") + "-pipeline"
    pipeline_info: dict[str, Any] = {"name": name}
    if pipeline.description:
        pipeline_info["description"] = pipeline.description
    root: dict[str, Any] = {"dag": {"tasks": tasks}}
    if pipeline.parameters:
        root["inputDefinitions"] = {
            "parameters": {
                p.name: {
                    "defaultValue": "" if p.default is None else argument(pipeline, p, p.default),
                    "isOptional": True,
                    "parameterType": parameter_type(pipeline, p),
                }
                for p in pipeline.parameters
            }
        }
    spec = {
        "components": components,
        "deploymentSpec": {"executors": executors},
        "pipelineInfo": pipeline_info,
        "root": root,
        "schemaVersion": SCHEMA_VERSION,
        "sdkVersion": f"nb2kfp-{__version__}",
    }
    notebook_steps = {kfpnames.task_name(s.name): s for s in pipeline.steps if s.component is None}
    step_runtime.carry(notebook_steps, pipeline.runtime_image, components, executors, tasks)
    kubernetes: dict[str, Any] = {"deploymentSpec": {"executors": platform_execs}}
    if pipeline.workspace:
        _add_workspace(pipeline, components, tasks, kubernetes)
    platform = {"platforms": {"kubernetes": kubernetes}}
    return spec, platform if platform_execs or pipeline.workspace else None


WORKSPACE_PARAM = "nb2kfp-workspace"


def _add_workspace(
    pipeline: Pipeline, components: dict[str, Any], tasks: dict[str, Any], kubernetes: dict[str, Any]
) -> None:
    """A volume shared by every step of a run (KFP pipeline workspace); steps see its path as NB2KFP_WORKSPACE."""
    # KFP 2.15+ refuses a workspace PVC without accessModes unless its admin set a default (kubeflow/pipelines
    # 2.15.0 backend/src/v2/compiler/argocompiler/argo.go:549, 2.17.0 argo.go:664); ReadWriteOnce: every storage
    # class offers it.
    patch: dict[str, Any] = {"accessModes": ["ReadWriteOnce"]}
    if pipeline.workspace_storage_class:  # 2.15-2.16 require one (argo.go:552@2.15.0); 2.17 takes the default
        patch["storageClassName"] = pipeline.workspace_storage_class
    kubernetes["pipelineConfig"] = {"workspace": {"kubernetes": {"pvcSpecPatch": patch}, "size": pipeline.workspace}}
    for step in pipeline.steps:
        if step.component is not None:
            continue
        task = kfpnames.task_name(step.name)
        inputs = (
            components[kfpnames.component_key(task)].setdefault("inputDefinitions", {}).setdefault("parameters", {})
        )
        inputs[WORKSPACE_PARAM] = {"parameterType": "STRING"}
        wired = tasks[task].setdefault("inputs", {}).setdefault("parameters", {})
        wired[WORKSPACE_PARAM] = {"runtimeValue": {"constant": "{{$.workspace_path}}"}}


def _artifact(schema: str) -> dict[str, Any]:
    return {"artifactType": {"schemaTitle": schema, "schemaVersion": "0.0.1"}}


def _component(pipeline: Pipeline, step: Step, task: str) -> dict[str, Any]:
    comp: dict[str, Any] = {"executorLabel": kfpnames.executor_key(task)}
    inputs: dict[str, Any] = {}
    if step.parameters:
        inputs["parameters"] = {
            n: {"parameterType": parameter_type(pipeline, pipeline.parameter(n))} for n in step.parameters
        }
    if step.inputs:
        inputs["artifacts"] = {kfpnames.input_key(step, e.name): _artifact("system.Artifact") for e in step.inputs}
    if inputs:
        comp["inputDefinitions"] = inputs
    outputs = {name: _artifact("system.Model" if name in step.models else "system.Artifact") for name in step.outputs}
    if step.metrics:
        outputs[METRICS_KEY] = _artifact("system.Metrics")
        outputs[METRICS_TEXT_KEY] = _artifact("system.Markdown")
    if step.report:
        outputs[REPORT_KEY] = _artifact("system.HTML")
    if outputs:
        comp["outputDefinitions"] = {"artifacts": outputs}
    return comp


def _carried_out(pipeline: Pipeline, step: Step) -> list[str]:
    """The outputs of ``step`` that every step receiving them receives only for its functions' globals
    (VariableEdge.carried): one that cannot be saved is left out instead of failing the step."""
    edges = [e for s in pipeline.steps for e in s.inputs if e.producer == step.name and e.kind == "value"]
    return sorted(n for n in step.outputs if all(e.carried for e in edges if e.name == n) and n not in step.models)


def step_spec(pipeline: Pipeline, step: Step) -> dict[str, Any]:
    """What the step runtime needs to run the step. Empty parts are left out: the spec travels in every copy of
    the step's command that KFP and Argo keep (docs/kfp-backend.md, "Workflow size")."""
    types = {p.name: p.type for p in pipeline.parameters}
    origin = step.origin  # a step of an included notebook runs that notebook's imports/functions
    extras = called.runtime_extras(pipeline, step)
    optional = [n for n in step.parameters if pipeline.parameter(n).optional]
    spec: dict[str, Any] = {
        "notebook": (origin.notebook if origin else pipeline.source).replace("\\", "/").rsplit("/", 1)[-1],
        "step": step.name,
        "params": {**{n: types[n] for n in step.parameters}, **extras.pop("task_params", {})},
        "optional": optional,
        "inputs": {e.name: kfpnames.input_key(step, e.name) for e in step.inputs if e.kind == "value"},
        "outputs": {n: n for n in step.outputs},
        "carried_in": sorted(e.name for e in step.inputs if e.carried),
        "carried_out": _carried_out(pipeline, step),
        "metrics": list(step.metrics),
        "metrics_key": METRICS_KEY if step.metrics else "",
        "metrics_text_key": METRICS_TEXT_KEY if step.metrics else "",
        "workspace_param": WORKSPACE_PARAM if pipeline.workspace else "",
        "retries": step.retries,
        "shared": list(origin.shared_names if origin else pipeline.shared_names),
        "prelude": _keyed(_prelude(pipeline, step)),
        "cells": _keyed(step.cells),
        "report": {"key": REPORT_KEY, "render": step.report == "html"} if step.report else {},
        **extras,
    }
    return {k: v for k, v in spec.items() if v or k in ("notebook", "step")}


def _prelude(pipeline: Pipeline, step: Step) -> tuple[CodeCell, ...]:
    """The imports/functions cells the step runs: its own lean ones, an included notebook's, or the pipeline's."""
    if step.prelude is not None:
        return step.prelude
    return step.origin.prelude if step.origin else pipeline.prelude


def _code(cells: tuple[CodeCell, ...]) -> tuple[list[CodeCell], list[int]]:
    """The cells that hold code, and the notebook cell numbers they come from (each once, in order)."""
    kept = [c for c in cells if c.source.strip()]
    return kept, list(dict.fromkeys(c.index for c in kept))


def _keyed(cells: tuple[CodeCell, ...]) -> list[list[Any]]:
    """``[k, source]`` pairs, ``k`` the cell's rank within the step (1, 2, ...), never its notebook number:
    cells added, moved or removed elsewhere in the notebook leave the step's spec, and so KFP's cache
    key and ``compile --check``, unchanged. :func:`cell_numbers` maps ranks back for tracebacks. A cell tagged
    raises-exception is ``[k, source, 1]``."""
    kept, numbers = _code(cells)
    return [[numbers.index(c.index) + 1, c.source, *([1] if c.raises else [])] for c in kept]


def cell_numbers(pipeline: Pipeline) -> dict[str, dict[str, list[int]]]:
    """Per step, the notebook cell number of each rank in its ``cells`` and ``prelude`` (see :func:`_keyed`).
    Kept out of the spec: a local run hands it to the steps in ``NB2KFP_CELLS`` so tracebacks name
    notebook cells; without it they name the step and the rank (``nb.ipynb, step train, cell 2``)."""
    out: dict[str, dict[str, list[int]]] = {}
    for step in pipeline.steps:
        if step.component is None:
            out[step.name] = {"cells": _code(step.cells)[1], "prelude": _code(_prelude(pipeline, step))[1]}
    return out


def _spec_args(pipeline: Pipeline, step: Step) -> list[str]:
    text = json.dumps(step_spec(pipeline, step), ensure_ascii=False, separators=(",", ":"))
    text = text.replace("{{$", "{{\\u0024")  # KFP substitutes {{$...}} placeholders anywhere in args
    return [text[i : i + _MAX_ARG] for i in range(0, len(text), _MAX_ARG)] or [""]


def _container(pipeline: Pipeline, step: Step) -> dict[str, Any]:
    container: dict[str, Any] = {
        "args": ["--executor-input", "{{$}}", "--spec", *_spec_args(pipeline, step)],
        "command": ["python3", "-c", step_runtime.bootstrap()],
        "image": step.image,
    }
    res = _resources(step)
    if res:
        container["resources"] = res
    container["env"] = [{"name": k, "value": v} for k, v in container_env(step).items()]
    return container


def container_env(step: Step) -> dict[str, str]:
    """The environment variables a notebook step's container sets."""
    # A fixed string-hash seed: objects that cache hash(str) (formulaic's Term) or iterate sets of str keep
    # working and agree from one step's process to the next.
    return {"PYTHONHASHSEED": "0", **{v.env: v.path for v in step.volumes if v.env}}


def _quantity(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def _resources(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, amount in step.resources.requests:
        _cpu_memory(out, "Request", name, amount)
    for name, amount in step.resources.limits:
        if not _cpu_memory(out, "Limit", name, amount):  # an accelerator (validated by the front end)
            out["accelerator"] = {
                "count": amount,
                "resourceCount": amount,
                "resourceType": name,
                "type": name,
            }
    return out


def _cpu_memory(out: dict[str, Any], kind: str, name: str, amount: str) -> bool:
    """KFP writes cpu/memory twice: as numbers (cores, GB) and as the Kubernetes quantity given."""
    if name == "cpu":
        out[f"cpu{kind}"] = float(amount[:-1]) / 1000 if amount.endswith("m") else float(amount)
        out[f"resourceCpu{kind}"] = amount
    elif name == "memory":
        out[f"memory{kind}"] = _quantity(amount) / 10**9
        out[f"resourceMemory{kind}"] = amount
    else:
        return False
    return True


def _platform(step: Step) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if step.labels or step.annotations:
        meta: dict[str, Any] = {}
        if step.annotations:
            meta["annotations"] = dict(step.annotations)
        if step.labels:
            meta["labels"] = dict(step.labels)
        extra["podMetadata"] = meta
    if step.timeout is not None:
        extra["activeDeadlineSeconds"] = str(step.timeout)
    if step.node_selector:
        extra["nodeSelector"] = {"labels": dict(step.node_selector)}
    if step.tolerations:
        extra["tolerations"] = [
            {"effect": t.effect, "key": t.key, "operator": t.operator, **({"value": t.value} if t.value else {})}
            for t in step.tolerations
        ]
    if step.volumes:
        extra["pvcMount"] = [
            {"constant": v.pvc, "mountPath": v.path, "pvcNameParameter": {"runtimeValue": {"constant": v.pvc}}}
            for v in step.volumes
        ]
    if step.secrets:
        by_secret: dict[str, list[dict[str, str]]] = {}
        for s in step.secrets:
            by_secret.setdefault(s.secret, []).append({"envVar": s.env, "secretKey": s.key})
        extra["secretAsEnv"] = [
            {
                "keyToEnv": envs,
                "optional": False,
                "secretName": name,
                "secretNameParameter": {"runtimeValue": {"constant": name}},
            }
            for name, envs in sorted(by_secret.items())
        ]
    return extra


def _task(step: Step, task: str) -> dict[str, Any]:
    depends = sorted(
        {kfpnames.task_name(a) for a in step.after} | {kfpnames.task_name(e.producer) for e in step.inputs}
    )
    spec: dict[str, Any] = {
        "cachingOptions": {"enableCache": True} if step.caching else {},
        "componentRef": {"name": kfpnames.component_key(task)},
        "taskInfo": {"name": task},
    }
    if depends:
        spec["dependentTasks"] = depends
    if step.retries and step.component is not None:  # a notebook step retries in its pod (runtime: _with_retries)
        spec["retryPolicy"] = {
            "backoffDuration": "0s",
            "backoffFactor": 2.0,
            "backoffMaxDuration": "3600s",
            "maxRetryCount": step.retries,
        }
    inputs: dict[str, Any] = {}
    if step.parameters:
        inputs["parameters"] = {n: {"componentInputParameter": n} for n in step.parameters}
    if step.inputs:
        inputs["artifacts"] = {
            kfpnames.input_key(step, e.name): {
                "taskOutputArtifact": {
                    "outputArtifactKey": e.name,
                    "producerTask": kfpnames.task_name(e.producer),
                }
            }
            for e in step.inputs
        }
    if inputs:
        spec["inputs"] = inputs
    return spec


def _header(pipeline: Pipeline, stamp: str) -> str:
    lines = ["# PIPELINE DEFINITION", f"# Name: {pipeline.name}"]
    if pipeline.description:
        first, *rest = pipeline.description.splitlines() or [""]
        lines.append("# Description: " + first)
        lines.extend("#              " + line for line in rest)
    if pipeline.parameters:
        lines.append("# Inputs:")
        for p in pipeline.parameters:
            lines.append(f"#    {p.name}: {p.type} [Default: {json.dumps(p.default, ensure_ascii=False)}]")
    if any(s.metrics for s in pipeline.steps):
        lines.append("# Outputs:")
        lines.extend(f"#    {m}: metric" for m in pipeline.metrics)
    source = pipeline.source.replace(chr(92), "/").rsplit("/", 1)[-1]
    lines.append(f"# Compiled by nb2kfp {__version__} from {source}: edit the notebook and recompile, not this file.")
    if stamp:
        lines.append(f"{stamps.PREFIX}{stamp}")
    return "\n".join(printable(line) for line in lines) + "\n"  # YAML forbids control characters even in comments


def _dump(doc: dict[str, Any]) -> str:
    return yaml_text.dump(doc)
