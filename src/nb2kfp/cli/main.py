"""The ``nb2kfp`` entry point: error handling, and a fast path that skips Typer for pre-commit's calls.

``lint`` and ``compile`` as pre-commit runs them (paths and on/off flags) go straight to their command
modules: Typer's start-up (importing it and pydantic, building every command) is half of their run time.
Every other invocation goes through the Typer app in :mod:`nb2kfp.cli.app`. Same command modules, same output.
"""

from __future__ import annotations

import atexit
import gc
import itertools
import sys
from pathlib import Path

from nb2kfp.cli.console import err, out
from nb2kfp.errors import Nb2KfpError
from nb2kfp.words import printable

_FAST_COMPILE_FLAGS = {"--check", "--changed-only", "--fail-on-write"}


_VALUE_OPTIONS = {"-o": "output", "--output": "output", "--output-dir": "output_dir"}


def _split(args: list[str]) -> tuple[set[str], dict[str, Path], list[Path]] | None:
    """On/off flags, compile's path options, and notebook paths; None for anything else (Typer handles it)."""
    flags: set[str] = set()
    values: dict[str, Path] = {}
    paths: list[Path] = []
    items = iter(args)
    for arg in items:
        name, eq, inline = arg.partition("=")
        if name in _VALUE_OPTIONS:
            value = inline if eq else next(items, None)
            if not value or _VALUE_OPTIONS[name] in values:
                return None
            values[_VALUE_OPTIONS[name]] = Path(value)
        elif arg.startswith("-"):
            flags.add(arg)
        else:
            paths.append(Path(arg))
    return flags, values, paths


def fast_path(argv: list[str]) -> int | None:
    if len(argv) < 2 or argv[0] not in ("lint", "compile"):
        return None
    split = _split(argv[1:])
    if split is None:
        return None
    flags, values, paths = split
    if not paths or (values and argv[0] != "compile"):
        return None
    if argv[0] == "lint" and flags <= {"--warnings-as-errors"}:
        from nb2kfp.commands import lint

        return lint.run(paths, "text", out, warnings_as_errors="--warnings-as-errors" in flags)
    if argv[0] == "compile" and flags <= _FAST_COMPILE_FLAGS:
        from nb2kfp.commands import compile as compile_command

        options = compile_command.Options(
            output=values.get("output"),
            output_dir=values.get("output_dir"),
            check="--check" in flags,
            changed_only="--changed-only" in flags,
            fail_on_write="--fail-on-write" in flags,
        )
        return compile_command.run(paths, options, err, err)
    return None


def main() -> None:
    # Last thing at exit: the interpreter's teardown then skips garbage-collecting every object the imports
    # made (kfp, protobuf, nbconvert): 0.3-1 s after a local run on a busy machine, ~0.05 s with the freeze.
    atexit.register(gc.freeze)
    debug = False
    try:
        code = fast_path(sys.argv[1:])
        if code is None:
            from nb2kfp.cli import app as cli

            try:
                code = cli.run_app()
            finally:
                debug = cli.debug_enabled()
        sys.exit(code)
    except Nb2KfpError as exc:
        if debug:
            raise
        for line in exc.lines():  # messages quote outside text (labels, registries, files): never terminal controls
            for part in line.split("\n"):
                err(printable(part))
        sys.exit(exc.exit_code)
    except ImportError as exc:
        from nb2kfp.extras import missing_extra

        missing = missing_extra(exc, sys.argv[1:])
        if missing is None or debug:
            raise
        err(str(missing))
        sys.exit(missing.exit_code)
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors arrive here in standalone_mode=False; so does anything unhandled
        code = _click_exit(exc)
        if code is None:
            if debug:
                raise
            code = _unexpected(exc)  # MemoryError and RecursionError are Exceptions too
        sys.exit(code)


# Where click's exception classes live: older typer uses click itself; typer >= 0.25 a copy of it
# (typer._click.exceptions: ClickException, UsageError) with Abort and Exit in typer.exceptions.
_CLICK_MODULES = ("click.exceptions", "typer._click.exceptions", "typer.exceptions")


def _classes(name: str) -> tuple[type[BaseException], ...]:
    """Every loaded class called ``name`` in those modules (none when no such module or class is loaded)."""
    found = (getattr(sys.modules.get(module), name, None) for module in _CLICK_MODULES)
    return tuple(c for c in found if isinstance(c, type) and issubclass(c, BaseException))


def _click_exit(exc: Exception) -> int | None:
    """Show a click usage error as click does (usage, then ``Error: ...``); its exit code, or None if not click's."""
    if isinstance(exc, _classes("ClickException")):
        if isinstance(exc, _classes("UsageError")) and getattr(exc, "ctx", None) is None:
            from nb2kfp.cli.app import usage_of

            err(usage_of(sys.argv[1:]))
        exc.show()  # type: ignore[attr-defined]
        if isinstance(exc, _classes("UsageError")):
            _hint_papermill_params(sys.argv[1:])
        return int(getattr(exc, "exit_code", 1))
    if isinstance(exc, _classes("Abort")):  # Ctrl-C or end of input at a prompt
        err("Aborted!")
        return 1
    if isinstance(exc, _classes("Exit")):
        return int(getattr(exc, "exit_code", 0))
    return None


def _unexpected(exc: BaseException) -> int:
    """One line for an exception nobody handled (never a traceback: ``--debug`` shows it); exit 1."""
    if isinstance(exc, MemoryError):
        err("error: out of memory (the input is too large for this machine)")
    elif isinstance(exc, RecursionError):
        err("error: the input is nested too deeply to process")
    else:
        text = printable(" ".join(str(exc).split()))[:300]
        where = _origin(exc)
        err(f"error: unexpected {type(exc).__name__}{where}: {text or '(no message)'}")
        err("This is a bug in nb2kfp or a dependency: run again with --debug for the traceback, and report it.")
    return 1


def _origin(exc: BaseException) -> str:
    """`` in module.function`` of the innermost frame, so a report without --debug still says where."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    code = tb.tb_frame.f_code
    module = tb.tb_frame.f_globals.get("__name__", "?")
    return f" in {module}.{code.co_name}"


def _hint_papermill_params(argv: list[str]) -> None:
    """papermill writes ``-p name value``; nb2kfp takes ``-p name=value``."""
    for flag, value in itertools.pairwise(argv):
        if flag in ("-p", "--param") and "=" not in value:
            err(f"Hint: parameters are written -p {value}=VALUE (one argument), not -p {value} VALUE.")
            return
