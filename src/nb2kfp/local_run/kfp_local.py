"""The one adapter over kfp.local's internals (kfp==2.17.3, pinned in pyproject.toml).

kfp.local has no hooks for what a local run needs: following each step (runner), a session and a watchdog for
each step's process (processes), steps side by side (scheduler) and nb2kfp's cache keys (cache). nb2kfp swaps
functions of kfp.local's private modules while a run is inside :func:`swapped`, and calls or subclasses a few
more. Each is listed in :data:`INTERNALS` with the parameters nb2kfp's code passes or takes; :func:`check`
(before every swap, and in tests/test_kfp_local.py) fails loudly, naming the function, when a kfp release
renames, moves or reshapes one, instead of a local run that silently stops reporting its steps.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from nb2kfp.errors import RunError

TESTED = "2.17.3"
_LOCAL = "kfp.local"
_NEEDS_DOCKER = "docker_task_handler:"
# "module:attribute path" -> its parameters (self left out) as in kfp 2.17.3: nb2kfp swaps, calls or overrides it
INTERNALS: dict[str, tuple[str, ...]] = {
    # swapped: runner follows each step
    "task_dispatcher:run_single_task_implementation": (
        "pipeline_resource_name",
        "component_name",
        "component_spec",
        "executor_spec",
        "arguments",
        "pipeline_root",
        "runner",
        "raise_on_error",
        "block_input_artifact",
        "unique_pipeline_id",
    ),
    # swapped: processes starts each step in a session of its own, and labels its container
    "subprocess_task_handler:run_local_subprocess": ("full_command", "env_vars"),
    "docker_task_handler:run_docker_container": ("client", "image", "command", "volumes", "container_run_args"),
    # swapped: scheduler runs the ready steps of a plain DAG side by side
    "orchestrator.dag_orchestrator:run_dag": (
        "pipeline_resource_name",
        "dag_component_spec",
        "executors",
        "components",
        "dag_arguments",
        "pipeline_root",
        "runner",
        "unique_pipeline_id",
        "fail_stack",
        "parent_io_store",
    ),
    # called by scheduler
    "orchestrator.task_executor:execute_single_task": (
        "task_name",
        "task_spec",
        "pipeline_resource_name",
        "components",
        "executors",
        "io_store",
        "pipeline_root",
        "runner",
        "unique_pipeline_id",
        "fail_stack",
    ),
    "orchestrator.orchestrator_utils:OrchestratorUtils.join_user_inputs_and_defaults": (
        "dag_arguments",
        "dag_inputs_spec",
    ),
    "orchestrator.orchestrator_utils:OrchestratorUtils.get_dag_outputs": ("dag_outputs_spec", "io_store"),
    "io:IOStore": ("parent",),
    # swapped and overridden: cache
    "cache:get_local_cache": (),
    "cache:LocalCache.compute_key": (
        "component_name",
        "image",
        "full_command",
        "arguments",
        "env_vars",
        "custom_cache_key",
    ),
    "cache:LocalCache.get": ("key",),
    "cache:_is_remote_uri": ("uri",),
}


_OWN: dict[str, Any] = {}  # kfp's own function of each internal swapped now


def _find(internal: str) -> tuple[Any, Any]:
    """(the object holding it, the internal itself) for an :data:`INTERNALS` key; RunError when it is gone."""
    module_name, _, path = internal.partition(":")
    try:
        holder: Any = importlib.import_module(f"{_LOCAL}.{module_name}")
        names = path.split(".")
        for name in names[:-1]:
            holder = getattr(holder, name)
        return holder, getattr(holder, names[-1])
    except (ImportError, AttributeError) as exc:
        raise _changed(internal, f"it is gone ({type(exc).__name__}: {exc})") from None


def _parameters(found: Any) -> tuple[str, ...]:
    params = inspect.signature(found).parameters
    return tuple(name for name in params if name not in ("self", "cls"))


def check(internal: str) -> Any:
    """The internal (kfp's own, also while nb2kfp has it swapped), after checking it takes the parameters nb2kfp
    relies on."""
    _, found = _find(internal)
    found = _OWN.get(internal, found)
    expected, actual = INTERNALS[internal], _parameters(found)
    if actual != expected:
        raise _changed(internal, f"nb2kfp expects its parameters ({', '.join(expected)}), found ({', '.join(actual)})")
    return found


def check_all() -> None:
    """Check every internal (those of kfp.local's Docker handler only when the docker package is installed)."""
    for internal in INTERNALS:
        if internal.startswith(_NEEDS_DOCKER) and not available(internal):
            continue
        check(internal)


def _changed(internal: str, how: str) -> RunError:
    try:
        version = importlib.import_module("kfp").__version__
    except (ImportError, AttributeError):
        version = "?"
    where = f"{_LOCAL}.{internal.replace(':', '.')}"
    return RunError(
        f"kfp {version} changed {where}, which nb2kfp's local runs use: {how}; install kfp=={TESTED} "
        "(the release nb2kfp is tested with)"
    )


@contextlib.contextmanager
def swapped(internal: str, replacement: Callable[[Any], Any]) -> Iterator[None]:
    """kfp.local uses ``replacement(original)`` in place of ``internal`` (a module function) while inside."""
    holder, current = _find(internal)  # kfp's own, or an enclosing swap's replacement (swaps nest)
    own = _OWN.setdefault(internal, check(internal))
    name = internal.partition(":")[2].rpartition(".")[2]
    setattr(holder, name, replacement(current))
    try:
        yield
    finally:
        setattr(holder, name, current)
        if current is own:
            del _OWN[internal]


def available(internal: str) -> bool:
    """Whether the module of ``internal`` imports (kfp.local's Docker handler needs the docker package)."""
    try:
        importlib.import_module(f"{_LOCAL}.{internal.partition(':')[0]}")
    except ImportError:
        return False
    return True
