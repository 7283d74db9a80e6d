"""Independent steps of a local run at the same time, as on KFP: a thin scheduler over kfp.local.

kfp.local 2.17 runs the tasks of a plain DAG one after another (``orchestrator/dag_orchestrator.run_dag``);
only ParallelFor iterations run side by side. :func:`parallel` swaps in :func:`run_dag`, which hands every
task whose upstream tasks are done to kfp.local's own single-task execution
(``task_executor.execute_single_task``: its cache, retries, runners, executor protocol) on a pool of
``workers`` threads. Each step is still a process of its own and values still travel only as artifacts.
DAGs with control flow or nested DAGs keep kfp.local's own orchestrator (it never calls ``run_dag`` for them).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
from collections.abc import Iterator
from typing import Any

from nb2kfp.local_run import kfp_local


def workers() -> int:
    """As many steps at once as this process may use cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_dag(
    pipeline_resource_name: str,
    dag_component_spec: Any,
    executors: dict[str, Any],
    components: dict[str, Any],
    dag_arguments: dict[str, Any],
    pipeline_root: str,
    runner: Any,
    unique_pipeline_id: str,
    fail_stack: list[str],
    parent_io_store: Any = None,
    max_workers: int = 1,
) -> tuple[dict[str, Any], Any]:
    """kfp.local's ``run_dag`` for a DAG of container tasks, ready tasks running side by side. After a
    failure no new task starts; the running ones finish (as on KFP) and the DAG fails with the first."""
    tasks = dag_component_spec.dag.tasks
    if any(components[t.component_ref.name].WhichOneof("implementation") == "dag" for t in tasks.values()):
        return kfp_local.run_dag_in_order(  # type: ignore[no-any-return]
            pipeline_resource_name=pipeline_resource_name,
            dag_component_spec=dag_component_spec,
            executors=executors,
            components=components,
            dag_arguments=dag_arguments,
            pipeline_root=pipeline_root,
            runner=runner,
            unique_pipeline_id=unique_pipeline_id,
            fail_stack=fail_stack,
            parent_io_store=parent_io_store,
        )
    arguments = kfp_local.join_user_inputs_and_defaults(
        dag_arguments=dag_arguments, dag_inputs_spec=dag_component_spec.input_definitions
    )
    io_store = kfp_local.IOStore(parent=parent_io_store)
    for key, value in arguments.items():
        io_store.put_parent_input(key, value)
    waiting = {name: set(spec.dependent_tasks) for name, spec in tasks.items()}
    order = list(tasks)  # the spec's order (nb2kfp writes steps in notebook order): ties start in that order
    done: set[str] = set()
    failed: list[str] = []

    def start(pool: concurrent.futures.Executor, name: str) -> concurrent.futures.Future[Any]:
        return pool.submit(
            kfp_local.execute_single_task,
            task_name=name,
            task_spec=tasks[name],
            pipeline_resource_name=pipeline_resource_name,
            components=components,
            executors=executors,
            io_store=io_store,
            pipeline_root=pipeline_root,
            runner=runner,
            unique_pipeline_id=unique_pipeline_id,
            fail_stack=fail_stack,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="nb2kfp-step") as pool:
        running: dict[concurrent.futures.Future[Any], str] = {}
        while True:
            ready = [n for n in order if n not in done and n not in running.values() and waiting[n] <= done]
            for name in ready[: max_workers - len(running)] if not failed else []:
                running[start(pool, name)] = name
            if not running:
                break
            finished, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                outputs, task_status = future.result()
                if task_status == kfp_local.SUCCESS:
                    for key, output in outputs.items():
                        io_store.put_task_output(name, key, output)
                    done.add(name)
                elif task_status == kfp_local.FAILURE:
                    failed.append(name)
                else:
                    raise ValueError(f"Got unknown task status: {task_status.name}")
    if failed:
        fail_stack.append(failed[0])
        return {}, kfp_local.FAILURE
    if len(done) < len(tasks):
        raise ValueError(f"tasks {sorted(set(tasks) - done)} wait on tasks that never run (a cycle?)")
    outputs = kfp_local.get_dag_outputs(dag_outputs_spec=dag_component_spec.dag.outputs, io_store=io_store)
    return outputs, kfp_local.SUCCESS


@contextlib.contextmanager
def parallel(max_workers: int) -> Iterator[None]:
    """kfp.local runs up to ``max_workers`` independent tasks of a plain DAG at once while inside."""
    if max_workers <= 1:
        yield
        return

    def scheduled(**kwargs: Any) -> tuple[dict[str, Any], Any]:
        return run_dag(**kwargs, max_workers=max_workers)

    with kfp_local.scheduling(scheduled):
        yield
