"""``nb2kfp runs``, ``runs show`` and ``runs clean``: the Typer commands over :mod:`nb2kfp.commands.runs`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nb2kfp.cli.console import out as _out

runs_app = typer.Typer(help="Local runs in .nb2kfp/runs, newest first.", invoke_without_command=True)
RunsDir = Annotated[Path, typer.Option("--dir", metavar="DIR", help="Where the run folders are.")]


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    folder: RunsDir = Path(".nb2kfp/runs"),
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List the local runs (newest first): status, start, duration, parameters."""
    if ctx.invoked_subcommand is None:
        from nb2kfp.commands import runs as command

        raise typer.Exit(command.run_list(folder, _out, as_json=as_json))


@runs_app.command("show")
def runs_show(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run folder name (or its start), or path.")],
    folder: RunsDir = Path(".nb2kfp/runs"),
    as_json: Annotated[bool, typer.Option("--json", help="The run's result.json.")] = False,
) -> None:
    """Print one run: steps with status and duration, parameters, metrics, error, files."""
    from nb2kfp.commands import runs as command

    raise typer.Exit(command.run_show(run_ref, folder, _out, as_json=as_json))


@runs_app.command("clean")
def runs_clean(
    keep: Annotated[
        int | None, typer.Option("--keep", metavar="N", help="Remove all runs but the newest N (default: remove none).")
    ] = None,
    folder: RunsDir = Path(".nb2kfp/runs"),
    cache: Annotated[
        bool, typer.Option("--cache", help="Also empty the step cache (.nb2kfp/cache of the current folder's project).")
    ] = False,
    every_project: Annotated[
        bool, typer.Option("--all", help="Stop the step processes kept warm for every project, not this one's only.")
    ] = False,
) -> None:
    """Stop this project's kept step processes; with --keep N, also remove all but the newest N runs (a run still
    going is never removed)."""
    from nb2kfp.commands import runs as command

    raise typer.Exit(command.run_clean(keep, folder, _out, cache=cache, every_project=every_project))
