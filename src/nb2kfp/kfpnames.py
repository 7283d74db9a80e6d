"""KFP names and KFP types: the one place that knows both.

Names: KFP task and pipeline names are lowercase letters, digits and '-' (:func:`clean`). Two step names
may clean to the same task name (``load_data`` and ``load-data``; ``_`` and ``step``, since a name with no
letter or digit gets the fallback ``step``): the front end reports that (:func:`clashes`), and the back
ends rely on task names being distinct.

Types: a pipeline parameter, and a catalog component's parameter port, has an IR type (``int``, ``float``,
``str``, ``bool``, ``list``, ``dict``); KFP calls them parameter types (``NUMBER_INTEGER`` ...). Only the
catalog (reading component files) and the back ends (writing specs) translate. The step runtime
(:mod:`nb2kfp.runtime.step`) runs without nb2kfp installed and keeps its own copy of these tables; a test
checks that the copies agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_PIPELINE_NAME = 128

# IR parameter type -> KFP parameterType
PARAMETER_TYPES: dict[str, str] = {
    "int": "NUMBER_INTEGER",
    "float": "NUMBER_DOUBLE",
    "str": "STRING",
    "bool": "BOOLEAN",
    "list": "LIST",
    "dict": "STRUCT",
}
# KFP parameterType -> IR parameter type
IR_TYPES: dict[str, str] = {kfp: ir for ir, kfp in PARAMETER_TYPES.items()}
# KFP parameterType -> the Python types a value of it may have (an int is a fine double)
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int,),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}


def clean(name: str) -> str:
    """KFP's naming rule: lowercase letters, digits and single '-', neither first nor last ('' if none left)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return re.sub(r"-{2,}", "-", cleaned)


def task_name(step: str) -> str:
    """The KFP task name of step ``step`` (``step`` when its name has no letter or digit)."""
    return clean(step) or "step"


def pipeline_name(name: str) -> str:
    """The KFP pipeline name for ``name`` (``pipeline`` when it has no letter or digit)."""
    return clean(name)[:MAX_PIPELINE_NAME] or "pipeline"


def clashes(steps: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(first, later, task)`` for each step whose task name an earlier step already has."""
    seen: dict[str, str] = {}
    out: list[tuple[str, str, str]] = []
    for step in steps:
        task = task_name(step)
        if task in seen:
            out.append((seen[task], step, task))
        else:
            seen[task] = step
    return out


def fits(value: object, param_type: str) -> bool:
    """Whether a Python value is one of parameter type ``param_type`` (a bool is no number; an int is a float)."""
    allowed = PYTHON_TYPES[PARAMETER_TYPES[param_type]]
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def accepts(port_type: str, param_type: str) -> bool:
    """Whether an input of parameter type ``port_type`` takes a pipeline parameter of type ``param_type``."""
    return port_type == param_type or (param_type == "int" and port_type == "float")
