"""Two pipeline IRs -> a plan: which steps were added, removed or changed, and which KFP's cache will serve.

A step is served from KFP's cache when caching is on for it and nothing in its cache key moved: its
component and executor spec (image, command, arguments: the code) as :mod:`nb2kfp.backends.kfp_spec`
writes them, its task inputs and the values of the pipeline parameters it reads (their defaults), and
every step it takes artifacts from is itself served (a step that re-runs writes new artifacts, so all
its consumers re-run too). Both IRs are compiled by this nb2kfp, so a newer nb2kfp runtime alone never
shows as a change here. Pod metadata (labels, annotations, secrets) and ``prev:`` ordering change a
step without touching its cache key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from nb2kfp import kfpnames
from nb2kfp.backends.kfp_spec import build_documents
from nb2kfp.ir import Pipeline, Step

Status = Literal["added", "removed", "changed", "unchanged"]
Row = tuple[str, str, str, str]


@dataclass(frozen=True)
class StepPlan:
    name: str
    status: Status
    changes: tuple[str, ...] = ()  # what changed: code, image, parameters, inputs, resources, ...
    cached: bool = False  # KFP's cache serves this step (no run)
    reason: str = ""  # why it runs, when it does

    def as_dict(self) -> dict[str, object]:
        return {
            "step": self.name,
            "status": self.status,
            "changes": list(self.changes),
            "cached": self.cached,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Plan:
    pipeline: str
    steps: tuple[StepPlan, ...]
    parameters: tuple[str, ...] = ()  # pipeline parameter changes, one line each
    has_base: bool = True  # False when there was nothing to compare with (all steps added)

    HEADER: ClassVar[Row] = ("step", "status", "changes", "cache")

    def rows(self) -> list[Row]:
        """One row per step (new pipeline's order, then removed steps), matching :attr:`HEADER`."""
        return [(s.name, s.status, ", ".join(s.changes) or "-", _cache_text(s)) for s in self.steps]

    def count(self, status: Status) -> int:
        return sum(s.status == status for s in self.steps)

    @property
    def cached(self) -> int:
        return sum(s.cached for s in self.steps)

    @property
    def runs(self) -> int:
        return sum(s.status != "removed" and not s.cached for s in self.steps)

    def summary(self) -> str:
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("added", "removed", "changed", "unchanged"))
        total = self.cached + self.runs
        return f"{self.pipeline}: {counts}; {self.runs} of {total} step(s) run, {self.cached} served from cache"

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "has_base": self.has_base,
            "summary": self.summary(),
            "steps": [s.as_dict() for s in self.steps],
            "parameters": list(self.parameters),
        }


def _cache_text(step: StepPlan) -> str:
    if step.status == "removed":
        return "-"
    return "served from cache" if step.cached else f"runs ({step.reason})"


def diff(old: Pipeline | None, new: Pipeline) -> Plan:
    """The plan for running ``new`` after ``old`` ran (``old`` None: nothing ran before)."""
    if old is None:
        steps = tuple(StepPlan(s.name, "added", reason="new step") for s in new.steps)
        return Plan(new.name, steps, has_base=False)
    old_keys = _cache_keys(old)
    new_keys = _cache_keys(new)
    old_steps = {s.name: s for s in old.steps}
    served: set[str] = set()
    plans: list[StepPlan] = []
    for step in new.steps:  # a topological order: producers come before their consumers
        before = old_steps.get(step.name)
        if before is None:
            plans.append(StepPlan(step.name, "added", reason="new step"))
            continue
        changes = _changes(old, before, new, step)
        if not changes and old_keys[step.name] != new_keys[step.name]:
            changes = ("spec",)
        status: Status = "changed" if changes else "unchanged"
        reason = _why_runs(step, changes, same_key=old_keys[step.name] == new_keys[step.name], served=served)
        if not reason:
            served.add(step.name)
        plans.append(StepPlan(step.name, status, changes, cached=not reason, reason=reason))
    new_names = {s.name for s in new.steps}
    plans.extend(StepPlan(s.name, "removed") for s in old.steps if s.name not in new_names)
    return Plan(new.name, tuple(plans), _parameter_changes(old, new))


def _why_runs(step: Step, changes: tuple[str, ...], *, same_key: bool, served: set[str]) -> str:
    if not step.caching:
        return "caching disabled"
    if not same_key:
        keyed = [c for c in changes if c not in _OUTSIDE_KEY]
        return "changed: " + ", ".join(keyed or changes)
    upstream = sorted({e.producer for e in step.inputs} - served)
    if upstream:
        return "upstream re-runs: " + ", ".join(upstream)
    return ""


_OUTSIDE_KEY = ("pod settings", "dependencies", "caching")


def _cache_keys(pipeline: Pipeline) -> dict[str, str]:
    """Per step, the parts of KFP's cache key that the pipeline spec fixes, as one canonical string."""
    spec, _ = build_documents(pipeline)
    tasks = spec["root"]["dag"]["tasks"]
    executors = spec["deploymentSpec"]["executors"]
    defaults = {p.name: (p.type, p.default) for p in pipeline.parameters}
    keys = {}
    for step in pipeline.steps:
        task = kfpnames.task_name(step.name)
        key = {
            "component": spec["components"][kfpnames.component_key(task)],
            "executor": executors[kfpnames.executor_key(task)],
            "inputs": tasks[task].get("inputs", {}),
            "parameter_values": {n: defaults.get(n) for n in step.parameters},
        }
        keys[step.name] = json.dumps(key, sort_keys=True, default=str)
    return keys


def _changes(old: Pipeline, before: Step, new: Pipeline, after: Step) -> tuple[str, ...]:
    found: list[str] = []
    if (
        [c.source for c in before.cells] != [c.source for c in after.cells]  # not cell numbers (kfp_spec._keyed)
        or [c.source for c in old.prelude] != [c.source for c in new.prelude]
        or old.shared_names != new.shared_names
    ):
        found.append("code")
    if before.image != after.image:
        found.append("image")
    if _read_parameters(old, before) != _read_parameters(new, after):
        found.append("parameters")
    if before.inputs != after.inputs:
        found.append("inputs")
    if before.outputs != after.outputs or before.metrics != after.metrics:
        found.append("outputs")
    if before.resources != after.resources:
        found.append("resources")
    if before.caching != after.caching:
        found.append("caching")
    pod = ("labels", "annotations", "secrets", "volumes")
    if any(getattr(before, a) != getattr(after, a) for a in pod):
        found.append("pod settings")
    if before.after != after.after:
        found.append("dependencies")
    return tuple(found)


def _read_parameters(pipeline: Pipeline, step: Step) -> list[tuple[str, str, str]]:
    by_name = {p.name: p for p in pipeline.parameters}
    return [(n, by_name[n].type, json.dumps(by_name[n].default, sort_keys=True)) for n in step.parameters]


def _parameter_changes(old: Pipeline, new: Pipeline) -> tuple[str, ...]:
    before = {p.name: p for p in old.parameters}
    lines = []
    for p in new.parameters:
        was = before.pop(p.name, None)
        if was is None:
            lines.append(f"added {p.name}: {p.type} = {json.dumps(p.default)}")
        elif was.type != p.type:
            lines.append(f"{p.name}: type {was.type} -> {p.type}")
        elif json.dumps(was.default, sort_keys=True) != json.dumps(p.default, sort_keys=True):
            lines.append(f"{p.name}: default {json.dumps(was.default)} -> {json.dumps(p.default)}")
    lines.extend(f"removed {name}" for name in before)
    return tuple(lines)


def text(plan: Plan) -> str:
    """The plan as an aligned plain-text table with the summary underneath."""
    table = [Plan.HEADER, *plan.rows()]
    widths = [max(len(row[i]) for row in table) for i in range(len(Plan.HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.extend(f"parameter {line}" for line in plan.parameters)
    lines.append(plan.summary())
    return "\n".join(lines)


def _md_cell(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown(plan: Plan) -> str:
    """The plan as a Markdown table (GitLab-flavoured), then parameter changes and the summary."""
    lines = ["| " + " | ".join(Plan.HEADER) + " |", "|" + "---|" * len(Plan.HEADER)]
    for row in plan.rows():
        name, *rest = row
        lines.append("| " + " | ".join([f"`{_md_cell(name)}`", *(_md_cell(c) for c in rest)]) + " |")
    if plan.parameters:
        lines.append("")
        lines.extend(f"- parameter {_md_cell(line)}" for line in plan.parameters)
    lines.extend(["", plan.summary()])
    return "\n".join(lines)
