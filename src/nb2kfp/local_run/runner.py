"""Run a compiled pipeline spec on this machine with ``kfp.local``: SubprocessRunner in the current
environment, or DockerRunner in the steps' images.

kfp.local prints its own log lines and each step's output to stdout; we capture them into the
run folder's ``run.log`` and report per-step status through a callback instead.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2kfp import kfpnames
from nb2kfp.backends.kfp_spec import METRICS_KEY, cell_numbers
from nb2kfp.errors import RunError
from nb2kfp.ir import Pipeline
from nb2kfp.local_run import kfp_local  # checks the installed kfp: before the run folder is made
from nb2kfp.local_run.processes import Supervisor
from nb2kfp.runtime.step import (  # the environment each run sets anew for its steps
    ARTIFACT_KEY_ENV,
    CELLS_ENV,
    LOCAL_WORKSPACE_ENV,
    PRINTED_METRIC,
    READS_ENV,
    RUN_ENV,
    SEED_ENV,
    STEP_DIRS_ENV,
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
Event = Callable[[str, str, float | None], None]  # (step, status, seconds)


@dataclass
class LocalRun:
    status: str
    steps: dict[str, str]
    metrics: dict[str, float]
    run_dir: Path
    seconds: float
    failed_step: str | None = None
    log_tail: list[str] = field(default_factory=list)
    models: dict[str, str] = field(default_factory=dict)  # variable -> image ref (run --model-image)
    kept: list[str] = field(default_factory=list)  # steps with a process kept warm for the next run (kept.py)
    text_metrics: dict[str, str] = field(default_factory=dict)  # metrics set to a str (not KFP metrics, shown)

    def as_dict(self) -> dict[str, Any]:
        return {
            **({"models": self.models} if self.models else {}),
            "status": self.status,
            "steps": self.steps,
            "metrics": self.metrics,
            **({"text_metrics": self.text_metrics} if self.text_metrics else {}),
            "run_dir": str(self.run_dir),
        }


class _Log(io.TextIOBase):
    """Collects kfp.local's stdout line by line into run.log, remembering each step's lines. Steps that run
    side by side (:mod:`local_scheduler`) write from threads of their own: each thread has its own step
    and partial line, and whole lines go to run.log one at a time."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None) -> None:
        self.fh = path.open("w", encoding="utf-8")
        self.echo = echo
        self.by_step: dict[str, list[str]] = {}
        self._thread = threading.local()
        self._lock = threading.Lock()

    @property
    def current(self) -> str | None:
        return getattr(self._thread, "step", None)

    @current.setter
    def current(self, step: str | None) -> None:
        self._thread.step = step

    def write(self, s: str) -> int:
        text = getattr(self._thread, "partial", "") + s
        *lines, self._thread.partial = text.split("\n")
        with self._lock:
            for raw in lines:
                line = _ANSI.sub("", raw)
                self.fh.write(line + "\n")
                self.fh.flush()  # tail -f run.log follows the run
                if self.current:
                    self.by_step.setdefault(self.current, []).append(line)
                if self.echo:
                    self.echo(line)
        return len(s)

    def close(self) -> None:
        if getattr(self._thread, "partial", ""):
            self.write("\n")
        self.fh.close()
        super().close()


@contextlib.contextmanager
def _track(names: dict[str, str], on_event: Event, states: dict[str, str], log: _Log) -> Iterator[None]:
    """Wrap kfp.local's per-task entry point to learn when each step starts and ends."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(**kwargs: Any) -> Any:
            step = names.get(kfpnames.task_of_component(kwargs["component_name"]))
            if step is None:  # nb2kfp's own task (it hands the runtime to the steps): no step of the notebook
                return original(**kwargs)
            started = time.monotonic()
            states[step] = "running"
            log.current = step
            on_event(step, "running", None)
            try:
                outputs, status = original(**kwargs)
            except BaseException:
                states[step] = "failed"
                on_event(step, "failed", time.monotonic() - started)
                raise
            finally:
                log.current = None
            states[step] = "succeeded" if status == kfp_local.SUCCESS else "failed"
            on_event(step, states[step], time.monotonic() - started)
            return outputs, status

        return wrapped

    with kfp_local.tracking_tasks(wrap):
        yield


def run(
    spec_path: Path,
    pipeline: Pipeline,
    arguments: dict[str, Any],
    run_dir: Path,
    on_event: Event,
    echo: Callable[[str], None] | None = None,
    *,
    docker: bool = False,
    cache: Path | None = None,
    jobs: int | None = None,
    supervisor: Supervisor | None = None,
) -> LocalRun:
    """Run with SubprocessRunner in this environment, or with DockerRunner in the steps' images. With
    ``cache`` (a folder), steps whose results are there are not run again (:mod:`local_cache`). Up to
    ``jobs`` independent steps run at once (default: one per core; :mod:`local_scheduler`); Docker steps run one
    at a time (stopping a run must still record the step it stopped: tests/integration/test_docker_interrupt.py)."""
    from nb2kfp.local_run import ahead as steps_ahead
    from nb2kfp.local_run import cache as local_cache
    from nb2kfp.local_run import kept as kept_steps
    from nb2kfp.local_run import scheduler as local_scheduler

    names = {kfpnames.task_name(s.name): s.name for s in pipeline.steps}
    states = {s.name: "pending" for s in pipeline.steps}
    artifacts = run_dir / "artifacts"
    (run_dir / "workspace").mkdir(parents=True, exist_ok=True)  # the steps' shared workspace, kept
    kfp_local.init(
        runner=kfp_local.runner(docker=docker),
        pipeline_root=str(artifacts),
        workspace_root=str(run_dir / ".kfp-workspace"),  # kfp.local's own: it deletes it after the run
        raise_on_error=True,
    )
    component = kfp_local.load_component_from_file(str(spec_path))
    log = _Log(run_dir / "run.log", echo)
    started = time.monotonic()
    error: BaseException | None = None
    # steps sign pickled values with it and refuse others: the cache's key, else one of this run's own
    _set_run_environment(pipeline, run_dir, local_cache.artifact_key(cache) if cache else secrets.token_hex(32))

    def on_hit(component: str, outputs: dict[str, Any]) -> None:
        step = names.get(kfpnames.task_of_component(component))
        for folder in local_cache.output_folders(outputs):  # the run folder shows what the step gave
            link = artifacts / "cached" / folder.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(folder.resolve(), target_is_directory=True)
        if step is None:  # nb2kfp's own task
            return
        states[step] = "cached"
        on_event(step, "cached", None)  # after the links: its page is made from them

    workers = 1 if docker else jobs or local_scheduler.workers()
    ahead = None
    if supervisor is not None and not docker and kept_steps.enabled():
        every_step_runs = cache is None or not local_cache.has_entries(cache)  # nothing is cached
        ahead = steps_ahead.StepsAhead(pipeline, workers, supervisor, every_step_runs=every_step_runs)

    def on_step(step: str, status: str, seconds: float | None) -> None:
        if ahead is not None:
            ahead.step_event(step, status)
        on_event(step, status, seconds)

    step_cache = None
    if cache is not None:
        # SubprocessRunner steps run on this interpreter; DockerRunner's images are pinned
        extra = "" if docker else local_cache.environment()
        reads = run_dir / local_cache.READS  # each step writes what it read next to the notebook there
        os.environ[READS_ENV] = str(reads)

        def step_of(component: str) -> str | None:
            return names.get(kfpnames.task_of_component(component))

        seed = Path(pipeline.source).resolve().parent
        step_cache = local_cache.StepCache(str(cache.resolve()), extra, on_hit, seed, reads, step_of)
    try:
        with (
            ahead or contextlib.nullcontext(),  # started ahead; when it ends, kept for the next run
            _track(names, on_step, states, log),
            local_cache.used(step_cache),
            local_scheduler.parallel(workers),  # see the docstring
            contextlib.redirect_stdout(log),
        ):
            component(**arguments)
    except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE"
        error = exc
    except (ValueError, KeyError, TypeError) as exc:  # kfp.local could not wire a task's inputs or outputs
        raise RunError(
            f"kfp.local could not run the pipeline: {type(exc).__name__}: {_ANSI.sub('', str(exc))}"
        ) from exc
    finally:
        for name in RUN_ENV:
            os.environ.pop(name, None)
        log.close()
        if step_cache is not None:
            step_cache.files.save()
    failed = next((s for s, st in states.items() if st == "failed"), None)
    if error is not None and failed is None:
        raise RunError(f"kfp.local could not run the pipeline: {_ANSI.sub('', str(error))}")
    steps = {s: ("not run" if st == "pending" else st) for s, st in states.items()}
    metrics, text_metrics = read_metrics(artifacts, pipeline)
    return LocalRun(
        status="failed" if failed else "succeeded",
        steps=steps,
        metrics=metrics,
        text_metrics=text_metrics,
        run_dir=run_dir,
        seconds=time.monotonic() - started,
        failed_step=failed,
        log_tail=log.by_step.get(failed, [])[-40:] if failed else [],
        kept=ahead.kept_steps if ahead is not None else [],
    )


def _set_run_environment(pipeline: Pipeline, run_dir: Path, artifact_key: str) -> None:
    """What each run sets anew for its steps, in this process's environment (the steps inherit it): which notebook
    cell each step cell is (tracebacks name them), the steps' working directories (README: Files), the notebook's
    folder, the shared workspace, the artifact key. :func:`run` removes them (``RUN_ENV``) when it ends."""
    os.environ[CELLS_ENV] = json.dumps(cell_numbers(pipeline))
    os.environ[STEP_DIRS_ENV] = str(run_dir / "files")
    os.environ[SEED_ENV] = str(Path(pipeline.source).resolve().parent)
    os.environ[LOCAL_WORKSPACE_ENV] = str(run_dir / "workspace")
    os.environ[ARTIFACT_KEY_ENV] = artifact_key


def read_metrics(artifacts: Path, pipeline: Pipeline) -> tuple[dict[str, float], dict[str, str]]:
    """(numbers, text metrics) the steps recorded, in the pipeline's order of metrics."""
    found = _metrics_files(artifacts, pipeline)
    ordered = [(m, found[m]) for m in pipeline.metrics if m in found]
    return {m: v for m, v in ordered if not isinstance(v, str)}, {m: v for m, v in ordered if isinstance(v, str)}


def printed_metrics(artifacts: Path, pipeline: Pipeline) -> dict[str, str]:
    """What ``print(name)`` shows of each metric the steps recorded (a text metric: itself; a number: as the step
    printed it; none for a number recorded by an nb2kfp that did not say)."""
    found = _metrics_files(artifacts, pipeline)
    shown = {m: found.get(PRINTED_METRIC + m, found.get(m)) for m in pipeline.metrics}
    return {m: v for m, v in shown.items() if isinstance(v, str)}


def _metrics_files(artifacts: Path, pipeline: Pipeline) -> dict[str, float | str]:
    found: dict[str, float | str] = {}
    for step in pipeline.steps:
        if not step.metrics:
            continue
        for path in sorted(artifacts.glob(f"*/{kfpnames.task_name(step.name)}/{METRICS_KEY}")):
            found.update(json.loads(path.read_text(encoding="utf-8")))
    return found


def model_folders(artifacts: Path, pipeline: Pipeline) -> dict[str, Path]:
    """The saved folder of each model:VARIABLE a step produced in this run, by variable name."""
    found: dict[str, Path] = {}
    for step in pipeline.steps:
        for name in step.models:
            for path in sorted(artifacts.glob(f"*/{kfpnames.task_name(step.name)}/{name}")):
                if (path / "nb2kfp.json").is_file():
                    found[name] = path
    return found


def reference_folders(artifacts: Path, pipeline: Pipeline) -> dict[str, Path]:
    """The saved folder of each model's reference data (reference:VARIABLE or its fit's X), by model name."""
    found: dict[str, Path] = {}
    for step in pipeline.steps:
        for model, data in step.references:
            for path in sorted(artifacts.glob(f"*/{kfpnames.task_name(step.name)}/{data}")):
                if (path / "nb2kfp.json").is_file():
                    found[model] = path
    return found
