"""Notebook -> Pipeline IR: group tagged cells into steps, check the DAG, resolve data flow."""

from __future__ import annotations

import ast
import difflib
import itertools
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nb2kfp import kfpnames
from nb2kfp.catalog import resolve as catalog
from nb2kfp.config import Settings
from nb2kfp.errors import Diagnostic, NotebookError, Severity, error, warning
from nb2kfp.frontend import component_call, compose, files, imagefiles, kernel_only, lean, magics, model_tags, options
from nb2kfp.frontend.analysis import Facts, analyse
from nb2kfp.frontend.dataflow import Flow, StepFacts, resolve
from nb2kfp.frontend.notebook import Cell, Notebook, StepOptions, parse_step_defaults, read_notebook
from nb2kfp.frontend.params import parse_metrics, parse_parameters, text_metrics
from nb2kfp.ir import CodeCell, ComponentCall, Parameter, Pipeline, Resources, SecretEnv, Step, Toleration
from nb2kfp.loader import WORK_TREE, Loader
from nb2kfp.runtime.step import ARTIFACT_KEY_ENV

_MAGIC_CALL = re.compile(r"get_ipython\(\)\.run_(line|cell)_magic\('(\w+)'")
_PIP = re.compile(
    r"get_ipython\(\)\.(?:system|run_line_magic)\('(?:pip|conda|mamba|uv)\b|system\('(?:python3? -m )?pip "
)


# Errors after which the data-flow checks still give true answers (the tag is ignored, the prev: name read
# as its suggestion, the option left out): lint goes on to report undefined names too.
_DATAFLOW_STILL_CHECKED = frozenset({"NB010", "NB013", "NB017", "NB050", "NB051"})


@dataclass
class _Draft:
    name: str
    order: int
    cells: list[Cell] = field(default_factory=list)
    prev: list[tuple[str, int]] = field(default_factory=list)  # (step, cell with the tag)
    options: StepOptions = field(default_factory=StepOptions)


@dataclass
class Result:
    pipeline: Pipeline
    diagnostics: list[Diagnostic]


@dataclass
class _Compilation:
    """What compiling one notebook knows so far: each pass of :func:`build` reads it and adds to it."""

    nb: Notebook
    settings: Settings
    loader: Loader
    stack: tuple[str, ...]  # the notebooks including this one, then this one (composition)
    included: bool  # compiled for a notebook: cell: free names may come from the steps above it
    diags: list[Diagnostic]
    meta: dict[str, Any]  # the notebook's kubeflow_notebook metadata (Kale's)
    defaults: StepOptions = field(default_factory=StepOptions)
    groups: _Groups = field(default_factory=lambda: _Groups())
    code: dict[int, tuple[str, ast.Module | None]] = field(default_factory=dict)  # cell -> (Python, its tree)
    trees: dict[int, ast.Module] = field(default_factory=dict)
    units: dict[str, compose.Unit] = field(default_factory=dict)
    parameters: list[Parameter] = field(default_factory=list)
    calls: dict[str, ComponentCall] = field(default_factory=dict)
    metrics: list[tuple[str, int]] = field(default_factory=list)
    prelude_cells: list[Cell] = field(default_factory=list)
    prelude: Facts = field(default_factory=Facts)
    shared: Facts = field(default_factory=Facts)
    facts: dict[str, StepFacts] = field(default_factory=dict)
    flow: Flow = field(default_factory=Flow)
    base_image: str = ""
    steps: list[Step] = field(default_factory=list)
    workspace: str = ""

    @property
    def path(self) -> str:
        return self.nb.path


def build(
    path: str | Path,
    settings: Settings | None = None,
    data: bytes | None = None,
    _stack: tuple[str, ...] = (),
    loader: Loader = WORK_TREE,
) -> Result:
    """Compile the notebook at ``path`` to IR; raise NotebookError (with every diagnostic) on errors.
    ``loader`` reads the notebook (unless ``data`` is given) and the notebooks it includes.
    ``_stack``: the notebooks including this one (composition), to report cycles.

    The passes run in order over one :class:`_Compilation`; each pass in :data:`_PASSES` runs only when the
    errors so far allow it (the one gate): reading and the structural checks always, the data-flow pass also
    after the errors it still answers truly for (:data:`_DATAFLOW_STILL_CHECKED`), so that lint reports
    undefined names with them; building and checking the steps only when there are none."""
    settings = settings or Settings()
    nb = read_notebook(path, data, settings.ignore_tags, loader)
    meta = nb.metadata.get("kubeflow_notebook")
    c = _Compilation(
        nb, settings, loader, (*_stack, str(Path(path).resolve())), bool(_stack), list(nb.diagnostics),
        meta if isinstance(meta, dict) else {},
    )  # fmt: skip
    for compile_pass, may_follow in _PASSES:
        if may_follow is not None and any(d.severity is Severity.ERROR and d.code not in may_follow for d in c.diags):
            raise NotebookError(c.diags)
        compile_pass(c)
    if any(d.severity is Severity.ERROR for d in c.diags):
        raise NotebookError(c.diags)
    return Result(_pipeline(c), c.diags)


def _read_cells(c: _Compilation) -> None:
    """Cells grouped into steps; each code cell as Python (magics translated) and its tree."""
    c.defaults = parse_step_defaults(c.path, c.meta.get("steps_defaults"), c.diags)
    c.groups = _group(c.nb, c.diags)
    kept = [cell for cell in c.nb.cells if cell.role not in ("skip", "notebook")]
    read = _script_reader(c.path, c.stack[0], c.loader, magics.written_files([cell.source for cell in kept]))
    c.code = {cell.index: _to_python(c.path, cell, c.diags, read) for cell in kept}
    c.trees = {i: t for i, (_, t) in c.code.items() if t is not None}


def _load_parts(c: _Compilation) -> None:
    """Included notebooks, parameters, catalog components and their calls, metrics, and the prelude's facts."""
    c.units = compose.load_units(c.path, c.groups.units, c.settings, c.stack, _build_included, c.diags, c.loader)
    own = _parameters(c.path, c.groups, c.trees, c.diags)
    c.parameters = compose.merge_parameters(c.path, own, c.units, c.diags)
    refs = {name: (cell.index, cell.component_ref or "") for name, cell in c.groups.components.items()}
    found = catalog.components(c.path, refs, c.settings, c.diags, c.loader)
    c.calls = component_call.load_calls(c.path, c.groups.components, c.trees, c.parameters, found, c.diags)
    c.metrics = [
        (m, cell.index)
        for cell in c.groups.metrics
        if cell.index in c.trees
        for m in parse_metrics(c.path, cell.index, c.trees[cell.index], c.diags)
    ]
    c.prelude_cells = c.groups.imports + c.groups.functions
    for cell in c.prelude_cells:
        if cell.index in c.trees:
            c.prelude.extend(analyse(c.trees[cell.index]))
    for cell in c.groups.functions:
        if cell.index in c.trees:
            c.shared.extend(analyse(c.trees[cell.index]))


def _check_structure(c: _Compilation) -> None:
    """The DAG of steps and their options."""
    _check_dag(c.path, c.groups.steps, c.diags)
    drafts = [(d.name, d.cells[0].index, d.options) for d in c.groups.steps.values()]
    options.check_options(c.path, drafts, c.defaults, c.meta, c.diags)


def _resolve_dataflow(c: _Compilation) -> None:
    """Which variable each step receives from which step, the parameters and metrics it uses."""
    facts = {
        d.name: _step_facts(d, c.trees, component_call.call_facts(c.calls[d.name]) if d.name in c.calls else None)
        for d in c.groups.steps.values()
    }
    c.facts, preludes, scopes = compose.expand_facts(facts, c.units)
    param_names = {p.name for p in c.parameters}
    _check_prelude(c.path, c.prelude_cells, c.trees, param_names, c.diags)
    immutable = frozenset(p.name for p in c.parameters if p.type in ("int", "float", "str", "bool"))
    c.flow = resolve(
        c.path, c.facts, c.prelude, param_names, c.metrics, c.diags,
        immutable=immutable, preludes=preludes, scopes=scopes, included=c.included,
    )  # fmt: skip
    step_trees = [c.trees[cell.index] for d in c.groups.steps.values() for cell in d.cells if cell.index in c.trees]
    text_metrics(c.path, c.metrics, step_trees, c.diags)


def _make_steps(c: _Compilation) -> None:
    """The IR steps, in dependency order: this notebook's, included notebooks', component calls."""
    volumes = options.volumes(c.meta)
    c.base_image = options.base_image(c.path, c.meta, c.settings, c.diags)
    caching = c.meta.get("enable_caching", c.settings.caching)
    steps: list[Step] = []
    for draft in _topological(c.groups.steps):
        if draft.name in c.units:
            parents = compose.parents([p for p, _ in draft.prev], c.units)
            steps.extend(compose.unit_steps(c.units[draft.name], c.flow, parents))
            continue
        opts = draft.options.merged_over(c.defaults)
        produced = model_tags.declared(c.path, draft.cells, c.facts[draft.name], c.diags)
        references = model_tags.references(c.path, draft.cells, c.trees, c.facts[draft.name], produced, c.diags)
        replay = [CodeCell(draft.cells[0].index, line) for _, line in sorted(c.flow.imports[draft.name].items())]
        steps.append(
            Step(
                name=draft.name,
                cells=(*replay, *(CodeCell(cell.index, c.code[cell.index][0], cell.raises) for cell in draft.cells)),
                after=tuple(p for p, _ in draft.prev),
                inputs=tuple(sorted(c.flow.inputs[draft.name], key=lambda e: e.name)),
                outputs=tuple(sorted(set(c.flow.outputs[draft.name]) | set(produced) | {v for _, v in references})),
                models=produced,
                references=references,
                parameters=tuple(sorted(c.flow.params[draft.name])),
                metrics=tuple(c.flow.metrics[draft.name]),
                image=opts.image or c.base_image,
                caching=bool(caching) if opts.caching is None else opts.caching,
                resources=Resources(tuple(sorted(opts.limits.items())), tuple(sorted(opts.requests.items()))),
                labels=tuple(sorted(opts.labels.items())),
                annotations=tuple(sorted(opts.annotations.items())),
                secrets=tuple(SecretEnv(s, k, env) for env, (s, k) in sorted(_with_artifact_key(opts, c.settings))),
                volumes=volumes,
                node_selector=tuple(sorted(opts.node_selector.items())),
                tolerations=tuple(Toleration(k, *t) for k, t in sorted(opts.tolerations.items())),
                retries=opts.retries or 0,
                timeout=opts.timeout,
                report="html" if opts.report else "",
            )
        )
    calls = c.calls
    steps = [replace(s, component=calls[s.name], image=calls[s.name].image) if s.name in calls else s for s in steps]
    steps = component_call.finish(c.path, compose.finish(c.path, steps, c.units, c.diags), c.diags)
    c.steps = _lean(steps, _prelude_code(c), {cell.index for cell in c.groups.imports})


def _check_steps(c: _Compilation) -> None:
    """What the finished steps must satisfy: images, names, cluster limits, the workspace, files they read."""
    options.check_images(c.path, c.steps, c.base_image, c.settings, c.diags)
    options.check_names(c.path, c.steps, c.parameters, c.diags)
    options.check_cluster(c.path, c.steps, c.parameters, c.diags)
    c.workspace = options.workspace(c.path, c.meta, c.settings, c.diags)
    own_steps = [
        (d.name, [(cell.index, c.trees[cell.index]) for cell in d.cells if cell.index in c.trees])
        for d in c.groups.steps.values()
        if d.name not in c.units and d.name not in c.calls
    ]
    in_step_image = frozenset(s.name for s in c.steps if s.image == c.base_image)  # nb2kfp build's image: the files
    folder, kept_out = Path(c.path).parent, imagefiles.kept_out
    rules = imagefiles.rules_of(folder)
    files.check(
        c.path, own_steps, c.diags,
        workspace=bool(c.workspace), in_step_image=in_step_image, kept_out=lambda p: kept_out(folder, rules, p),
    )  # fmt: skip
    imagefiles.check_imports(c.path, sorted(c.trees.items()), c.diags)
    kernel_only.function_pointers(c.path, own_steps, c.flow.outputs, c.diags)


# Each pass, and the errors that may stand before it runs: None, any (reading and the structural checks go on, so
# that lint reports every problem at once); an empty set, none.
_PASSES: tuple[tuple[Callable[[_Compilation], None], frozenset[str] | None], ...] = (
    (_read_cells, None),
    (_load_parts, None),
    (_check_structure, None),
    (_resolve_dataflow, _DATAFLOW_STILL_CHECKED),
    (_make_steps, frozenset()),
    (_check_steps, frozenset()),
)


def _prelude_code(c: _Compilation) -> tuple[CodeCell, ...]:
    return tuple(CodeCell(cell.index, c.code[cell.index][0]) for cell in c.prelude_cells)


def _pipeline(c: _Compilation) -> Pipeline:
    name = str(c.meta.get("pipeline_name") or c.nb.stem)
    modules = {*_imported_modules(c.trees.values()), *(m for u in c.units.values() for m in u.pipeline.modules)}
    return Pipeline(
        name=kfpnames.pipeline_name(c.settings.pipeline_name_prefix + name),
        source=c.path,
        source_hash=compose.combined_hash(c.nb.sha256, c.units, [call.sha256 for call in c.calls.values()]),
        steps=tuple(c.steps),
        parameters=tuple(c.parameters),
        prelude=_prelude_code(c),
        shared_names=tuple(sorted(c.shared.binds - set(c.shared.imported))),
        description=str(c.meta.get("pipeline_description") or ""),
        modules=tuple(sorted(modules)),
        base_image=c.base_image,
        workspace=c.workspace,
        workspace_storage_class=c.settings.workspace_storage_class if c.workspace else "",
    )


def _lean(steps: list[Step], prelude: tuple[CodeCell, ...], imports: set[int]) -> list[Step]:
    """Each notebook step of this notebook with only the imports it uses (:mod:`nb2kfp.frontend.lean`)."""
    out = []
    for step in steps:
        if step.component is None and step.origin is None:
            own = lean.prelude_for(prelude, imports, step.cells)
            step = replace(step, prelude=own) if own != prelude else step
        out.append(step)
    return out


def _with_artifact_key(opts: StepOptions, settings: Settings) -> list[tuple[str, tuple[str, str]]]:
    """The step's secret: tags, plus the artifact HMAC key when the settings name its Kubernetes secret."""
    found = dict(opts.secrets)
    if settings.artifact_key_secret:
        found[ARTIFACT_KEY_ENV] = settings.artifact_key_secret
    return list(found.items())


def _imported_modules(trees: Iterable[ast.Module]) -> tuple[str, ...]:
    """Top-level modules imported anywhere (imports are statements: only statement bodies are visited)."""
    found: set[str] = set()
    stack: list[ast.AST] = list(trees)
    while stack:
        node = stack.pop()
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(node, name, None)
            if isinstance(children, list):
                stack.extend(children)
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return tuple(sorted(found))


@dataclass
class _Groups:
    imports: list[Cell] = field(default_factory=list)
    functions: list[Cell] = field(default_factory=list)
    parameters: list[Cell] = field(default_factory=list)
    injected: list[Cell] = field(default_factory=list)
    metrics: list[Cell] = field(default_factory=list)
    steps: dict[str, _Draft] = field(default_factory=dict)
    units: dict[str, Cell] = field(default_factory=dict)  # notebook: cells, by unit name
    components: dict[str, Cell] = field(default_factory=dict)  # component: cells, by step name
    orphans: list[Cell] = field(default_factory=list)  # untagged code below a notebook:/component: cell


def _group(nb: Notebook, diags: list[Diagnostic]) -> _Groups:
    groups = _Groups()
    has_steps = any(c.step or c.role in ("notebook", "component") for c in nb.cells)
    current: list[Cell] | None = None
    leading: list[Cell] = []
    for cell in nb.cells:
        if cell.role == "skip":
            continue
        if cell.role in ("notebook", "component"):
            current = _special(nb, cell, groups, diags)
            continue
        if cell.role != "code":
            current = getattr(groups, cell.role if cell.role != "injected" else "injected")
            assert current is not None
            current.append(cell)
            continue
        if cell.step is None and not has_steps:
            cell.step = kfpnames.pipeline_name(nb.stem).replace("-", "_")
        if cell.step is not None:
            between = next((d.name for d in groups.steps.values() if d.cells is current), cell.step)
            if cell.step in groups.steps and between != cell.step:  # another step's cells came in between
                first = groups.steps[cell.step].cells[0].index
                msg = (
                    f"step {cell.step!r} continues here after step {between!r}: its cells run together, as one step "
                    f"placed where it started (cell {first}), not in notebook order; give this cell a step of its own"
                )
                diags.append(warning(nb.path, msg, "NB025", cell.index))
            draft = groups.steps.setdefault(cell.step, _Draft(cell.step, len(groups.steps)))
            draft.cells.append(cell)
            draft.prev.extend((p, cell.index) for p in cell.prev if p not in [q for q, _ in draft.prev])
            draft.options = cell.options.merged_over(draft.options)
            current = draft.cells
        elif current is None:
            leading.append(cell)
        else:
            current.append(cell)
    drafts = list(groups.steps.values())
    for before, draft in itertools.pairwise(drafts):
        if not draft.prev:  # Kale's default: a step without prev: tags runs after the step above it
            draft.prev.append((before.name, draft.cells[0].index))
    if any(ln.strip() and not ln.strip().startswith("#") for c in groups.orphans for ln in c.source.splitlines()):
        msg = "code below a notebook: or component: cell belongs to no step: give it a step:NAME tag"
        diags.append(error(nb.path, msg, "NB087", groups.orphans[0].index))
    if not has_steps and nb.cells:
        diags.append(warning(nb.path, "no step: tags: the whole notebook runs as one step", "NB015"))
    code_lines = [
        c for c in leading if any(ln.strip() and not ln.strip().startswith("#") for ln in c.source.splitlines())
    ]
    if code_lines:
        msg = (
            "code before the first tagged cell belongs to no step and is left out of the pipeline "
            "(as Kale does); tag it imports, functions, step:NAME or skip"
        )
        diags.append(warning(nb.path, msg, "NB016", code_lines[0].index))
    return groups


def _script_reader(path: str, top: str, loader: Loader, written: dict[str, str | None]) -> Callable[[str], str | None]:
    """What ``%run NAME`` reads when the pipeline compiles: what the notebook's ``%%writefile NAME`` cell writes
    (``written``), else a file next to the notebook, inside the repository (or the top notebook's folder) as for
    ``notebook:`` includes. None: the step reads it when it runs."""
    folder, root = Path(path).parent, compose.include_root(top)

    def read(name: str) -> str | None:
        if os.path.normpath(name) in written:
            return written[os.path.normpath(name)]
        try:
            target = (folder / name).resolve()
            if not target.is_relative_to(root) or not loader.is_file(target):
                return None
            return loader.read(target).decode("utf-8")
        except (OSError, ValueError):  # a NUL byte, a link loop, not text: the step reads it, as IPython would
            return None

    return read


def _to_python(
    path: str, cell: Cell, diags: list[Diagnostic], read: Callable[[str], str | None] | None = None
) -> tuple[str, ast.Module | None]:
    try:
        source = magics.to_python(cell.source, read)
    except Exception as exc:  # IPython's transformer raises assorted errors on broken input
        diags.append(error(path, f"cannot read IPython syntax: {exc}", "NB030", cell.index))
        return cell.source, None
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        line = exc.lineno if exc.lineno is not None else None
        diags.append(error(path, f"syntax error: {exc.msg}", "NB031", cell.index, line))
        return source, None
    except (ValueError, RecursionError, MemoryError) as exc:
        diags.append(error(path, f"cannot parse cell: {type(exc).__name__}: {exc}", "NB031", cell.index))
        return source, None
    for kind, name in _MAGIC_CALL.findall(source):
        known = magics.RUNTIME_CELL_MAGICS if kind == "cell" else magics.RUNTIME_LINE_MAGICS
        if name not in known:
            prefix = "%%" if kind == "cell" else "%"
            msg = f"magic {prefix}{name} has no effect in a pipeline step (it is skipped when the step runs)"
            diags.append(warning(path, msg, "NB032", cell.index))
    if _PIP.search(source):
        msg = (
            "package installs (!pip, %pip, %conda) are skipped when a step runs: "
            "put the packages in the step image or requirements.txt"
        )
        diags.append(warning(path, msg, "NB033", cell.index))
    line = _reads_terminal(tree)
    if line:
        msg = (
            "input() reads a terminal, which a step has not (its standard input is empty, locally as in a pod): it "
            "raises EOFError; make the value a pipeline parameter"
        )
        diags.append(warning(path, msg, "NB034", cell.index, line))
    kernel_only.backend_names(path, cell.index, tree, diags)
    return source, tree


def _reads_terminal(tree: ast.Module) -> int | None:
    """The line of the first call of the builtin ``input()`` (none when the cell defines its own ``input``)."""
    nodes = list(ast.walk(tree))
    if any(_binds_input(n) for n in nodes):
        return None
    calls = [
        n.lineno for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "input"
    ]
    return min(calls, default=None)


def _binds_input(node: ast.AST) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == "input"
    if isinstance(node, ast.Name):
        return node.id == "input" and isinstance(node.ctx, ast.Store)
    if isinstance(node, ast.alias):
        return (node.asname or node.name) == "input"
    return False


def _parameters(path: str, groups: _Groups, trees: dict[int, ast.Module], diags: list[Diagnostic]) -> list[Parameter]:
    found: dict[str, Parameter] = {}
    for c in groups.parameters:
        if c.index in trees:
            for p in parse_parameters(path, c.index, trees[c.index], diags):
                found[p.name] = p
    for c in groups.injected:  # papermill's injected values override the defaults, keeping their type
        if c.index in trees:
            for p in parse_parameters(path, c.index, trees[c.index], diags):
                found[p.name] = p
    return list(found.values())


def _check_dag(path: str, steps: dict[str, _Draft], diags: list[Diagnostic]) -> None:
    """Report unknown prev: names, cycles and clashing task names. An unknown name is then read as the step
    it suggests (or dropped), so that the data-flow checks still run and report their errors too."""
    for draft in steps.values():
        repaired: list[tuple[str, int]] = []
        for parent, cell in draft.prev:
            if parent not in steps:
                close = difflib.get_close_matches(parent, [s for s in steps if s != draft.name], n=1)
                hint = f"did you mean prev:{close[0]}?" if close else "steps are: " + ", ".join(steps)
                diags.append(error(path, f"prev:{parent} names no step ({hint})", "NB017", cell))
                parent = close[0] if close else ""
            if parent and parent not in (p for p, _ in repaired):
                repaired.append((parent, cell))
        draft.prev = repaired
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for parent, cell in steps[name].prev:
            if parent not in steps:
                continue
            if state.get(parent) == 1:
                cycle = [*trail[trail.index(parent) :], parent] if parent in trail else [name, parent]
                msg = "prev: tags form a cycle: " + " -> ".join(reversed(cycle))
                diags.append(error(path, msg, "NB018", cell))
            elif parent not in state:
                visit(parent, [*trail, parent])
        state[name] = 2

    for name in steps:
        if name not in state:
            visit(name, [name])
    for first, later, task in kfpnames.clashes(steps):
        msg = kfpnames.clash_message(first, later, task)
        diags.append(error(path, msg, "NB019", steps[later].cells[0].index))


def _special(nb: Notebook, cell: Cell, groups: _Groups, diags: list[Diagnostic]) -> list[Cell]:
    """A notebook: or component: cell is a step (unit) of its own; returns where untagged cells below go."""
    if cell.role == "notebook":
        name = compose.unit_name(cell, nb.path)
    else:
        name = cell.step or re.sub(r"\W", "_", (cell.component_ref or "component").split("@")[0])
    if name in groups.steps:
        msg = f"step {name!r} is defined twice: a notebook: or component: cell is a step of its own (rename one)"
        diags.append(error(nb.path, msg, "NB086", cell.index))
        return groups.orphans
    (groups.units if cell.role == "notebook" else groups.components)[name] = cell
    groups.steps[name] = _Draft(name, len(groups.steps), [cell], [(p, cell.index) for p in cell.prev], cell.options)
    return groups.orphans


def _build_included(
    path: Path, settings: Settings, stack: tuple[str, ...], loader: Loader
) -> tuple[Pipeline, list[Diagnostic]]:
    result = build(path, settings, _stack=stack, loader=loader)
    return result.pipeline, result.diagnostics


def _step_facts(draft: _Draft, trees: dict[int, ast.Module], override: Facts | None = None) -> StepFacts:
    if override is not None:
        prev = tuple(p for p, _ in draft.prev)
        return StepFacts(draft.name, draft.order, prev, [(draft.cells[0].index, override)], override)
    combined = Facts()
    cells: list[tuple[int, Facts]] = []
    for c in draft.cells:
        if c.index in trees:
            f = analyse(trees[c.index])
            cells.append((c.index, f))
            combined.extend(f)
    return StepFacts(draft.name, draft.order, tuple(p for p, _ in draft.prev), cells, combined)


def _check_prelude(
    path: str, cells: list[Cell], trees: dict[int, ast.Module], params: set[str], diags: list[Diagnostic]
) -> None:
    seen = Facts()
    for c in cells:
        if c.index not in trees:
            continue
        facts = analyse(trees[c.index])
        for name in sorted(facts.reads - seen.binds - params - {"__builtins__"}):
            if name in facts.free() and not seen.star_import and not facts.star_import:
                line = facts.first_line.get(name)
                msg = (
                    f"the imports/functions cells run before every step, but {name!r} is not defined there "
                    "(only imports, functions, classes, constants and parameters are)"
                )
                diags.append(error(path, msg, "NB021", c.index, line))
        seen.extend(facts)


def _topological(steps: dict[str, _Draft]) -> list[_Draft]:
    """Notebook order, moved only where a prev: tag points forward."""
    done: set[str] = set()
    out: list[_Draft] = []

    def place(d: _Draft) -> None:
        if d.name in done:
            return
        done.add(d.name)
        for parent, _ in d.prev:
            place(steps[parent])
        out.append(d)

    for d in steps.values():
        place(d)
    return out
