"""``model:VARIABLE`` tags: the models a step produces, saved as KFP ``system.Model`` artifacts even when no
later step reads them, so a run leaves them where ``nb2kfp run --model-image`` can package them."""

from __future__ import annotations

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
