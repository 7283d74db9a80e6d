"""``nb2kfp run NB --local``: compile, then run the pipeline here with kfp.local, step by step; and
``nb2kfp run NB --host URL``: compile and run it on a KFP server (:func:`remote`).

The run folder (``.nb2kfp/runs/<name>``) holds the spec, ``run.log``, the artifacts and ``result.json``
(:mod:`nb2kfp.local_run.records`). SIGINT/SIGTERM stop every step process (:mod:`nb2kfp.local_run.processes`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nb2kfp import extras, kfpnames
from nb2kfp.errors import Nb2KfpError, RunError
from nb2kfp.ir import ParamValue, Pipeline
from nb2kfp.local_run import records
from nb2kfp.words import count

if TYPE_CHECKING:
    from nb2kfp.local_run import processes, reports
    from nb2kfp.local_run.runner import LocalRun

_MARK = {"running": "..", "succeeded": "ok", "failed": "FAILED", "interrupted": "STOP", "cached": "cached"}
_REMOTE_MARK = {"PENDING": "..", "RUNNING": "..", "SUCCEEDED": "ok", "FAILED": "FAILED", "SKIPPED": "skip"}


@dataclass(frozen=True)
class Options:
    params: list[str] = field(default_factory=list)  # -p name=value
    param_files: list[Path] = field(default_factory=list)  # -f params.yaml
    param_yaml: list[str] = field(default_factory=list)  # -y YAML
    run_dir: Path | None = None
    run_name: str | None = None
    as_json: bool = False
    verbose: bool = False
    docker: bool = False
    registry: str | None = None
    model_image: str | None = None
    report: bool = True  # step reports and report.html
    cache: bool = True  # reuse step results from the project's .nb2kfp/cache (not with --docker)
    jobs: int | None = None  # independent steps at once (default: one per core)
    output: Path | None = None  # the executed notebook here too (papermill's output notebook)


def _in_image(notebook: Path, pipeline: Pipeline, registry_text: str | None, report: Callable[[str], None]) -> Pipeline:
    """Build the step image (pushing it when a registry is given) and pin the pipeline to it."""
    from nb2kfp import service
    from nb2kfp.images import step_image as images
    from nb2kfp.oci.registry import Registry

    pinned = service.build_and_pin(notebook, pipeline, Registry.parse(registry_text) if registry_text else None, report)
    images.pull(pinned.image, pinned.credentials)
    files = f"{len(pinned.files)} file(s) from the notebook's folder: {', '.join(pinned.files[:5])}" + (
        ", ..." if len(pinned.files) > 5 else ""
    )
    report(f"step image {pinned.image.ref} ({'built' if pinned.image.built else 'up to date'}; {files})")
    return pinned.pipeline


def _origin(notebook: Path) -> dict[str, str]:
    """Where a model came from, recorded on its image: the notebook and its commit (when in git). Not the run:
    the same weights give the same digest (the run's result.json says which image each run made)."""
    from nb2kfp import git

    try:
        commit = git.rev_parse("HEAD", notebook.resolve().parent)
    except (RunError, OSError):  # not a git work tree, or no git here: the image records no commit
        commit = ""
    return {"notebook": notebook.name, "commit": commit}


def _unsigned(record: Path) -> None:
    """The step's nb2kfp.json without its signature: the run's key signs it, so it differs from run to run, and
    the same weights must give the same image digest."""
    try:
        meta = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no readable record: describe() then records no framework, and deploy says so
    if isinstance(meta, dict) and "hmac" in meta:
        del meta["hmac"]
        record.write_text(json.dumps(meta, sort_keys=True), encoding="utf-8")


def _package_models(
    notebook: Path,
    run_dir: Path,
    pipeline: Pipeline,
    prefix: str,
    report: Callable[[str], None],
    details: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Each model:VARIABLE the run produced becomes the image PREFIX/<variable> (files as model.<ext>)."""
    import shutil
    import tempfile

    from nb2kfp import service
    from nb2kfp.local_run import runner as local
    from nb2kfp.serving import model_image as models
    from nb2kfp.serving import reference

    images: dict[str, str] = {}
    folders = local.model_folders(run_dir / "artifacts", pipeline)
    data = local.reference_folders(run_dir / "artifacts", pipeline)
    if not folders:
        report("--model-image: no step declares a model (tag the step with model:VARIABLE)")
    for name, folder in sorted(folders.items()):
        models.model_files(folder)  # refuses links that lead out of the folder before anything is copied
        with tempfile.TemporaryDirectory(prefix="nb2kfp-model-") as tmp:
            for item in folder.iterdir():
                target = "model" + item.suffix if item.name.startswith("data.") else item.name
                shutil.copy(item, Path(tmp) / target)
            _unsigned(Path(tmp) / "nb2kfp.json")
            image = f"{prefix.rstrip('/')}/{name.lower().replace('_', '-')}"
            origin = _origin(notebook)
            sample = None
            if name in data:
                try:
                    sample = reference.from_artifact(data[name], f"model {name}: its data ({data[name].name})")
                except RunError as exc:  # the model is packed all the same, without a reference sample
                    report(f"{exc}; no reference sample in its image")
            out = run_dir / "models" / name
            images[name] = service.push_model(
                Path(tmp), image, out, None,
                insecure=False, report=report, origin=origin, reference=sample, details=details,
            )  # fmt: skip
    return images


def run(notebook: Path, options: Options, report: Callable[[str], None], report_error: Callable[[str], None]) -> int:
    _require(options)
    from nb2kfp.local_run import processes, reports

    pipeline, given, values = _compiled(notebook, options, report_error)
    record = _new_record(notebook, pipeline, values, options)
    target = record.run_dir
    pages = reports.StepPages(target, pipeline) if options.report else None  # rendered as the steps end
    progress = _Progress(record, pages, report_error, width=max((len(s.name) for s in pipeline.steps), default=4))
    how = "kfp.local in Docker" if options.docker else "kfp.local"
    report_error(f"running {pipeline.name} ({count(len(pipeline.steps), 'step')}) with {how} in {target}")
    try:
        outcome = _run_steps(notebook, pipeline, given, options, progress)
    except processes.Interrupted as stop:
        record.finish("interrupted")
        _write_report(record, pipeline, pages, notebook, options.output)
        where = f" during step {record.running_step}" if record.running_step else ""
        report_error(f"interrupted ({stop}){where}; record in {target / records.RESULT}")
        return stop.exit_code
    record.metrics, record.text_metrics = outcome.metrics, outcome.text_metrics
    _tell_kept(outcome.kept, report_error)
    if outcome.failed_step:
        record.failed(outcome.log_tail, outcome.failed_step)
        if not options.verbose:
            report_error(f"--- output of step {outcome.failed_step} (full log: {target / 'run.log'})")
            for line in outcome.log_tail:
                report_error("  " + line)
    if options.model_image and outcome.status == "succeeded":
        try:
            details = {"run": record.name, "parameters": record.parameters, "metrics": record.metrics}
            record.models = _package_models(notebook, target, pipeline, options.model_image, report_error, details)
        except Nb2KfpError:  # every step ran: the run succeeded (not "lost"); the push's error is the command's
            record.finish(outcome.status)
            _write_report(record, pipeline, pages, notebook, options.output)
            raise
    record.finish(outcome.status)
    page = _write_report(record, pipeline, pages, notebook, options.output)
    if options.as_json:
        report(json.dumps(record.as_dict(), sort_keys=True))
    else:
        _print_outcome(outcome, record, page, report)
    return 0 if outcome.status == "succeeded" else 1


def _require(options: Options) -> None:
    """What a local run with these options imports is installed (else a usage error naming the extra)."""
    extras.require(
        "nb2kfp run --local",
        "nb2kfp.local_run.kfp_local",  # kfp, as a local run imports it (without kfp.client), and checked
        "cloudpickle",
        *(["docker"] if options.docker else []),
        *(["oras", "requests"] if options.model_image else []),
    )
    if options.report:
        extras.require_installed("nb2kfp run --local", "nbconvert")


def _compiled(
    notebook: Path, options: Options, report_error: Callable[[str], None]
) -> tuple[Pipeline, dict[str, ParamValue], dict[str, ParamValue | None]]:
    """The pipeline to run (in its step image with --docker; reporting its steps unless --no-report), the parameter
    values given and every parameter's value in the run. Compile diagnostics go to ``report_error``."""
    from nb2kfp import service
    from nb2kfp.local_run import reports
    from nb2kfp.local_run.params import parameters_of

    result = service.compile_notebook(notebook)
    for d in result.diagnostics:
        report_error(d.format())
    pipeline = result.pipeline
    given, values = parameters_of(pipeline, options.param_files, options.param_yaml, options.params)
    if options.docker:
        pipeline = _in_image(notebook, pipeline, options.registry, report_error)
    if options.report:
        pipeline = reports.reported(pipeline)
    return pipeline, given, values


def _new_record(
    notebook: Path, pipeline: Pipeline, values: dict[str, ParamValue | None], options: Options
) -> records.RunRecord:
    """The run's folder with its spec and its first result.json."""
    from nb2kfp.atomic import write_text
    from nb2kfp.backends import kfp_spec

    target = (options.run_dir or records.new_run_dir(records.RUNS, pipeline.name, options.run_name)).resolve()
    target.mkdir(parents=True, exist_ok=True)
    spec_path = target / "pipeline.yaml"
    write_text(spec_path, kfp_spec.render(pipeline))
    record = records.RunRecord(
        name=target.name,
        notebook=str(notebook),
        pipeline=pipeline.name,
        run_dir=target,
        spec=spec_path,
        parameters=values,
        steps={s.name: records.StepRecord() for s in pipeline.steps},
    )
    record.write()
    return record


@dataclass
class _Progress:
    """A local run's step events: into its record and step pages, and a line each on stderr."""

    record: records.RunRecord
    pages: reports.StepPages | None
    report_error: Callable[[str], None]
    width: int  # of the step names' column
    supervisor: processes.Supervisor | None = None  # while the steps run

    def __call__(self, step: str, status: str, seconds: float | None) -> None:
        if self.supervisor is not None and self.supervisor.signum is not None and status == "failed":
            status = "interrupted"  # by SIGINT/SIGTERM
        self.record.on_event(step, status, seconds)
        if self.pages is not None and status == "running":
            self.pages.warm_up()
        elif self.pages is not None:
            self.pages.step_ended(step)
        took = f" {seconds:.2f}s" if seconds is not None else ""
        self.report_error(f"  {_MARK.get(status, status):>6}  {step:<{self.width}}{took}")


def _run_steps(
    notebook: Path, pipeline: Pipeline, given: dict[str, ParamValue], options: Options, progress: _Progress
) -> LocalRun:
    """Run the steps with kfp.local under a supervisor: SIGINT/SIGTERM stop them (:class:`processes.Interrupted`)."""
    from nb2kfp.local_run import kfp_warnings, processes
    from nb2kfp.local_run import runner as local
    from nb2kfp.local_run.params import as_arguments

    report_error, record = progress.report_error, progress.record
    echo = report_error if options.verbose else None
    tasks = {kfpnames.task_name(s.name): s.name for s in pipeline.steps}
    with processes.supervised() as supervisor, kfp_warnings.translated(report_error, tasks):
        progress.supervisor = supervisor
        arguments = as_arguments(pipeline, given)
        # a cached step does not write its files into a new run's shared workspace: no cache with one
        cached = options.cache and not options.docker and not pipeline.workspace
        cache = records.cache_folder(notebook.resolve().parent) if cached else None
        return local.run(
            record.spec,
            pipeline,
            arguments,
            record.run_dir,
            progress,
            echo,
            docker=options.docker,
            cache=cache,
            jobs=options.jobs,
            supervisor=supervisor,
        )


def _tell_kept(kept: list[str], report_error: Callable[[str], None]) -> None:
    """Step processes that outlive this command: say so, and how to stop them."""
    if kept:
        from nb2kfp.local_run.kept import keep_seconds

        report_error(
            f"kept {count(len(kept), 'step process', 'step processes')} warm for the next run "
            f"({', '.join(kept)}; {keep_seconds()} s; `nb2kfp runs clean` stops them, NB2KFP_WARM=0 keeps none)"
        )


def _print_outcome(
    outcome: LocalRun, record: records.RunRecord, page: Path | None, report: Callable[[str], None]
) -> None:
    for name, value in outcome.metrics.items():
        report(f"metric {name} = {value:g}")
    for name, text in outcome.text_metrics.items():
        report(f"metric {name} = {text!r}")
    for name, ref in record.models.items():
        report(f"model {name}: {ref}")
    report(f"{outcome.status} in {record.seconds:.1f}s; outputs in {record.run_dir}")
    if page is not None:
        report(f"report: {page}")


def _write_report(
    record: records.RunRecord,
    pipeline: Pipeline,
    pages: reports.StepPages | None,
    notebook: Path,
    output: Path | None,
) -> Path | None:
    """Finish the step pages, write the executed notebook (also to ``output``) and report.html (when asked), then
    result.json with their paths."""
    from nb2kfp.atomic import write_text
    from nb2kfp.local_run import reports
    from nb2kfp.local_run import runner as local

    page = None
    if pages is not None:
        collected = pages.collect()
        printed = local.printed_metrics(record.run_dir / "artifacts", pipeline)
        record.executed = reports.executed_notebook(record.run_dir, notebook, collected, printed)
        if record.executed is not None and output is not None:
            write_text(output, record.executed.read_text(encoding="utf-8"))
        record.report = record.run_dir / "report.html"
        page = reports.write_run_report(record.run_dir, pipeline, record.as_dict(), collected)
    record.write()
    return page


def remote(
    notebook: Path,
    host: str,
    params: list[str],
    *,
    wait: bool,
    report: Callable[[str], None],
    report_error: Callable[[str], None],
    experiment: str | None = None,
    poll_seconds: float = 2.0,
    timeout: float = 6 * 3600.0,
    param_files: list[Path] | None = None,
    param_yaml: list[str] | None = None,
) -> int:
    """Compile ``notebook``, run it on the KFP server at ``host``, print the run's link and (unless
    ``wait`` is False) each step's state changes until the run ends. Exit code 0 only on SUCCEEDED."""
    import tempfile
    import time

    from nb2kfp import service
    from nb2kfp.clients import kfp as kfp_client
    from nb2kfp.errors import RunError
    from nb2kfp.local_run.params import as_arguments, parameters_of
    from nb2kfp.security import policy

    extras.require("nb2kfp run --host", "kfp", "kfp_server_api")
    host = kfp_client.normalize_host(host)
    token = kfp_client.token_from_env()
    compiled = service.compile_for_kfp(notebook, report_error)
    policy.check_endpoint(compiled.settings, host)
    pipeline = compiled.pipeline
    given = parameters_of(pipeline, param_files or [], param_yaml or [], params)[0]
    arguments = dict(as_arguments(pipeline, given))
    tasks = {kfpnames.task_name(s.name): s.name for s in pipeline.steps}
    run_name = f"{pipeline.name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    width = max((len(s) for s in tasks.values()), default=4)

    def on_event(task: str, state: str) -> None:
        report_error(f"  {_REMOTE_MARK.get(state, state.lower()):>6}  {tasks.get(task, task):<{width}}")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nb2kfp-run-") as tmp:
        spec = Path(tmp) / "pipeline.yaml"
        spec.write_text(compiled.spec(), encoding="utf-8")
        try:
            remote = kfp_client.create_run(spec, host, token, arguments, experiment or pipeline.name, run_name)
        except RunError as exc:
            report_error(f"{notebook}: {exc}")
            return 1
    report(f"run {remote.run_id}: {remote.url}")
    if not wait:
        return 0
    report_error(f"following {pipeline.name} ({count(len(pipeline.steps), 'step')}) on {host}")
    try:
        state = kfp_client.follow(host, token, remote.run_id, on_event, poll_seconds, timeout, steps=set(tasks))
    except RunError as exc:
        report_error(f"{notebook}: {exc}")
        return 1
    report(f"{state.lower()} in {time.monotonic() - started:.1f}s: {remote.url}")
    return 0 if state == "SUCCEEDED" else 1
