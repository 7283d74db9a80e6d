"""Catalog components in the pipeline spec: the copied component and its wiring to notebook steps.

A ``component:`` step's componentSpec and executor are copied from its catalog file as KFP wrote them (the
catalog reads them again: :func:`nb2kfp.catalog.lookup.documents`),
under the step's own keys (``comp-<task>``/``exec-<task>``, so two calls never clash). Its inputs are wired
from literals (constants), pipeline parameters, or the steps that set the variables: a notebook step hands
a variable out as an extra output parameter (``<name>-param``) or file artifact (``<name>-file``), see
:class:`nb2kfp.ir.Export`; a component's outputs go by their own names. A notebook step reading a component
output parameter receives it as an input parameter, an output artifact as its local path.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from nb2kfp import kfpnames
from nb2kfp.catalog import lookup
from nb2kfp.ir import Pipeline, Step


def export_key(name: str, kind: str) -> str:
    return f"{name}-param" if kind == "parameter" else f"{name}-file"


def documents(step: Step, task: str, resources: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The component's spec and executor, re-keyed for this task; ``resources`` from limit:/request: tags."""
    assert step.component is not None
    comp, executor = lookup.documents(step.component)
    comp["executorLabel"] = kfpnames.executor_key(task)
    if resources and "container" in executor:
        executor["container"]["resources"] = {**executor["container"].get("resources", {}), **resources}
    return comp, executor


def _producer(pipeline: Pipeline, name: str) -> Step:
    return pipeline.step(name)


def _task_of(step: Step) -> str:
    return kfpnames.task_name(step.name)


def component_task(pipeline: Pipeline, step: Step, base: dict[str, Any]) -> dict[str, Any]:
    """``base`` is the task as rendered for any step (caching, dependencies, retries); its inputs are replaced."""
    call = step.component
    assert call is not None
    spec = copy.deepcopy(base)
    spec.pop("inputs", None)
    inputs: dict[str, dict[str, Any]] = {}
    edges = {e.name: e for e in step.inputs}
    for arg in call.args:
        port = call.input(arg.name)
        if port is None:
            continue
        section = "parameters" if port.kind == "parameter" else "artifacts"
        if arg.source == "literal":
            value: dict[str, Any] = {"runtimeValue": {"constant": json.loads(arg.value)}}
        elif arg.value in edges:
            producer = _producer(pipeline, edges[arg.value].producer)
            key = (
                arg.value
                if producer.component
                else export_key(arg.value, "parameter" if section == "parameters" else "file")
            )
            if section == "parameters":
                value = {"taskOutputParameter": {"outputParameterKey": key, "producerTask": _task_of(producer)}}
            else:
                value = {"taskOutputArtifact": {"outputArtifactKey": key, "producerTask": _task_of(producer)}}
        else:
            value = {"componentInputParameter": arg.value}
        inputs.setdefault(section, {})[arg.name] = value
    if inputs:
        spec["inputs"] = inputs
    return spec


def pass_defaults(comp: dict[str, Any], task: dict[str, Any]) -> None:
    """Every parameter input with a default that the call leaves out is passed as that default (in place). KFP
    2.17's container driver resolves the container's ``{{$.inputs.parameters[...]}}`` placeholders before the
    launcher applies defaults, and fails with "parameter not found in executor input" (backend/src/v2/driver/
    util.go:176@2.17.0, called from driver.go:309-315; defaults only in launcher_v2.go:1311-1330)."""
    declared = comp.get("inputDefinitions", {}).get("parameters", {})
    passed = task.get("inputs", {}).get("parameters", {})
    for name, port in sorted(declared.items()):
        if name not in passed and "defaultValue" in port:
            wired = task.setdefault("inputs", {}).setdefault("parameters", {})
            wired[name] = {"runtimeValue": {"constant": port["defaultValue"]}}


def patch_notebook_step(pipeline: Pipeline, step: Step, comp: dict[str, Any], task: dict[str, Any]) -> None:
    """A notebook step that reads component outputs or hands variables to components (in place)."""
    for e in step.inputs:
        if e.kind == "value":
            continue
        producer = _producer(pipeline, e.producer)
        port = producer.component.output(e.name) if producer.component else None
        if port is None:
            continue
        key = kfpnames.input_key(step, e.name)
        if e.kind == "parameter":
            _drop(comp, "inputDefinitions", "artifacts", key)
            _drop(task, "inputs", "artifacts", key)
            wanted = {"parameterType": kfpnames.PARAMETER_TYPES[port.type]}
            comp.setdefault("inputDefinitions", {}).setdefault("parameters", {})[e.name] = wanted
            wiring = {"taskOutputParameter": {"outputParameterKey": e.name, "producerTask": _task_of(producer)}}
            task.setdefault("inputs", {}).setdefault("parameters", {})[e.name] = wiring
        else:
            artifacts = comp.get("inputDefinitions", {}).get("artifacts", {})
            if key in artifacts:
                artifacts[key] = {"artifactType": {"schemaTitle": port.type, "schemaVersion": "0.0.1"}}
    for x in step.exports:
        outputs = comp.setdefault("outputDefinitions", {})
        if x.kind == "parameter":
            typed = {"parameterType": kfpnames.PARAMETER_TYPES[x.type]}
            outputs.setdefault("parameters", {})[export_key(x.name, x.kind)] = typed
        else:
            kind = {"artifactType": {"schemaTitle": x.type or "system.Artifact", "schemaVersion": "0.0.1"}}
            outputs.setdefault("artifacts", {})[export_key(x.name, x.kind)] = kind


def _drop(doc: dict[str, Any], section: str, kind: str, key: str) -> None:
    part = doc.get(section, {}).get(kind)
    if part is None:
        return
    part.pop(key, None)
    if not part:
        del doc[section][kind]
    if not doc[section]:
        del doc[section]


def runtime_extras(pipeline: Pipeline, step: Step) -> dict[str, Any]:
    """What the step runtime needs beyond plain variables: component outputs read, variables exported."""
    extras: dict[str, Any] = {}
    params: dict[str, str] = {}
    paths: dict[str, str] = {}
    for e in step.inputs:
        if e.kind == "parameter":
            call = pipeline.step(e.producer).component
            port = call.output(e.name) if call else None
            params[e.name] = port.type if port else "str"
        elif e.kind == "path":
            paths[e.name] = kfpnames.input_key(step, e.name)
    if params:
        extras["task_params"] = params
    if paths:
        extras["paths"] = paths
    if step.exports:
        extras["exports"] = [
            [
                x.name,
                x.kind,
                export_key(x.name, x.kind),
                kfpnames.PARAMETER_TYPES[x.type] if x.kind == "parameter" else x.type,
            ]
            for x in step.exports
        ]
    return extras
