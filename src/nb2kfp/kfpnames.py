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
from typing import TYPE_CHECKING

from nb2kfp.errors import UsageError

if TYPE_CHECKING:
    from nb2kfp.ir import Step

MAX_PIPELINE_NAME = 128  # kubeflow/pipelines 2.14.0-2.17.0 backend/src/apiserver/common/utils.go:114
# Argo names each task's driver TASK-driver (kubeflow/pipelines 2.17.0 backend/src/v2/compiler/argocompiler/dag.go:250)
# and refuses DAG task names over 128 characters (argo-workflows v4.0.5 workflow/validate/validate.go:1626).
DRIVER_SUFFIX = "-driver"
MAX_TASK_NAME = 128 - len(DRIVER_SUFFIX)
RUNTIME_TASK = "nb2kfp-runtime"  # the task that hands the step runtime to the steps (backends/step_runtime.py)
RESERVED_TASKS = (RUNTIME_TASK,)

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


NEWEST_KFP = (2, 17)  # the newest KFP release nb2kfp knows


def release(kfp_version: str | None) -> tuple[int, int]:
    """The (major, minor) of a KFP release as given with ``--kfp-version`` (2.16.0, v2.16, 2.16); None: the newest."""
    if kfp_version is None:
        return NEWEST_KFP
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+.].*)?", kfp_version.strip())
    if not m:
        raise UsageError(f"--kfp-version {kfp_version!r}: give the cluster's KFP release, e.g. 2.16.0")
    return int(m.group(1)), int(m.group(2))


def input_key(step: Step, variable: str) -> str:
    """The artifact key of a step's input ``variable``: ``VARIABLE-in`` ('-' is never part of a Python name) when
    the step also outputs it, whose key is the variable's name."""
    return f"{variable}-in" if variable in step.outputs else variable


def component_key(task: str) -> str:
    """The key of a task's component in the spec's ``components`` (``comp-TASK``, as the KFP SDK writes it)."""
    return f"comp-{task}"


def task_of_component(key: str) -> str:
    """The task a component key (:func:`component_key`) belongs to, as kfp.local names a task's component."""
    return key.removeprefix("comp-")


def executor_key(task: str) -> str:
    """The key of a task's executor in ``deploymentSpec.executors`` (``exec-TASK``)."""
    return f"exec-{task}"


def pipeline_name(name: str) -> str:
    """The KFP pipeline name for ``name`` (``pipeline`` when it has no letter or digit)."""
    return clean(name)[:MAX_PIPELINE_NAME] or "pipeline"


def clashes(steps: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(first, later, task)`` for each step whose task name an earlier step already has, or nb2kfp's own
    tasks have (``first`` is then ``"nb2kfp"``)."""
    seen: dict[str, str] = dict.fromkeys(RESERVED_TASKS, "nb2kfp")
    out: list[tuple[str, str, str]] = []
    for step in steps:
        task = task_name(step)
        if task in seen:
            out.append((seen[task], step, task))
        else:
            seen[task] = step
    return out


_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def metadata_key_problem(key: str) -> str | None:
    """Why Kubernetes refuses ``key`` as a label or annotation key (a qualified name: an optional DNS subdomain
    prefix of at most 253 characters and '/', then a name of at most 63), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not re.fullmatch(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*", prefix)):
        return f"its prefix {prefix!r} is not a lowercase DNS subdomain of at most 253 characters"
    if len(name) > 63 or not _LABEL_NAME.fullmatch(name):
        return (
            f"its name {name[:70]!r} is not 1-63 letters, digits, '-', '_' or '.' starting and ending with a "
            "letter or digit"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why Kubernetes refuses ``value`` as a label value (empty, or at most 63 characters of the name rule)."""
    if value and (len(value) > 63 or not _LABEL_NAME.fullmatch(value)):
        return (
            f"its value {value[:70]!r} is not empty or 1-63 letters, digits, '-', '_' or '.' starting and ending "
            "with a letter or digit"
        )
    return None


def clash_message(first: str, later: str, task: str) -> str:
    if first == "nb2kfp":
        return f"step {later!r} gets the KFP task name {task!r}, which nb2kfp's own task has; rename it"
    return f"steps {first!r} and {later!r} get the same KFP task name {task!r}; rename one"


def fits(value: object, param_type: str) -> bool:
    """Whether a Python value is one of parameter type ``param_type`` (a bool is no number; an int is a float)."""
    allowed = PYTHON_TYPES[PARAMETER_TYPES[param_type]]
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def accepts(port_type: str, param_type: str) -> bool:
    """Whether an input of parameter type ``port_type`` takes a pipeline parameter of type ``param_type``."""
    return port_type == param_type or (param_type == "int" and port_type == "float")
