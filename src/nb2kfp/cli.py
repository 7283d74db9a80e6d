"""The ``nb2kfp`` command line: parse flags, call one command module (errors become exit codes in main.py).

Imports stay lazy so that ``lint`` and ``compile --check`` never load the KFP SDK.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from nb2kfp import __version__
from nb2kfp.main import err as _err
from nb2kfp.main import out as _out

app = typer.Typer(
    name="nb2kfp",
    help="Compile tagged Jupyter notebooks into Kubeflow Pipelines and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_state = {"debug": False}

Notebooks = Annotated[list[Path], typer.Argument(help="Notebook files (.ipynb).", show_default=False)]
Notebook = Annotated[Path, typer.Argument(help="A notebook file (.ipynb).", show_default=False)]


def _version(value: bool) -> None:
    if value:
        _out(f"nb2kfp {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for handled errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def lint(
    notebooks: Notebooks,
    output_format: Annotated[str, typer.Option("--format", help="text or json")] = "text",
) -> None:
    """Report errors and warnings (path: cell N: ...); exit 1 when there are errors."""
    from nb2kfp.commands import lint as command

    raise typer.Exit(command.run(notebooks, output_format, _out))


@app.command("compile")
def compile_(
    notebooks: Notebooks,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Output file (one notebook).")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Folder for the outputs.")] = None,
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
    output_format: Annotated[str, typer.Option("--format", help="text, mermaid or dot")] = "text",
) -> None:
    """Print the pipeline's DAG."""
    from nb2kfp.commands import graph as command

    raise typer.Exit(command.run(notebook, output_format, _out, _err))


@app.command()
def run(
    notebook: Notebook,
    local_run: Annotated[bool, typer.Option("--local", help="Run here with kfp.local (the default).")] = True,
    param: Annotated[
        list[str] | None, typer.Option("-p", "--param", help="Override a parameter: -p name=value.")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option("--run-dir", help="Folder for outputs and logs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the result.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose", help="Stream every step's output.")] = False,
    docker: Annotated[
        bool, typer.Option("--docker", help="Run each step in its image (kfp.local DockerRunner).")
    ] = False,
    registry: Annotated[
        str | None, typer.Option("--registry", help="With --docker: push the step image here first.")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Run on this Kubeflow Pipelines API instead (token: NB2KFP_KFP_TOKEN).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="With --host: follow the run to its end.")] = True,
    experiment: Annotated[str | None, typer.Option("--experiment", help="With --host: KFP experiment.")] = None,
    model_image: Annotated[
        str | None,
        typer.Option("--model-image", help="After the run, push each model:VARIABLE as REGISTRY/PATH/<variable>."),
    ] = None,
) -> None:
    """Compile the notebook and run its pipeline: here (kfp.local), in Docker, or on a KFP cluster (--host)."""
    if host is not None:
        if docker or run_dir is not None or as_json or model_image:
            raise typer.BadParameter(
                "--host runs on the cluster: it does not go with --docker, --run-dir, --json or --model-image"
            )
        from nb2kfp.commands import publish

        raise typer.Exit(publish.remote_run(notebook, host, param or [], wait, _out, _err, experiment=experiment))
    from nb2kfp.commands import run as command

    raise typer.Exit(
        command.run(notebook, param or [], run_dir, as_json, verbose, _out, _err, docker, registry, model_image)
    )


@app.command()
def publish(
    notebooks: Notebooks,
    host: Annotated[str | None, typer.Option("--host", help="KFP API URL (token from NB2KFP_KFP_TOKEN).")] = None,
    manifests: Annotated[
        Path | None, typer.Option("--manifests", help="Write Pipeline/PipelineVersion resources here instead.")
    ] = None,
    commit: Annotated[str | None, typer.Option("--commit", help="Commit for the version name (default: HEAD).")] = None,
) -> None:
    """Upload each notebook's pipeline as a KFP pipeline version named from the commit and its content."""
    from nb2kfp.commands import publish as command

    raise typer.Exit(command.run(notebooks, host, manifests, commit, _out, _err))


@app.command()
def build(
    notebooks: Notebooks,
    registry: Annotated[str, typer.Option("--registry", help="Registry host[:port][/prefix] to push to.")],
    base: Annotated[str | None, typer.Option("--base", help="Base image (default: the notebook's image).")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Where pinned specs go.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No build or push progress.")] = False,
) -> None:
    """Build each notebook's step image, push it, and write a spec pinned to it by digest."""
    from nb2kfp.commands import build as command

    raise typer.Exit(command.run(notebooks, registry, base, output_dir, quiet, _err))


model_app = typer.Typer(help="Model images (KServe modelcars), built without a Docker engine.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("build")
def model_build(
    path: Annotated[Path, typer.Argument(help="Model file or folder.", show_default=False)],
    image: Annotated[str, typer.Option("--image", help="REGISTRY/REPOSITORY[:TAG] to push to.")],
    output_dir: Annotated[Path | None, typer.Option("--output-dir", help="Where the manifests go.")] = None,
    model_format: Annotated[str, typer.Option("--model-format", help="KServe model format.")] = "sklearn",
    insecure: Annotated[bool, typer.Option("--insecure", help="Plain HTTP to a non-loopback registry.")] = False,
) -> None:
    """Put a model under /models in an image, push it, print its digest, write KServe manifests."""
    from nb2kfp.commands import model as command

    raise typer.Exit(command.run(path, image, output_dir, model_format, insecure, _err, _out))


@app.command()
def plan(
    notebook: Notebook,
    against: Annotated[str, typer.Option("--against", help="Git ref to compare with (e.g. origin/main).")],
    output_format: Annotated[str, typer.Option("--format", help="text, markdown or json")] = "text",
) -> None:
    """What changes in the pipeline against another git ref, and which steps KFP's cache will serve."""
    from nb2kfp.commands import plan as command

    raise typer.Exit(command.run(notebook, against, output_format, _out))


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8080,
    data: Annotated[Path, typer.Option("--data", help="Queue, clones and outputs.")] = Path(".nb2kfp/serve"),
    secret_file: Annotated[
        Path | None, typer.Option("--secret-file", help="Webhook secret (else NB2KFP_WEBHOOK_SECRET).")
    ] = None,
    project: Annotated[
        list[str] | None, typer.Option("--project", help="GitLab project id or path to accept (repeat).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Processing threads (0: only queue).")] = 2,
    allow_weak_secret: Annotated[
        bool, typer.Option("--allow-weak-secret", help="Accept a webhook secret under 16 characters.")
    ] = False,
) -> None:
    """Receive GitLab push webhooks: queue each event durably, then lint, compile, build and publish."""
    from nb2kfp.commands import serve as command

    raise typer.Exit(command.run(host, port, data, secret_file, project or [], workers, _out, allow_weak_secret))


@app.command()
def ci(
    phase: Annotated[str, typer.Argument(help="lint, compile, build, publish, report or all.")] = "all",
    notebooks: Annotated[str, typer.Option("--notebooks", help="Glob of the notebooks.")] = "**/*.ipynb",
    output_dir: Annotated[Path, typer.Option("--output-dir", help="Artifacts folder.")] = Path("nb2kfp-out"),
    registry: Annotated[str | None, typer.Option("--registry", help="Registry for step images.")] = None,
    host: Annotated[str | None, typer.Option("--host", help="Kubeflow Pipelines API URL to publish to.")] = None,
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
    folder: Annotated[Path, typer.Option("--dir", "-C", help="Where settings are looked up.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List the components in the catalog (settings paths and URLs, then the bundled ones)."""
    from nb2kfp.commands import catalog as command

    raise typer.Exit(command.run_list(folder, as_json, _out))


@catalog_app.command("show")
def catalog_show(
    ref: Annotated[str, typer.Argument(help="NAME[@VERSION]", show_default=False)],
    folder: Annotated[Path, typer.Option("--dir", "-C", help="Where settings are looked up.")] = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Describe a component: its inputs, outputs, image and where it comes from."""
    from nb2kfp.commands import catalog as command

    raise typer.Exit(command.run_show(ref, folder, as_json, _out))


@catalog_app.command("fetch")
def catalog_fetch(notebooks: Notebooks) -> None:
    """Download the URL-catalog components the notebooks call into the local cache (lint and compile never fetch)."""
    from nb2kfp.commands import catalog as command

    raise typer.Exit(command.run_fetch(notebooks, _err))


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Repository folder.")] = Path("."),
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff only.")] = False,
    hooks_repo: Annotated[
        str | None, typer.Option(help="pre-commit repo URL of nb2kfp (default: local hooks).")
    ] = None,
    hooks_rev: Annotated[str | None, typer.Option(help="Tag or commit of --hooks-repo.")] = None,
    ci_component: Annotated[
        str | None, typer.Option(help="GitLab CI component to include, e.g. gitlab.com/group/nb2kfp/nb2kfp@1.0.")
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

    raise typer.Exit(command.run(folder, changes, yes, dry_run, confirm, _out))


def run_app() -> int:
    """Run the Typer app; click hands back the code of typer.Exit here."""
    code = app(standalone_mode=False)
    return code if isinstance(code, int) else 0


def debug_enabled() -> bool:
    return _state["debug"]
