"""A ``component:NAME[@VERSION]`` cell: call a prebuilt KFP component from the catalog.

The cell holds keyword arguments, one ``name = value`` per line (like a parameters cell). A value is a
literal (passed as a constant), or a bare name: a pipeline parameter (wired as such) or a variable an
ancestor step sets (wired from that step). The component's output parameters and artifacts become
variables later steps read by name:

- an output *parameter* arrives as its value (``float``, ``bool``, ``str``, ``list``, ``dict``);
- an output *artifact* arrives as a local path string (``str``): where KFP mounts the artifact's file
  in the reading step (``/gcs/...``, ``/minio/...`` on a cluster; a local path under kfp.local), which the
  step opens like any file. Loading it stays the step's choice (CSV, model file, notebook ...).

A notebook variable passed to a component's *parameter* input is handed out by its step as an output
parameter too (it must be a JSON value of the input's type). Passed to an *artifact* input, the variable
must be a path to a file (its content is copied into the artifact), or a ``str``/``bytes`` (written as the
file's content).
"""

from __future__ import annotations

import ast
import difflib
import json
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from nb2kfp import kfpnames
from nb2kfp.errors import Diagnostic, error
from nb2kfp.frontend import literals
from nb2kfp.frontend.analysis import Facts
from nb2kfp.ir import ComponentArg, ComponentCall, Export, Parameter, Step, VariableEdge

if TYPE_CHECKING:
    from nb2kfp.catalog.resolve import Component
    from nb2kfp.frontend.notebook import Cell


def load_call(
    path: str,
    cell: int,
    ref: str,
    tree: ast.Module | None,
    params: dict[str, Parameter],
    component: Component | None,
    diags: list[Diagnostic],
) -> ComponentCall | None:
    """Check the cell's arguments against the component's inputs; None when something is wrong."""
    if component is None:
        return None
    before = len(diags)
    args: list[ComponentArg] = []
    given: set[str] = set()
    for stmt in literals.assignments(tree):
        if not isinstance(stmt, literals.Assignment):
            msg = f"component:{ref}: write one input per line as `name = value` (a literal, a parameter or a variable)"
            diags.append(error(path, msg, "NB094", cell, stmt.lineno))
            continue
        name, node = stmt.name, stmt.value
        port = component.call.input(name)
        if port is None:
            known = [p.name for p in component.call.inputs]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "inputs: " + (", ".join(known) or "none")
            diags.append(error(path, f"component {ref} has no input {name!r} ({hint})", "NB091", cell, stmt.line))
            continue
        given.add(name)
        if isinstance(node, ast.Name):
            p = params.get(node.id)
            if p is not None and (port.kind == "artifact" or not kfpnames.accepts(port.type, p.type)):
                wanted = _describe(port.kind, port.type)
                msg = f"component {ref}: input {name!r} is {wanted}, parameter {p.name!r} is a {p.type}"
                diags.append(error(path, msg, "NB093", cell, stmt.line))
                continue
            args.append(ComponentArg(name, "parameter" if p else "variable", node.id))
            continue
        try:
            value = literals.literal(node)
        except literals.NotLiteral:
            msg = f"component {ref}: input {name!r}: give a literal, a pipeline parameter or a variable name"
            diags.append(error(path, msg, "NB094", cell, stmt.line))
            continue
        if port.kind == "artifact" or not kfpnames.fits(value, port.type):
            msg = f"component {ref}: input {name!r} is {_describe(port.kind, port.type)}, got a {type(value).__name__}"
            if port.kind == "artifact":
                msg += " (an artifact input takes a variable that holds a file path or the content)"
            diags.append(error(path, msg, "NB093", cell, stmt.line))
            continue
        args.append(ComponentArg(name, "literal", json.dumps(value, sort_keys=True)))
    missing = [n for n in component.required if n not in given]
    if missing:
        msg = f"component {ref}: missing required input(s): {', '.join(missing)}"
        diags.append(error(path, msg, "NB092", cell))
    if len(diags) > before:
        return None
    return replace(component.call, args=tuple(args))


def _describe(kind: str, port_type: str) -> str:
    return f"an artifact ({port_type})" if kind == "artifact" else f"a {port_type} parameter"


def call_facts(call: ComponentCall) -> Facts:
    """What the call reads (its variable and parameter arguments) and sets (its outputs), for data flow."""
    facts = Facts()
    facts.reads = {a.value for a in call.args if a.source != "literal"}
    facts.binds = {p.name for p in call.outputs}
    facts.definite = set(facts.binds)
    facts.call = True
    return facts


def finish(path: str, steps: list[Step], diags: list[Diagnostic]) -> list[Step]:
    """Set how component outputs reach their readers, and which variables notebook steps export."""
    by_name = {s.name: s for s in steps}
    if not any(s.component for s in steps):
        return steps
    exports: dict[str, dict[str, Export]] = {}
    out: list[Step] = []
    for step in steps:
        if step.component is not None:
            for arg in step.component.args:
                edge = next((e for e in step.inputs if e.name == arg.value), None)
                port = step.component.input(arg.name)
                if arg.source != "variable" or edge is None or port is None:
                    continue
                producer = by_name[edge.producer]
                if producer.component is not None:
                    made = producer.component.output(edge.name)
                    if made is not None and (
                        made.kind != port.kind or (made.kind == "parameter" and made.type != port.type)
                    ):
                        wanted, got = _describe(port.kind, port.type), _describe(made.kind, made.type)
                        msg = (
                            f"component {step.component.name}: input {arg.name!r} is {wanted}, "
                            f"but {edge.name!r} from component {producer.component.name} is {got}"
                        )
                        diags.append(error(path, msg, "NB093", step.first_cell))
                    continue
                kind: Literal["parameter", "file"] = "parameter" if port.kind == "parameter" else "file"
                exports.setdefault(producer.name, {}).setdefault(
                    f"{edge.name}:{kind}", Export(edge.name, kind, port.type)
                )
            out.append(step)
            continue
        inputs = []
        for e in step.inputs:
            call = by_name[e.producer].component
            port = call.output(e.name) if call else None
            if port is not None:
                e = VariableEdge(e.name, e.producer, "parameter" if port.kind == "parameter" else "path")
            inputs.append(e)
        out.append(replace(step, inputs=tuple(inputs)))
    return [
        replace(s, exports=tuple(sorted(exports[s.name].values(), key=lambda x: (x.name, x.kind))))
        if s.name in exports
        else s
        for s in out
    ]


def load_calls(
    path: str,
    cells: dict[str, Cell],
    trees: dict[int, ast.Module],
    parameters: list[Parameter],
    found: dict[str, Component],
    diags: list[Diagnostic],
) -> dict[str, ComponentCall]:
    """Each component: cell (by step name) checked against its component (:mod:`nb2kfp.catalog.resolve`)."""
    params = {p.name: p for p in parameters}
    out: dict[str, ComponentCall] = {}
    for name, cell in cells.items():
        call = load_call(
            path, cell.index, cell.component_ref or "", trees.get(cell.index), params, found.get(name), diags
        )
        if call is not None:
            out[name] = call
    return out
