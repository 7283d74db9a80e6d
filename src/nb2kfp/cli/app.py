"""The ``nb2kfp`` command line: parse flags, call one command module (errors become exit codes in main.py).

Imports stay lazy so that ``lint`` and ``compile --check`` never load the KFP SDK.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from nb2kfp import __version__
from nb2kfp.cli.console import err as _err
from nb2kfp.cli.console import out as _out
from nb2kfp.cli.runs import runs_app

app = typer.Typer(
    name="nb2kfp",
    help="Compile tagged Jupyter notebooks into Kubeflow Pipelines and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_state = {"debug": False}

# Newer typer (its own help renderer) adds "..." to the metavar of an argument that takes many values itself.
_TYPER_ADDS_DOTS = hasattr(typer.core.TyperArgument, "display_type_rich")
Notebooks = Annotated[
    list[Path],
    typer.Argument(
        metavar="NOTEBOOK" if _TYPER_ADDS_DOTS else "NOTEBOOK...", help="Notebook files (.ipynb).", show_default=False
    ),
]
Notebook = Annotated[Path, typer.Argument(metavar="NOTEBOOK", help="A notebook file (.ipynb).", show_default=False)]


def _version(value: bool) -> None:
    if value:
        _out(f"nb2kfp {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for handled errors.")] = False,
    version: Annotated[  # noqa: ARG001 - Typer's eager --version option
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def lint(
    notebooks: Notebooks,
    output_format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="text or json")] = "text",
    warnings_as_errors: Annotated[bool, typer.Option("--warnings-as-errors", help="Exit 1 on warnings too.")] = False,
) -> None:
    """Report errors and warnings (path: cell N: ...); exit 1 when there are errors. A folder: its notebooks."""
    from nb2kfp.commands import lint as command

    raise typer.Exit(command.run(notebooks, output_format, _out, warnings_as_errors=warnings_as_errors))


@app.command("compile")
def compile_(
    notebooks: Notebooks,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", metavar="FILE", help="Output file (one notebook).")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", metavar="DIR", help="Folder for the outputs.")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if an output is missing or stale; write nothing.")
    ] = False,
    changed_only: Annotated[
        bool, typer.Option("--changed-only", help="Only compile notebooks whose output is missing or stale.")
    ] = False,
    fail_on_write: Annotated[
        bool, typer.Option("--fail-on-write", help="Exit 1 when an output was written (for pre-commit).")
    ] = False,
) -> None:
    """Compile notebooks to KFP pipeline specs (default: <stem>.pipeline.yaml beside each)."""
    from nb2kfp.commands import compile as command

    options = command.Options(output, output_dir, check, changed_only, fail_on_write, _state["debug"])
    raise typer.Exit(command.run(notebooks, options, _err, _err))


@app.command()
def graph(
    notebook: Notebook,
    output_format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="text, mermaid or dot")] = "text",
) -> None:
    """Print the pipeline's DAG."""
    from nb2kfp.commands import graph as command

    raise typer.Exit(command.run(notebook, output_format, _out, _err))


@app.command()
def run(
    notebook: Notebook,
    local_run: Annotated[  # noqa: ARG001 - --local is the default, named for clarity
        bool, typer.Option("--local", help="Run here with kfp.local (the default).", show_default=False)
    ] = True,
    param: Annotated[
        list[str] | None,
        typer.Option("-p", "--param", metavar="NAME=VALUE", help="Override a parameter: -p name=value."),
    ] = None,
    param_file: Annotated[
        list[Path] | None,
        typer.Option("-f", "--parameters-file", metavar="FILE", help="Parameters from a YAML file (papermill's -f)."),
    ] = None,
    param_yaml: Annotated[
        list[str] | None,
        typer.Option("-y", "--parameters-yaml", metavar="YAML", help="Parameters as YAML text (papermill's -y)."),
    ] = None,
    run_name: Annotated[
        str | None, typer.Option("--run-name", metavar="NAME", help="Name of the run folder in .nb2kfp/runs.")
    ] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", metavar="DIR", help="Folder for outputs and logs.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the result.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Stream every step's output.")] = False,
    docker: Annotated[
        bool, typer.Option("--docker", help="Run each step in its image (kfp.local DockerRunner).")
    ] = False,
    registry: Annotated[
        str | None,
        typer.Option("--registry", metavar="REGISTRY", help="With --docker: push the step image here first."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", metavar="URL", help="Run on this Kubeflow Pipelines API instead (token: NB2KFP_KFP_TOKEN)."
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="With --host: follow the run to its end.")] = True,
    experiment: Annotated[
        str | None, typer.Option("--experiment", metavar="NAME", help="With --host: KFP experiment.")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Step reports and report.html in the run folder.")
    ] = True,
    model_image: Annotated[
        str | None,
        typer.Option(
            "--model-image",
            metavar="REGISTRY/PATH",
            help="After the run, push each model:VARIABLE as REGISTRY/PATH/<variable>.",
        ),
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache",
            help="Reuse the results of steps whose code, inputs, parameters and environment are unchanged "
            "(the project's .nb2kfp/cache; not with --docker).",
        ),
    ] = True,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", metavar="N", min=1, help="Independent steps at once (default: one per core; --docker: one)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", metavar="OUT.ipynb", help="Write the executed notebook here too (as papermill's output)."
        ),
    ] = None,
) -> None:
    """Compile the notebook and run its pipeline: here (kfp.local), in Docker, or on a KFP cluster (--host)."""
    if host is not None:
        if docker or run_dir is not None or run_name is not None or as_json or model_image or output is not None:
            raise typer.BadParameter(
                "--host runs on the cluster: it does not go with --docker, --run-dir, --run-name, --json, "
                "--model-image or -o"
            )
        from nb2kfp.commands import run as command

        raise typer.Exit(
            command.remote(
                notebook,
                host,
                param or [],
                wait=wait,
                report=_out,
                report_error=_err,
                experiment=experiment,
                param_files=param_file,
                param_yaml=param_yaml,
            )
        )
    if run_dir is not None and run_name is not None:
        raise typer.BadParameter("give --run-dir or --run-name, not both")
    if output is not None and not report:
        raise typer.BadParameter("-o writes the executed notebook, which --no-report does not make")
    from nb2kfp.commands import run as command

    options = command.Options(
        params=param or [],
        param_files=param_file or [],
        param_yaml=param_yaml or [],
        run_dir=run_dir,
        run_name=run_name,
        as_json=as_json,
        verbose=verbose,
        docker=docker,
        registry=registry,
        model_image=model_image,
        report=report,
        cache=cache,
        jobs=jobs,
        output=output,
    )
    raise typer.Exit(command.run(notebook, options, _out, _err))


@app.command()
def publish(
    notebooks: Notebooks,
    host: Annotated[
        str | None, typer.Option("--host", metavar="URL", help="KFP API URL (token from NB2KFP_KFP_TOKEN).")
    ] = None,
    manifests: Annotated[
        Path | None,
        typer.Option("--manifests", metavar="DIR", help="Write Pipeline/PipelineVersion resources here instead."),
    ] = None,
    commit: Annotated[
        str | None, typer.Option("--commit", metavar="COMMIT", help="Commit for the version name (default: HEAD).")
    ] = None,
    kfp_version: Annotated[
        str | None,
        typer.Option(
            "--kfp-version",
            metavar="VERSION",
            help="The cluster's KFP release: what it cannot run is refused; the --manifests shape (default: 2.17+).",
        ),
    ] = None,
) -> None:
    """Upload each notebook's pipeline as a KFP pipeline version named from the commit and its content."""
    from nb2kfp.commands import publish as command

    raise typer.Exit(command.run(notebooks, host, manifests, commit, _out, _err, kfp_version))


@app.command()
def build(
    notebooks: Notebooks,
    registry: Annotated[
        str, typer.Option("--registry", metavar="REGISTRY", help="Registry host[:port][/prefix] to push to.")
    ],
    base: Annotated[
        str | None, typer.Option("--base", metavar="IMAGE", help="Base image (default: the notebook's image).")
    ] = None,
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", metavar="DIR", help="Where pinned specs go.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No build or push progress.")] = False,
) -> None:
    """Build each notebook's step image, push it, and write a spec pinned to it by digest."""
    from nb2kfp.commands import build as command

    raise typer.Exit(command.run(notebooks, registry, base, output_dir, quiet=quiet, report=_err))


model_app = typer.Typer(help="Model images: build, deploy, promote, serve.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("build")
def model_build(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Model file or folder.", show_default=False)],
    image: Annotated[str, typer.Option("--image", metavar="IMAGE", help="REGISTRY/REPOSITORY[:TAG] to push to.")],
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", metavar="DIR", help="Where the manifests go.")
    ] = None,
    framework: Annotated[
        str | None,
        typer.Option(
            "--framework",
            metavar="DIST==VERSION",
            help="What saved the model, e.g. scikit-learn==1.9.1 (else its nb2kfp.json).",
        ),
    ] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain HTTP to a non-loopback registry.")] = False,
    reference: Annotated[
        Path | None,
        typer.Option("--reference", metavar="FILE", help="Training data (.parquet/.csv/.npy): its reference sample."),
    ] = None,
) -> None:
    """Put a model under /models in an image, push it, print its digest, write deployment manifests."""
    from nb2kfp.commands import model as command

    raise typer.Exit(
        command.run(
            path, image, output_dir, framework, insecure=insecure, report=_err, result=_out, reference=reference
        )
    )


_Insecure = Annotated[bool, typer.Option("--insecure", help="Plain HTTP to a non-loopback registry.")]
_ModelImage = Annotated[str, typer.Argument(help="Model image: REGISTRY/REPO[:TAG] or @sha256:...", show_default=False)]


@model_app.command("deploy")
def model_deploy(
    image: _ModelImage,
    name: Annotated[str, typer.Option("--name", help="Kubernetes name of the Deployment and Service.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where the manifests go.")],
    runtime: Annotated[str, typer.Option("--runtime", help="Serving runtime: mlserver or kserve.")] = "mlserver",
    insecure: _Insecure = False,
) -> None:
    """Deployment (model image as init container), Service, kustomization and KServe InferenceService."""
    from nb2kfp.commands import model_serving as command

    raise typer.Exit(command.deploy(image, name, runtime, output_dir, _err, insecure=insecure))


@model_app.command("promote")
def model_promote(
    name: Annotated[str, typer.Argument(help="The deployed name.", show_default=False)],
    image: _ModelImage,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="The folder model deploy wrote.")],
    insecure: _Insecure = False,
) -> None:
    """Roll out another model: only its digest changes; refused if the runtime cannot load it."""
    from nb2kfp.commands import model_serving as command

    raise typer.Exit(command.promote(name, image, output_dir, _err, insecure=insecure))


@model_app.command("runtime")
def model_runtime(
    registry: Annotated[str, typer.Option("--registry", help="Registry host[:port][/prefix] to push to.")],
) -> None:
    """Build (once) and push the MLServer serving image; print it pinned by digest, for [serving] settings."""
    from nb2kfp.commands import model_serving as command

    raise typer.Exit(command.push_runtime(registry, _err, _out))


@model_app.command("serve")
def model_serve(
    image: _ModelImage,
    local: Annotated[bool, typer.Option("--local", help="Serve with this machine's Docker engine.")] = False,
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (default: a free one).")] = 0,
    example: Annotated[
        str | None, typer.Option("--example", help="V2 request JSON (or @file) for the smoke request.")
    ] = None,
    insecure: _Insecure = False,
    log_requests: Annotated[
        Path | None,
        typer.Option("--log-requests", metavar="DIR", help="Append each inference request and answer (JSON lines)."),
    ] = None,
) -> None:
    """Serve a model image on 127.0.0.1 until Ctrl-C: one prediction to check it, then its URL."""
    from nb2kfp.commands import model_serving as command

    if not local:
        _err("model serve needs --local (on a cluster: nb2kfp model deploy, then kubectl apply -k)")
        raise typer.Exit(2)

    def result(line: str) -> None:
        _out(line)
        sys.stdout.flush()

    raise typer.Exit(
        command.serve(image, port, example, insecure=insecure, report=_err, result=result, log_requests=log_requests)
    )


@app.command()
def monitor(
    image: _ModelImage,
    requests: Annotated[
        str,
        typer.Option("--requests", metavar="SOURCE", help="Logged requests: a JSON-lines file or a folder of them."),
    ],
    alpha: Annotated[float, typer.Option("--alpha", help="Level of the drift tests, after the correction.")] = 0.05,
    correction: Annotated[
        str, typer.Option("--correction", metavar="NAME", help="bonferroni or bh (Benjamini-Hochberg).")
    ] = "bonferroni",
    output_dir: Annotated[
        Path | None, typer.Option("--output-dir", "-o", metavar="DIR", help="Where monitor.ipynb goes.")
    ] = None,
    publish: Annotated[bool, typer.Option("--publish", help="Upload it as a KFP pipeline version (--host).")] = False,
    schedule: Annotated[
        str | None,
        typer.Option("--schedule", metavar="CRON", help="Publish it and run it on CRON (a KFP recurring run)."),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", metavar="URL", help="KFP API URL (token from NB2KFP_KFP_TOKEN).")
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", metavar="REGISTRY/PATH", help="Where the monitoring image goes (--publish)."),
    ] = None,
    registry_secret: Annotated[
        str | None,
        typer.Option("--registry-secret", metavar="NAME", help="Secret (username, password) the step reads with."),
    ] = None,
    insecure: _Insecure = False,
    gitlab_issue: Annotated[
        bool, typer.Option("--gitlab-issue", help="On drift, open or update an issue in the CI job's GitLab project.")
    ] = False,
) -> None:
    """Test a served model's logged requests against its reference sample: a monitoring pipeline, run here."""
    from nb2kfp.commands import monitor as command

    if alpha <= 0 or alpha >= 1:
        raise typer.BadParameter("--alpha: give a level between 0 and 1, e.g. 0.05")
    publish = publish or schedule is not None
    if publish and not registry:
        raise typer.BadParameter("--publish needs --registry: the cluster pulls the monitoring image from there")
    if schedule is not None:
        command.cron_fields(schedule)  # a bad expression before anything is built
    pinned = command.step_image(registry, _err) if registry else None
    notebook = command.prepare(
        image,
        requests,
        alpha,
        correction,
        output_dir,
        pinned,
        local=not publish,
        insecure=insecure,
        report=_err,
        registry_secret=registry_secret,
    )
    if schedule is not None:
        raise typer.Exit(command.schedule(notebook, host, schedule, _err))
    if publish:
        from nb2kfp.commands import publish as publishing

        raise typer.Exit(publishing.run([notebook], host, None, None, _out, _err))
    from nb2kfp.commands import run as running
    from nb2kfp.local_run import records

    run_dir = records.new_run_dir(records.RUNS, notebook.parent.name + "-monitor", None)
    code = running.run(notebook, running.Options(run_dir=run_dir), _out, _err)
    if code == 0:
        found = command.verdict(run_dir)
        shown = f"drift in {', '.join(found.drifted)}" if found.drifted else "no drift"
        _out(f"{shown} ({found.features} features); report: {found.report}")
        if gitlab_issue and found.drifted:
            command.notify(found, image, _err)
    raise typer.Exit(code)


@app.command()
def plan(
    notebook: Notebook,
    against: Annotated[
        str, typer.Option("--against", metavar="REF", help="Git ref to compare with (e.g. origin/main).")
    ],
    output_format: Annotated[str, typer.Option("--format", metavar="FORMAT", help="text, markdown or json")] = "text",
) -> None:
    """What changes in the pipeline against another git ref, and which steps KFP's cache will serve."""
    from nb2kfp.commands import plan as command

    raise typer.Exit(command.run(notebook, against, output_format, _out))


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port.")] = 8080,
    data: Annotated[Path, typer.Option("--data", metavar="DIR", help="Queue, clones and outputs.")] = Path(
        ".nb2kfp/serve"
    ),
    secret_file: Annotated[
        Path | None, typer.Option("--secret-file", metavar="FILE", help="Webhook secret (else NB2KFP_WEBHOOK_SECRET).")
    ] = None,
    project: Annotated[
        list[str] | None,
        typer.Option("--project", metavar="PROJECT", help="GitLab project id or path to accept (repeat)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", metavar="N", min=0, help="Processing threads (0: only queue).")
    ] = 2,
    allow_weak_secret: Annotated[
        bool, typer.Option("--allow-weak-secret", help="Accept a webhook secret under 16 characters.")
    ] = False,
) -> None:
    """Receive GitLab push webhooks: queue each event durably, then lint, compile, build and publish."""
    from nb2kfp.commands import serve as command

    raise typer.Exit(
        command.run(host, port, data, secret_file, project or [], workers, _out, allow_weak_secret=allow_weak_secret)
    )


@app.command()
def ci(
    phase: Annotated[
        str, typer.Argument(metavar="PHASE", help="lint, compile, build, publish, report or all.")
    ] = "all",
    notebooks: Annotated[
        str, typer.Option("--notebooks", metavar="GLOB", help="Glob of the notebooks.")
    ] = "**/*.ipynb",
    output_dir: Annotated[Path, typer.Option("--output-dir", metavar="DIR", help="Artifacts folder.")] = Path(
        "nb2kfp-out"
    ),
    registry: Annotated[
        str | None, typer.Option("--registry", metavar="REGISTRY", help="Registry for step images.")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", metavar="URL", help="Kubeflow Pipelines API URL to publish to.")
    ] = None,
) -> None:
    """Run the GitLab CI component's jobs: lint, compile, build, publish, report (or all)."""
    from nb2kfp.commands import ci as command

    if phase not in (*command.PHASES, "all"):
        raise typer.BadParameter(f"phase must be one of {', '.join(command.PHASES)} or all")
    raise typer.Exit(command.run(phase, notebooks, output_dir, registry or None, host or None, _out))


catalog_app = typer.Typer(
    help="Prebuilt KFP components notebooks can call (component:NAME tags).", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")


@catalog_app.command("list")
def catalog_list(
    folder: Annotated[Path, typer.Option("--dir", "-C", metavar="DIR", help="Where settings are looked up.")] = Path(
        "."
    ),
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List the components in the catalog (settings paths and URLs, then the bundled ones)."""
    from nb2kfp.commands import catalog as command

    raise typer.Exit(command.run_list(folder, _out, as_json=as_json))


@catalog_app.command("show")
def catalog_show(
    ref: Annotated[str, typer.Argument(metavar="NAME[@VERSION]", help="A catalog component.")],
    folder: Annotated[Path, typer.Option("--dir", "-C", metavar="DIR", help="Where settings are looked up.")] = Path(
        "."
    ),
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Describe a component: its inputs, outputs, image and where it comes from."""
    from nb2kfp.commands import catalog as command

    raise typer.Exit(command.run_show(ref, folder, _out, as_json=as_json))


@catalog_app.command("fetch")
def catalog_fetch(notebooks: Notebooks) -> None:
    """Download the URL-catalog components the notebooks call into the local cache (lint and compile never fetch)."""
    from nb2kfp.commands import catalog as command

    raise typer.Exit(command.run_fetch(notebooks, _err))


app.add_typer(runs_app, name="runs")


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER", help="Repository folder.")] = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff only.")] = False,
    hooks_repo: Annotated[
        str | None, typer.Option(metavar="URL", help="pre-commit repo URL of nb2kfp (default: local hooks).")
    ] = None,
    hooks_rev: Annotated[str | None, typer.Option(metavar="REV", help="Tag or commit of --hooks-repo.")] = None,
    ci_component: Annotated[
        str | None,
        typer.Option(
            metavar="COMPONENT", help="GitLab CI component to include, e.g. gitlab.com/group/nb2kfp/nb2kfp@1.0."
        ),
    ] = None,
) -> None:
    """Add nb2kfp settings, pre-commit hooks, the CI include and an example notebook to a repository."""
    from nb2kfp.commands import init as command

    changes = command.plan(folder, hooks_repo, hooks_rev, ci_component)

    def confirm() -> bool:
        if not sys.stdin.isatty():
            _err("not a terminal: re-run with --yes to apply, or --dry-run to only show the diff")
            return False
        return typer.confirm("Apply these changes?", default=False)

    raise typer.Exit(command.run(folder, changes, yes=yes, dry_run=dry_run, confirm=confirm, report=_out))


def _readable_help() -> None:
    """Help as people read it: whole command descriptions, metavars rather than Python types.

    click cuts a command's description to fit one line of the command list; an explicit short help is
    shown whole. Newer typer prints an argument's Python type (``<list[Path]>``) after its metavar.
    """
    for typer_app in (app, model_app, catalog_app, runs_app):
        for command in typer_app.registered_commands:
            doc = command.help or (command.callback.__doc__ if command.callback else None) or ""
            command.short_help = command.short_help or doc.strip().split("\n")[0]
        for group in typer_app.registered_groups:
            info = group.typer_instance.info if group.typer_instance else None
            if info is not None and isinstance(info.help, str):
                group.short_help = group.short_help or info.help
    if _TYPER_ADDS_DOTS:
        typer.core.TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]  # noqa: ARG005 - click's signature
        return
    for param in (typer.core.TyperArgument, typer.core.TyperOption):  # older typer escapes "\\[required]"
        param.get_help_record = _unescaped(param.get_help_record)  # type: ignore[method-assign,assignment]


def _unescaped(record: Callable[[Any, Any], tuple[str, str] | None]) -> Callable[[Any, Any], tuple[str, str] | None]:
    def get_help_record(self: Any, ctx: Any) -> tuple[str, str] | None:
        found = record(self, ctx)
        return None if found is None else (found[0], found[1].replace("\\[", "["))

    return get_help_record


def run_app() -> int:
    """Run the Typer app; click hands back the code of typer.Exit here."""
    _readable_help()
    code = app(standalone_mode=False)
    return code if isinstance(code, int) else 0


def usage_of(argv: list[str]) -> str:
    """The usage lines of the (sub)command argv names, for click errors that come without their context."""
    command = typer.main.get_command(app)
    context = command.context_class(command, info_name="nb2kfp")
    for word in argv:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command = sub
        context = command.context_class(command, info_name=word, parent=context)
    return f"{context.get_usage()}\nTry '{context.command_path} --help' for help.\n"


def debug_enabled() -> bool:
    return _state["debug"]
