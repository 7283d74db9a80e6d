"""IR -> a picture of the DAG: plain text, Mermaid (GitLab renders it) or Graphviz dot."""

from __future__ import annotations

import json

from nb2kfp.ir import Pipeline
from nb2kfp.words import count


def edges(pipeline: Pipeline) -> list[tuple[str, str, list[str]]]:
    """(parent, child, variables passed) for every prev: or data edge, in a stable order."""
    found: dict[tuple[str, str], list[str]] = {}
    for step in pipeline.steps:
        for parent in step.after:
            found.setdefault((parent, step.name), [])
        for edge in step.inputs:
            found.setdefault((edge.producer, step.name), []).append(edge.name)
    order = {s.name: i for i, s in enumerate(pipeline.steps)}
    return [(a, b, sorted(v)) for (a, b), v in sorted(found.items(), key=lambda kv: (order[kv[0][1]], order[kv[0][0]]))]


def text(pipeline: Pipeline) -> str:
    lines = [f"pipeline {pipeline.name} ({count(len(pipeline.steps), 'step')})"]
    for p in pipeline.parameters:
        lines.append(f"  parameter {p.name}: {p.type} = {json.dumps(p.default)}")
    incoming: dict[str, list[str]] = {}
    for parent, child, variables in edges(pipeline):
        incoming.setdefault(child, []).append(parent + (f" ({', '.join(variables)})" if variables else ""))
    for step in pipeline.steps:
        lines.append(f"  step {step.name} [cell {step.first_cell}]")
        for item in incoming.get(step.name, []):
            lines.append(f"    after {item}")
        if step.parameters:
            lines.append(f"    parameters: {', '.join(step.parameters)}")
        if step.metrics:
            lines.append(f"    metrics: {', '.join(step.metrics)}")
    return "\n".join(lines)


def _id(name: str) -> str:
    return "s_" + "".join(c if c.isalnum() else "_" for c in name)


def mermaid(pipeline: Pipeline) -> str:
    lines = ["flowchart TD"]
    for step in pipeline.steps:
        label = step.name + (f"<br/>metrics: {', '.join(step.metrics)}" if step.metrics else "")
        lines.append(f'  {_id(step.name)}["{label.replace(chr(34), "#quot;")}"]')
    for parent, child, variables in edges(pipeline):
        arrow = f" -->|{', '.join(variables)}| " if variables else " --> "
        lines.append(f"  {_id(parent)}{arrow}{_id(child)}")
    return "\n".join(lines)


def dot(pipeline: Pipeline) -> str:
    def q(s: str) -> str:
        return json.dumps(s)

    lines = [f"digraph {q(pipeline.name)} {{", "  rankdir=TB;", "  node [shape=box, style=rounded];"]
    for step in pipeline.steps:
        lines.append(f"  {q(step.name)};")
    for parent, child, variables in edges(pipeline):
        label = f" [label={q(', '.join(variables))}]" if variables else ""
        lines.append(f"  {q(parent)} -> {q(child)}{label};")
    lines.append("}")
    return "\n".join(lines)


FORMATS = {"text": text, "mermaid": mermaid, "dot": dot}
