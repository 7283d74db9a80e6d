"""Composition: a ``notebook:PATH`` cell includes another tagged notebook as a sub-pipeline.

Design (the simplest faithful one): the included notebook is compiled on its own first (so it must be
valid by itself, and its diagnostics are reported with its own path), then its steps are *inlined* into
the including pipeline:

- names: each included step becomes ``<stem>__<step>`` (the included notebook's file stem, made an
  identifier), a valid step name for ``prev:`` tags and a distinct KFP task name (``stem-step``); nested
  inclusions stack (``outer__inner__step``). ``prev:<stem>`` in the including notebook names the whole
  unit (it waits for the unit's last steps).
- order: the unit stands where its ``notebook:`` cell stands, in Kale's reading order: its first steps run
  after the step above the cell (or after the cell's own ``prev:`` tags), and a step below the cell with
  no ``prev:`` tags runs after the unit's last steps (those no other step of the unit waits for).
- parameters: the included notebook's parameters become parameters of the including pipeline, matched by
  name (the same name is the same parameter; a type clash is an error at the ``notebook:`` cell).
- code: the included notebook's imports/functions cells run only in its own steps (``Step.origin``
  carries them), and its steps receive values only from its own steps (and parameters): the including
  notebook cannot change what an included notebook computes, except through shared parameters.
- data flow: variables the included steps set are visible by name to later steps of the including
  notebook, resolved by the same data-flow rules as any step (nearest ancestor that may change them).

A ``notebook:`` cell holds no code (comments are fine), as Kale requires. Cycles (a includes b includes a)
and missing files are errors at the including cell. ``notebook_path`` in the cell's metadata (what Kale 2.3
writes, with ``notebook:NAME`` as the tag) wins over the tag's value, which is otherwise a path relative to
the including notebook.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from nb2kfp import git, kfpnames
from nb2kfp.config import Settings
from nb2kfp.errors import Diagnostic, NotebookError, error
from nb2kfp.frontend.analysis import Facts, analyse
from nb2kfp.frontend.component_call import call_facts
from nb2kfp.frontend.dataflow import Flow, StepFacts
from nb2kfp.frontend.notebook import Cell
from nb2kfp.ir import CodeCell, Origin, Parameter, Pipeline, Step
from nb2kfp.loader import Loader

BuildFn = Callable[[Path, Settings, tuple[str, ...], Loader], tuple[Pipeline, list[Diagnostic]]]


@dataclass
class Unit:
    """An included notebook, its steps already renamed into the including pipeline."""

    name: str  # the prefix without '__'; also the draft name prev: tags may use
    cell: int  # the notebook: cell in the including notebook
    pipeline: Pipeline
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, Facts] = field(default_factory=dict)
    cells: dict[str, list[tuple[int, Facts]]] = field(default_factory=dict)  # per step: its cells' facts
    preludes: dict[str, Facts] = field(default_factory=dict)

    @property
    def sinks(self) -> list[str]:
        waited = {a for s in self.steps for a in s.after}
        return [s.name for s in self.steps if s.name not in waited]


def unit_name(cell: Cell, including: str) -> str:
    stem = Path(_target(cell, including)).stem
    name = re.sub(r"\W", "_", stem)
    return name if name and not name[0].isdigit() else f"nb_{name}"


def _target(cell: Cell, including: str) -> str:
    ref = cell.notebook_ref or ""
    base = Path(including).parent
    return str(base / ref) if not Path(ref).is_absolute() else ref


def include_root(top: str) -> Path:
    """Where ``notebook:`` includes may reach: the git work tree holding the top notebook, else its folder."""
    return git.confinement_root(Path(top).resolve().parent)


def load_units(
    path: str,
    cells: dict[str, Cell],
    settings: Settings,
    stack: tuple[str, ...],
    build: BuildFn,
    diags: list[Diagnostic],
    loader: Loader,
) -> dict[str, Unit]:
    """Compile each included notebook (``cells``: unit name -> its notebook: cell), read through ``loader``, and
    rename its steps."""
    units: dict[str, Unit] = {}
    for name, cell in cells.items():
        if any(ln.strip() and not ln.strip().startswith("#") for ln in cell.source.splitlines()):
            msg = f"a notebook:{cell.notebook_ref} cell includes a notebook and holds no code (comments are fine)"
            diags.append(error(path, msg, "NB081", cell.index))
            continue
        target = _target(cell, path)
        try:
            resolved = str(Path(target).resolve())
            is_file = loader.is_file(Path(resolved))
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a link loop
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a usable path"
            diags.append(error(path, f"notebook: include: {reason}", "NB080", cell.index))
            continue
        root = include_root(stack[0] if stack else path)
        if not Path(resolved).is_relative_to(root):
            msg = (
                f"notebook:{cell.notebook_ref[:200] if cell.notebook_ref else ''}: an included notebook must be inside "
                f"{root} (the repository, or the top notebook's folder outside one)"
            )
            diags.append(error(path, msg, "NB084", cell.index))
            continue
        if resolved in stack:
            chain = [*stack[stack.index(resolved) :], resolved]
            msg = "notebooks include each other: " + " -> ".join(Path(p).name for p in chain)
            diags.append(error(path, msg, "NB082", cell.index))
            continue
        if not is_file:
            msg = f"notebook:{cell.notebook_ref}: no such notebook {target}"
            diags.append(error(path, msg, "NB080", cell.index))
            continue
        try:
            pipeline, found = build(Path(target), settings, stack, loader)
        except NotebookError as exc:
            diags.extend(exc.diagnostics)
            msg = f"included notebook {target} has errors (listed with its path)"
            diags.append(error(path, msg, "NB083", cell.index))
            continue
        diags.extend(found)
        units[name] = _rename(name, cell.index, pipeline)
    return units


def _rename(name: str, cell: int, pipeline: Pipeline) -> Unit:
    unit = Unit(name, cell, pipeline)
    prefix = f"{name}__"
    own = Origin(pipeline.source, pipeline.prelude, pipeline.shared_names, prefix)
    prelude_facts = _facts_of(pipeline.prelude)
    for step in pipeline.steps:
        origin = replace(step.origin, unit=prefix + step.origin.unit) if step.origin else own
        renamed = replace(
            step,
            name=prefix + step.name,
            after=tuple(prefix + a for a in step.after),
            inputs=tuple(replace(e, producer=prefix + e.producer) for e in step.inputs),
            origin=origin,
        )
        unit.steps.append(renamed)
        cells = [] if step.component else [(c.index, _facts_of((c,))) for c in step.cells]
        unit.cells[renamed.name] = cells or [(cell, call_facts(step.component) if step.component else Facts())]
        unit.facts[renamed.name] = call_facts(step.component) if step.component else _facts_of(step.cells)
        unit.preludes[renamed.name] = _facts_of(step.origin.prelude) if step.origin else prelude_facts
    return unit


def _facts_of(cells: tuple[CodeCell, ...]) -> Facts:
    facts = Facts()
    for c in cells:
        try:
            facts.extend(analyse(ast.parse(c.source)))
        except SyntaxError:  # compiled once already: cannot happen, but never crash on it
            continue
    return facts


def merge_parameters(
    path: str, own: list[Parameter], units: dict[str, Unit], diags: list[Diagnostic]
) -> list[Parameter]:
    """The including notebook's parameters, plus each included one's not already there (same name, same type)."""
    merged = {p.name: p for p in own}
    for unit in units.values():
        for p in unit.pipeline.parameters:
            if p.name not in merged:
                merged[p.name] = replace(p, cell=unit.cell)
            elif merged[p.name].type != p.type:
                msg = (
                    f"parameter {p.name!r} is a {merged[p.name].type} here but a {p.type} in the included notebook "
                    f"{unit.pipeline.source}: the same name is the same pipeline parameter; rename one"
                )
                diags.append(error(path, msg, "NB084", unit.cell))
    return list(merged.values())


def parents(prev: list[str] | tuple[str, ...], units: dict[str, Unit]) -> tuple[str, ...]:
    """prev: names with each unit name replaced by the unit's last steps."""
    out: list[str] = []
    for p in prev:
        for name in units[p].sinks if p in units else [p]:
            if name not in out:
                out.append(name)
    return tuple(out)


def expand_facts(
    facts: dict[str, StepFacts], units: dict[str, Unit]
) -> tuple[dict[str, StepFacts], dict[str, Facts], dict[str, set[str]]]:
    """Step facts with each unit replaced by its steps; plus their own preludes and what they may read from."""
    out: dict[str, StepFacts] = {}
    preludes: dict[str, Facts] = {}
    scopes: dict[str, set[str]] = {}
    for name, sf in facts.items():
        if name not in units:
            out[name] = StepFacts(name, len(out), parents(sf.parents, units), sf.cells, sf.facts)
            continue
        unit = units[name]
        outer = parents(sf.parents, units)
        for step in unit.steps:
            f = unit.facts[step.name]
            step_parents = step.after or outer
            source = step.origin.notebook if step.origin and not step.component else ""
            out[step.name] = StepFacts(step.name, len(out), step_parents, unit.cells[step.name], f, source)
            preludes[step.name] = unit.preludes[step.name]
            prefix = step.origin.unit if step.origin else ""
            scopes[step.name] = {
                s.name for s in unit.steps if s.origin and s.origin.unit.startswith(prefix) and s.name != step.name
            }
    return out, preludes, scopes


def unit_steps(unit: Unit, flow: Flow, outer: tuple[str, ...]) -> list[Step]:
    """The unit's steps with the data flow resolved in the including pipeline."""
    steps = []
    for s in unit.steps:
        have = {c.source for c in s.cells}
        first = s.cells[0].index if s.cells else unit.cell
        replay = [CodeCell(first, line) for _, line in sorted(flow.imports[s.name].items()) if line not in have]
        metrics = (*s.metrics, *(m for m in flow.metrics[s.name] if m not in s.metrics))
        steps.append(
            replace(
                s,
                cells=(*replay, *s.cells),
                after=s.after or outer,
                inputs=tuple(sorted(flow.inputs[s.name], key=lambda e: e.name)),
                outputs=tuple(sorted(flow.outputs[s.name])),
                parameters=tuple(sorted(flow.params[s.name])),
                metrics=metrics,
            )
        )
    return steps


def finish(path: str, steps: list[Step], units: dict[str, Unit], diags: list[Diagnostic]) -> list[Step]:
    """Expand prev: names of units in the including steps; check that task names stay distinct."""
    if not units:
        return steps
    out = [replace(s, after=parents(s.after, units)) for s in steps]
    by_name = {s.name: s for s in out}
    for first, later, task in kfpnames.clashes(by_name):
        msg = kfpnames.clash_message(first, later, task)
        diags.append(error(path, msg, "NB085", by_name[later].first_cell))
    return out


def combined_hash(own: str, units: dict[str, Unit], extra: list[str]) -> str:
    """The pipeline's content hash: its notebook's, plus every included notebook's and catalog component's."""
    if not units and not extra:
        return own
    parts = [own, *(u.pipeline.source_hash for u in units.values()), *extra]
    return hashlib.sha256(":".join(parts).encode()).hexdigest()
