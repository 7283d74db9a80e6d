"""``model:VARIABLE`` tags: the models a step produces, saved as KFP ``system.Model`` artifacts even when no
later step reads them, so a run leaves them where ``nb2kfp run --model-image`` can package them; and the data each
was fitted on (``reference:VARIABLE``, or the X of its ``fit`` call), saved too and packed as its reference sample."""

from __future__ import annotations

import ast

from nb2kfp.errors import Diagnostic, error
from nb2kfp.frontend.dataflow import StepFacts
from nb2kfp.frontend.notebook import Cell


def declared(path: str, cells: list[Cell], facts: StepFacts, diags: list[Diagnostic]) -> tuple[str, ...]:
    found: list[str] = []
    for cell in cells:
        for name in cell.models:
            if name not in facts.facts.binds:
                msg = f"model:{name}: step {facts.name!r} does not set {name!r}, so it cannot produce that model"
                diags.append(error(path, msg, "NB053", cell.index))
            elif name not in found:
                found.append(name)
    return tuple(sorted(found))


_FIT = frozenset({"fit", "fit_transform", "fit_predict"})


def _root(node: ast.expr) -> str | None:
    """The variable a call chain starts from: ``clf`` for ``clf.set_params(...).fit``."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _fitted_on(model: str, trees: list[ast.Module]) -> str | None:
    """The variable given as X to the last ``model.fit(X, ...)`` (or ``model = Estimator(...).fit(X, ...)``)."""
    found: str | None = None
    for tree in trees:
        assigned: dict[int, set[str]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                names = {t.id for t in node.targets if isinstance(t, ast.Name)}
                for inner in ast.walk(node.value):
                    assigned[id(inner)] = names
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _FIT):
                continue
            if _root(node.func.value) != model and model not in assigned.get(id(node), set()):
                continue
            given = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "X"), None)
            if isinstance(given, ast.Name):
                found = given.id
    return found


def references(
    path: str,
    cells: list[Cell],
    trees: dict[int, ast.Module],
    facts: StepFacts,
    models: tuple[str, ...],
    diags: list[Diagnostic],
) -> tuple[tuple[str, str], ...]:
    """(model, variable) pairs: the data each model of the step was fitted on, recorded as its reference sample.

    A ``reference:VARIABLE`` tag names it for every model of the step; without one, the X of the model's ``fit``
    call when that is a plain variable. A tagged variable the step neither sets nor receives is an error."""
    tagged: list[str] = []
    known = facts.facts.binds | facts.facts.reads
    for cell in cells:
        for name in cell.references:
            if not models:
                msg = f"reference:{name}: step {facts.name!r} has no model:VARIABLE tag, so no model to describe"
                diags.append(error(path, msg, "NB062", cell.index))
            elif name not in known:
                msg = f"reference:{name}: step {facts.name!r} neither sets nor receives {name!r}"
                diags.append(error(path, msg, "NB062", cell.index))
            elif name not in tagged:
                tagged.append(name)
    if len(tagged) > 1:
        msg = f"step {facts.name!r} has {len(tagged)} reference: tags ({', '.join(tagged)}); give one"
        diags.append(error(path, msg, "NB062", cells[0].index))
    step_trees = [trees[c.index] for c in cells if c.index in trees]
    pairs = []
    for model in models:
        data = tagged[0] if tagged else _fitted_on(model, step_trees)
        if data is not None and data in known and data != model:
            pairs.append((model, data))
    return tuple(pairs)
