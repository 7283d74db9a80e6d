"""Which variable each step receives from which ancestor, and where the DAG departs from the notebook.

A step receives a variable from the nearest ancestors that may have changed it; values a
step only imports are re-imported rather than passed. Errors: a name no ancestor, parameter,
prelude cell or builtin provides; a name two unordered steps both set. Warnings: a step that
reads a value which a step above it (but not among its ancestors) changed for sure.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from nb2kfp.errors import Diagnostic, error, warning
from nb2kfp.frontend.analysis import BUILTIN_NAMES, Facts
from nb2kfp.ir import VariableEdge
from nb2kfp.runtime.step import PROCESS_STATE  # the implicit value carrying a kernel's process state


@dataclass
class StepFacts:
    name: str
    order: int  # position in the notebook (by first cell)
    parents: tuple[str, ...]
    cells: list[tuple[int, Facts]]
    facts: Facts
    source: str = ""  # the notebook its cells are in, when not the one being compiled (an included one)

    def locate(self, name: str) -> tuple[int, int | None]:
        for index, facts in self.cells:
            if name in facts.first_line:
                return index, facts.first_line[name]
        return (self.cells[0][0] if self.cells else 0), None

    @property
    def first_cell(self) -> int:
        return self.cells[0][0] if self.cells else 0


@dataclass
class Flow:
    inputs: dict[str, list[VariableEdge]] = field(default_factory=dict)
    params: dict[str, set[str]] = field(default_factory=dict)
    outputs: dict[str, set[str]] = field(default_factory=dict)
    imports: dict[str, dict[str, str]] = field(default_factory=dict)  # step -> name -> import line
    metrics: dict[str, list[str]] = field(default_factory=dict)


def ancestors_of(steps: dict[str, StepFacts]) -> dict[str, set[str]]:
    memo: dict[str, set[str]] = {}

    def visit(name: str) -> set[str]:
        if name not in memo:
            memo[name] = set()  # cycles are rejected before this runs
            out: set[str] = set()
            for parent in steps[name].parents:
                out |= {parent} | visit(parent)
            memo[name] = out
        return memo[name]

    for name in steps:
        visit(name)
    return memo


def resolve(
    path: str,
    steps: dict[str, StepFacts],
    prelude: Facts,
    params: set[str],
    metrics: list[tuple[str, int]],
    diagnostics: list[Diagnostic],
    *,
    immutable: frozenset[str] = frozenset(),
    preludes: dict[str, Facts] | None = None,
    scopes: dict[str, set[str]] | None = None,
    included: bool = False,
) -> Flow:
    """``immutable`` names (int/float/str/bool parameters) can only change by rebinding.
    ``preludes`` gives a step its own imports/functions facts (an included notebook's), and ``scopes``
    the steps it may receive values from (its own notebook's), instead of the pipeline's; a name its own
    notebook does not provide comes from the steps above the inclusion (Kale 2.3 composition).
    ``included``: this notebook is compiled for inclusion, so names nothing here sets are left to the
    including notebook instead of being errors."""
    flow = Flow()
    anc = ancestors_of(steps)
    for step in steps.values():
        flow.inputs[step.name] = []
        flow.params[step.name] = set()
        flow.outputs.setdefault(step.name, set())
        flow.imports[step.name] = {}
        flow.metrics[step.name] = []
    for step in sorted(steps.values(), key=lambda s: s.order):
        pre = (preludes or {}).get(step.name, prelude)
        scope = (scopes or {}).get(step.name)
        view = steps if scope is None else {n: s for n, s in steps.items() if n in scope or n == step.name}
        needed = sorted(step.facts.free() | (pre.free() & params) | _shadowed_builtins(step, view, anc))
        for name in needed:
            immutable_name = name in immutable
            seen = (
                view
                if scope is None or _provided(step, name, view, anc, pre, params, immutable=immutable_name)
                else steps
            )
            provided = _provided(step, name, seen, anc, pre, params, immutable=immutable_name)
            if included and not provided:
                continue  # the including notebook provides it (or reports it)
            if not provided and _called_later(step, name, steps):
                continue  # read only when a function is called: the steps that call it receive it
            _resolve_one(
                path, step, name, seen, anc, pre, params,
                star=pre.star_import, flow=flow, diagnostics=diagnostics, immutable=immutable_name,
            )  # fmt: skip
    _Carried(steps, anc, prelude, preludes or {}, params, flow).resolve()
    starred = {
        n for n, s in steps.items() if s.facts.star_import or (preludes or {}).get(n, prelude).star_import
    }  # steps where `from M import *` (or %pylab) may set names the analysis cannot list
    for name, cell in metrics:
        _metric_setter(path, name, cell, steps, params, starred, flow, diagnostics)
    return flow


def _called_later(step: StepFacts, name: str, steps: dict[str, StepFacts]) -> bool:
    """A global only the bodies of the step's functions read, which a step further down sets (python-control's
    cruise.ipynb: ``vehicle_update`` reads ``motor_torque``, defined two cells below, and runs after that)."""
    f = step.facts
    if name not in f.deferred or name in f.reads:
        return False
    return any(name in s.facts.binds for s in steps.values() if s.order > step.order)


def _provided(
    step: StepFacts,
    name: str,
    steps: dict[str, StepFacts],
    anc: dict[str, set[str]],
    prelude: Facts,
    params: set[str],
    *,
    immutable: bool,
) -> bool:
    """Whether an ancestor among ``steps``, the prelude, a parameter, a builtin or the step itself provides ``name``."""
    if name in prelude.binds or name in BUILTIN_NAMES or name in params or name in step.facts.binds:
        return True
    if prelude.star_import or step.facts.star_import:
        return True
    for a in anc[step.name] & steps.keys():
        f = steps[a].facts
        if name in ((f.binds | f.deleted) if immutable else f.changes()):
            return True
    return False


def _shadowed_builtins(step: StepFacts, steps: dict[str, StepFacts], anc: dict[str, set[str]]) -> set[str]:
    """Builtin names (``sum``, ``id``, ``input``) this step reads that an ancestor rebinds: they travel too."""
    f = step.facts
    read = (f.reads | (f.deferred - f.binds)) & BUILTIN_NAMES
    if not read:
        return set()
    bound = {n for a in anc[step.name] if a in steps for n in steps[a].facts.binds}
    return read & bound


def _resolve_one(
    path: str,
    step: StepFacts,
    name: str,
    steps: dict[str, StepFacts],
    anc: dict[str, set[str]],
    prelude: Facts,
    params: set[str],
    *,
    star: bool,
    flow: Flow,
    diagnostics: list[Diagnostic],
    immutable: bool,
) -> None:
    mine = anc[step.name] & steps.keys()
    path = step.source or path

    def changes(s: StepFacts) -> set[str]:
        return s.facts.binds | s.facts.deleted if immutable else s.facts.changes()

    candidates = [steps[a] for a in mine if name in changes(steps[a]) and name not in prelude.imported]
    nearest = [c for c in candidates if not any(c.name in anc[o.name] for o in candidates)]
    cell, line = step.locate(name)
    if not nearest:
        known = name in prelude.binds or name in BUILTIN_NAMES or name in params
        if not (known or name in step.facts.binds or star or step.facts.star_import):
            if _replay_star_imports(step, [steps[a] for a in mine], flow):
                return
            if name in step.facts.on_error - step.facts.deferred:
                msg = (
                    f"name {name!r} is read only as an `except` clause's type, when an exception happens, and nothing "
                    "sets it: then the step fails with NameError, as a kernel would"
                )
                diagnostics.append(warning(path, msg, "NB026", cell, line))
            else:
                diagnostics.append(error(path, _undefined_message(step, name, steps, anc), "NB020", cell, line))
            return
        _warn_notebook_order(path, step, name, steps, mine, nearest, cell, line, diagnostics)
        if name in params and name not in prelude.binds:
            flow.params[step.name].add(name)
        return  # from the prelude, a builtin, a parameter, the step itself on some path, or a star import
    _warn_notebook_order(path, step, name, steps, mine, nearest, cell, line, diagnostics)
    definite = [c for c in nearest if name in c.facts.binds or name in c.facts.mutates]
    if len(definite) > 1:
        names = " and ".join(f"{c.name!r} (cell {c.first_cell})" for c in sorted(definite, key=lambda c: c.order))
        msg = (
            f"step {step.name!r} reads {name!r}, which steps {names} both set with no order between them; "
            f"add a prev: tag so one runs after the other"
        )
        diagnostics.append(error(path, msg, "NB022", cell, line))
        return
    provider = definite[0] if definite else max(nearest, key=lambda c: c.order)
    if name in provider.facts.deleted:
        msg = f"step {step.name!r} reads {name!r}, but step {provider.name!r} deletes it"
        diagnostics.append(error(path, msg, "NB023", cell, line))
        return
    if name in provider.facts.imported:
        flow.imports[step.name][name] = provider.facts.imported[name]
        return
    flow.inputs[step.name].append(VariableEdge(name, provider.name))
    flow.outputs[provider.name].add(name)


class _Carried:
    """What a step needs besides the names its own code reads: the globals read by the functions it receives (or
    values holding them: an object made from a function), since in the notebook those functions see the notebook's
    globals when they are called; and the global random state after a seed. Found leniently: a name no ancestor
    provides, or that is ambiguous, is left out (the function may never be called here)."""

    def __init__(
        self,
        steps: dict[str, StepFacts],
        anc: dict[str, set[str]],
        prelude: Facts,
        preludes: dict[str, Facts],
        params: set[str],
        flow: Flow,
    ) -> None:
        self.steps, self.anc, self.prelude, self.preludes = steps, anc, prelude, preludes
        self.params, self.flow = params, flow
        self.memo: dict[tuple[str, str], set[str]] = {}
        self.changes = {n: s.facts.changes() for n, s in steps.items()}

    def resolve(self) -> None:
        pre = self.preludes
        start = {n for n, s in self.steps.items() if s.facts.process_state or pre.get(n, self.prelude).process_state}
        code = {n for n, s in self.steps.items() if not s.facts.call}  # a component takes only its arguments
        keep = {n for n in code if n in start or self.anc[n] & start}  # the steps that keep the process state
        for step in sorted(self.steps.values(), key=lambda s: (len(self.anc[s.name]), s.order)):
            if step.name not in code:
                continue
            if step.name in keep:
                self._receive(step, PROCESS_STATE, keep)
            self._functions_globals(step)

    def _functions_globals(self, step: StepFacts) -> None:
        pre = self.preludes.get(step.name, self.prelude)
        f = step.facts
        pending = [n for e in self.flow.inputs[step.name] for n in self.carried(self.steps[e.producer], e.name)]
        pending += [n for n in (f.reads | f.deferred) & pre.binds for n in _within(pre, n, set())]
        pending += f.formula_names  # variables a formula string may name (or data columns: only what a step sets)
        done: set[str] = set()
        while pending:
            name = pending.pop()
            if name in done or name in BUILTIN_NAMES or name == PROCESS_STATE:
                continue
            done.add(name)
            if self._held(step, name):
                continue
            if name in self.params and name not in pre.binds:
                self.flow.params[step.name].add(name)
                continue
            provider = self._receive(step, name, {n for n, c in self.changes.items() if name in c}, carried=True)
            if provider is not None:
                pending += self.carried(provider, name)

    def _held(self, step: StepFacts, name: str) -> bool:
        """Whether the step already receives, imports or is given ``name``."""
        flow = self.flow
        return (
            any(e.name == name for e in flow.inputs[step.name])
            or name in flow.imports[step.name]
            or name in flow.params[step.name]
            or name in self.preludes.get(step.name, self.prelude).binds
        )

    def _receive(self, step: StepFacts, name: str, setters: set[str], *, carried: bool = False) -> StepFacts | None:
        """Pass ``name`` to ``step`` from its nearest ancestor among ``setters`` (the last in notebook order if
        several)."""
        candidates = [self.steps[a] for a in self.anc[step.name] & setters]
        nearest = [c for c in candidates if not any(c.name in self.anc[o.name] for o in candidates)]
        if not nearest:
            return None
        provider = max(nearest, key=lambda c: c.order)
        if name in provider.facts.deleted:
            return None
        if name in provider.facts.imported:
            self.flow.imports[step.name].setdefault(name, provider.facts.imported[name])
            return None
        self.flow.inputs[step.name].append(VariableEdge(name, provider.name, carried=carried))
        self.flow.outputs[provider.name].add(name)
        return provider

    def carried(self, step: StepFacts, name: str) -> set[str]:
        """The globals that using the value ``step`` leaves in ``name`` may read (its functions', transitively).
        Only asked of steps whose inputs are final (ancestors of the step being resolved)."""
        key = (step.name, name)
        if key not in self.memo:
            reached: set[str] = set()
            out = _within(step.facts, name, reached)
            for e in self.flow.inputs[step.name]:
                if e.name in reached:
                    out |= self.carried(self.steps[e.producer], e.name)
            self.memo[key] = out
        return self.memo[key]


def _within(facts: Facts, name: str, reached: set[str]) -> set[str]:
    """What using ``name`` may read, within one block of code (a step's cells, the imports/functions cells);
    ``reached`` collects the names its value may come from there."""
    reached.add(name)
    needs = facts.needs.get(name, set())
    out = set(needs)
    for other in needs | facts.held.get(name, set()):
        if other not in reached:
            out |= _within(facts, other, reached)
    return out


def _replay_star_imports(step: StepFacts, ancestors: list[StepFacts], flow: Flow) -> bool:
    """A name no one binds may come from an ancestor's ``from M import *``: replay those in ``step``, all in
    notebook order (a later one wins, as in the notebook) and before its other imports, without replacing a value
    the step already holds (its inputs, the prelude's names), which in the notebook were bound after them."""
    stars = [line for a in sorted(ancestors, key=lambda a: a.order) for line in a.facts.stars]
    if stars:
        flow.imports[step.name]["*"] = (
            "import builtins as _nb2kfp_b; _nb2kfp_held = _nb2kfp_b.dict(_nb2kfp_b.globals()); "
            f"{'; '.join(stars)}; _nb2kfp_b.globals().update(_nb2kfp_held); del _nb2kfp_b, _nb2kfp_held"
        )
    return bool(stars)


def _warn_notebook_order(
    path: str,
    step: StepFacts,
    name: str,
    steps: dict[str, StepFacts],
    mine: set[str],
    nearest: list[StepFacts],
    cell: int,
    line: int | None,
    diagnostics: list[Diagnostic],
) -> None:
    above = [s for s in steps.values() if s.order < step.order and name in (s.facts.binds | s.facts.mutates)]
    if not above:
        return
    last = max(above, key=lambda s: s.order)
    if last.name in mine:
        return
    if nearest:
        sees = "the value from step " + " / ".join(repr(n.name) for n in nearest)
    else:
        sees = "the value it had before any step ran"
    msg = (
        f"step {step.name!r} reads {name!r}, which step {last.name!r} (cell {last.first_cell}) changes above it "
        f"in the notebook, but {last.name!r} is not among its prev: ancestors, so the pipeline gives it {sees}. "
        f"Add prev:{last.name} to step {step.name!r} to keep the notebook's behaviour"
    )
    diagnostics.append(warning(path, msg, "NB024", cell, line))


def _undefined_message(step: StepFacts, name: str, steps: dict[str, StepFacts], anc: dict[str, set[str]]) -> str:
    definers = sorted(
        (s for s in steps.values() if name in s.facts.binds and s.name != step.name), key=lambda s: s.order
    )
    if definers and all(step.name in anc[d.name] for d in definers):
        d = definers[0]
        return (
            f"step {step.name!r} reads {name!r}, which only step {d.name!r} (cell {d.first_cell}) sets, and that step "
            f"runs after it; set {name!r} in step {step.name!r} or in a step before it"
        )
    if definers:
        d = definers[-1]
        return (
            f"step {step.name!r} reads {name!r}, which only step {d.name!r} (cell {d.first_cell}) defines, "
            f"and {d.name!r} is not among its prev: ancestors; add prev:{d.name} to step {step.name!r}"
        )
    known = {n for s in steps.values() for n in s.facts.binds}
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"name {name!r} is not defined: no step before {step.name!r}, parameter or imports cell sets it{hint}"


def _metric_setter(
    path: str,
    name: str,
    cell: int,
    steps: dict[str, StepFacts],
    params: set[str],
    starred: set[str],
    flow: Flow,
    diagnostics: list[Diagnostic],
) -> None:
    setters = [s for s in steps.values() if name in (s.facts.binds | s.facts.mutates)]
    if not setters and name not in params:  # a name a star import (`%pylab`: numpy's) may set: the last such step
        setters = [s for s in steps.values() if s.name in starred]
    if setters:
        flow.metrics[max(setters, key=lambda s: s.order).name].append(name)
        return
    if name in params and steps:
        last = max(steps.values(), key=lambda s: s.order)
        flow.metrics[last.name].append(name)
        flow.params[last.name].add(name)
        return
    diagnostics.append(error(path, f"metric {name!r} is never set by any step", "NB046", cell))
