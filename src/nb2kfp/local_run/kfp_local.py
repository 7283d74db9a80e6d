"""The one module that touches kfp.local: its public API and the internals a local run needs.

kfp.local (KFP SDK 2.17) has no hooks for what ``nb2kfp run --local`` does, so while a run is inside the
context managers below nb2kfp swaps or wraps four of its internals:

- ``task_dispatcher.run_single_task_implementation`` is wrapped to hear when each task starts and ends
  (:func:`tracking_tasks`, used by :mod:`runner`);
- ``subprocess_task_handler.run_local_subprocess`` and ``docker_task_handler.run_docker_container`` are
  replaced to supervise the step processes (:func:`launching`, :mod:`processes`);
- ``orchestrator.dag_orchestrator.run_dag`` is replaced by a scheduler over ``task_executor.execute_single_task``
  (:func:`scheduling`, :mod:`scheduler`);
- ``cache.LocalCache`` is subclassed and ``cache.get_local_cache`` replaced (:func:`caching`, :mod:`cache`).

:data:`NEEDS` lists every name and parameter nb2kfp relies on. Importing this module checks them against the
installed kfp: a kfp whose internals moved stops the run with a clear message (:class:`UnsupportedKfp`)
before anything starts, not with a traceback halfway through it. tests/test_kfp_local.py checks them too.

Importing ``kfp`` runs its ``__init__``, which imports ``kfp.client`` (and the API server's client library,
0.4-0.7 s) that a local run never uses; kfp's own executor runtime skips that with ``_KFP_RUNTIME=true``,
and so does :func:`_import_kfp` (for kfp's ``__init__`` only: ``kfp.dsl`` and the rest load as usual).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nb2kfp.errors import Nb2KfpError

TESTED_KFP = "2.17.3"  # pyproject.toml's run extra pins it


class UnsupportedKfp(Nb2KfpError):
    """The installed kfp lacks (or changed) a part of kfp.local that local runs rely on."""

    def __init__(self, version: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"nb2kfp run --local does not work with kfp {version}: its kfp.local changed what nb2kfp relies on "
            f"(tested with kfp {TESTED_KFP}):\n"
            + "\n".join(f"  - {p}" for p in problems)
            + f"\ninstall the tested version: pip install 'kfp=={TESTED_KFP}'"
        )


@dataclass(frozen=True)
class Need:
    """``module.attribute`` must exist; when ``parameters`` is given, it must be callable and take them: all
    of them and no others with ``exact`` (nb2kfp replaces it, or calls it with every argument), else at least
    these (nb2kfp wraps it and passes the rest on). ``"**"`` stands for a ``**kwargs`` parameter."""

    module: str
    attribute: str
    parameters: tuple[str, ...] | None = None
    exact: bool = True
    optional_module: bool = False  # kfp.local.docker_task_handler needs the docker package

    @property
    def name(self) -> str:
        return f"{self.module}.{self.attribute}"


_RUN_DAG = ("pipeline_resource_name", "dag_component_spec", "executors", "components", "dag_arguments",
            "pipeline_root", "runner", "unique_pipeline_id", "fail_stack", "parent_io_store")  # fmt: skip
_EXECUTE_TASK = ("task_name", "task_spec", "pipeline_resource_name", "components", "executors", "io_store",
                 "pipeline_root", "runner", "unique_pipeline_id", "fail_stack")  # fmt: skip
_COMPUTE_KEY = ("self", "component_name", "image", "full_command", "arguments", "env_vars", "custom_cache_key")
_ORCHESTRATOR = "kfp.local.orchestrator"

NEEDS: tuple[Need, ...] = (
    Need("kfp.local", "init", ("runner", "pipeline_root", "workspace_root", "raise_on_error"), exact=False),
    Need("kfp.local", "SubprocessRunner", ("use_venv",), exact=False),
    Need("kfp.local", "DockerRunner"),
    Need("kfp.components", "load_component_from_file", ("file_path",)),
    Need("kfp.local.task_dispatcher", "run_single_task_implementation", ("component_name",), exact=False),
    Need("kfp.local.subprocess_task_handler", "run_local_subprocess", ("full_command", "env_vars")),
    Need("kfp.local.subprocess_task_handler", "replace_python_executable", ("full_command", "new_executable")),
    Need("kfp.local.docker_task_handler", "run_docker_container", ("client", "**"), exact=False, optional_module=True),
    Need(f"{_ORCHESTRATOR}.dag_orchestrator", "run_dag", _RUN_DAG),
    Need(f"{_ORCHESTRATOR}.task_executor", "execute_single_task", _EXECUTE_TASK),
    Need(
        f"{_ORCHESTRATOR}.orchestrator_utils",
        "OrchestratorUtils.join_user_inputs_and_defaults",
        ("dag_arguments", "dag_inputs_spec"),
    ),
    Need(f"{_ORCHESTRATOR}.orchestrator_utils", "OrchestratorUtils.get_dag_outputs", ("dag_outputs_spec", "io_store")),
    Need("kfp.local.io", "IOStore", ("parent",)),
    Need("kfp.local.io", "IOStore.put_parent_input", ("self", "key", "value")),
    Need("kfp.local.io", "IOStore.put_task_output", ("self", "task_name", "key", "value")),
    Need("kfp.local.status", "Status.SUCCESS"),
    Need("kfp.local.status", "Status.FAILURE"),
    Need("kfp.local.cache", "LocalCache", ("cache_root",)),
    Need("kfp.local.cache", "LocalCache.compute_key", _COMPUTE_KEY),
    Need("kfp.local.cache", "LocalCache.get", ("self", "key")),
    Need("kfp.local.cache", "get_local_cache", ()),
    Need("kfp.local.cache", "_is_remote_uri", ("uri",)),
)


def _import_kfp() -> str:
    """Import kfp without what its ``__init__`` loads for pipeline authors (kfp.client); its version."""
    if "kfp" not in sys.modules:
        before = os.environ.get("_KFP_RUNTIME")
        os.environ["_KFP_RUNTIME"] = "true"
        try:
            import kfp  # noqa: F401
        finally:
            if before is None:
                os.environ.pop("_KFP_RUNTIME", None)
            else:
                os.environ["_KFP_RUNTIME"] = before
    return str(getattr(sys.modules["kfp"], "__version__", "unknown"))


def _resolve(need: Need) -> Any:
    """The object ``need`` names; raises LookupError with what is missing."""
    try:
        target: Any = importlib.import_module(need.module)
    except ImportError as exc:
        if need.optional_module and exc.name not in (None, need.module) and not exc.name.startswith("kfp"):
            return None  # an optional dependency of that module is not installed: nothing to check
        raise LookupError(f"{need.module} cannot be imported ({exc})") from exc
    for part in need.attribute.split("."):
        if not hasattr(target, part):
            raise LookupError(f"{need.name} is missing")
        target = getattr(target, part)
    return target


def _parameters(target: Any) -> tuple[str, ...]:
    kinds = inspect.Parameter
    return tuple(
        "**" if p.kind is kinds.VAR_KEYWORD else "*" if p.kind is kinds.VAR_POSITIONAL else name
        for name, p in inspect.signature(target).parameters.items()
    )


def problems() -> list[str]:
    """What the installed kfp lacks of :data:`NEEDS`, one line each (empty: all there)."""
    found: list[str] = []
    for need in NEEDS:
        try:
            target = _resolve(need)
        except LookupError as exc:
            found.append(str(exc))
            continue
        if target is None or need.parameters is None:
            continue
        try:
            has = _parameters(target)
        except (TypeError, ValueError):
            found.append(f"{need.name} is no longer a function nb2kfp can call")
            continue
        wanted = need.parameters
        if (set(has) != set(wanted)) if need.exact else not set(wanted) <= set(has):
            takes = ", ".join(has) or "nothing"
            found.append(f"{need.name} takes ({takes}); nb2kfp needs ({', '.join(wanted) or 'nothing'})")
    return found


def check() -> None:
    """Raise :class:`UnsupportedKfp` when the installed kfp lacks something of :data:`NEEDS`."""
    version = _import_kfp()
    found = problems()
    if found:
        raise UnsupportedKfp(version, found)


check()  # at import: a run with an untested kfp stops here, with the message, before anything starts

from kfp import components, local  # noqa: E402
from kfp.local import cache as _cache  # noqa: E402
from kfp.local import io as _io  # noqa: E402
from kfp.local import status as _status  # noqa: E402
from kfp.local import subprocess_task_handler, task_dispatcher  # noqa: E402
from kfp.local.orchestrator import dag_orchestrator, task_executor  # noqa: E402
from kfp.local.orchestrator.orchestrator_utils import OrchestratorUtils  # noqa: E402

# -- kfp.local's public API -------------------------------------------------------------------------------
init = local.init
load_component_from_file = components.load_component_from_file


def runner(*, docker: bool) -> Any:
    """kfp.local's DockerRunner, or its SubprocessRunner in this environment."""
    return local.DockerRunner() if docker else local.SubprocessRunner(use_venv=False)


def as_launched(text: str) -> str:
    """``text`` (a command or argument of a step) as SubprocessRunner launches it in this environment: it
    replaces ``python3`` with this interpreter in every part of the command, the executor input included."""
    return str(subprocess_task_handler.replace_python_executable([text], sys.executable)[0])


# -- internals, for the scheduler and the cache -----------------------------------------------------------
SUCCESS = _status.Status.SUCCESS
FAILURE = _status.Status.FAILURE
IOStore = _io.IOStore
LocalCache = _cache.LocalCache
execute_single_task = task_executor.execute_single_task
join_user_inputs_and_defaults = OrchestratorUtils.join_user_inputs_and_defaults
get_dag_outputs = OrchestratorUtils.get_dag_outputs
run_dag_in_order = dag_orchestrator.run_dag  # kfp.local's own: one task after another
is_remote_uri = _cache._is_remote_uri


@contextlib.contextmanager
def _swapped(module: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def tracking_tasks(wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> contextlib.AbstractContextManager[None]:
    """kfp.local runs each task through ``wrap(run_single_task_implementation)`` (keyword arguments, among
    them ``component_name``; it returns ``(outputs, status)``) while inside."""
    original = task_dispatcher.run_single_task_implementation
    return _swapped(task_dispatcher, "run_single_task_implementation", wrap(original))


def scheduling(run_dag: Callable[..., tuple[dict[str, Any], Any]]) -> contextlib.AbstractContextManager[None]:
    """kfp.local runs plain DAGs with ``run_dag`` (:data:`run_dag_in_order`'s arguments) while inside."""
    return _swapped(dag_orchestrator, "run_dag", run_dag)


def caching(cache: Any) -> contextlib.AbstractContextManager[None]:
    """kfp.local's tasks look their results up in ``cache`` (a :data:`LocalCache`; None: no caching)."""
    return _swapped(_cache, "get_local_cache", lambda: cache)


def _docker_handler() -> Any:
    """kfp.local's Docker task handler, or None without the docker package."""
    try:
        from kfp.local import docker_task_handler
    except ImportError:
        return None
    return docker_task_handler


@contextlib.contextmanager
def launching(
    run_local_subprocess: Callable[..., int],
    run_docker_container: Callable[..., int],
) -> Iterator[None]:
    """kfp.local starts step processes with ``run_local_subprocess(full_command, env_vars)`` and step
    containers with ``run_docker_container(original, client=..., **kwargs)`` while inside."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_swapped(subprocess_task_handler, "run_local_subprocess", run_local_subprocess))
        handler = _docker_handler()
        if handler is not None:
            original = handler.run_docker_container
            docker = _bind(run_docker_container, original)
            stack.enter_context(_swapped(handler, "run_docker_container", docker))
        yield


def _bind(function: Callable[..., int], original: Callable[..., int]) -> Callable[..., int]:
    def bound(**kwargs: Any) -> int:
        return function(original, **kwargs)

    return bound
