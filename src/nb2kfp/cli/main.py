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

from nb2kfp.errors import Nb2KfpError
from nb2kfp.words import printable

_FAST_COMPILE_FLAGS = {"--check", "--changed-only", "--fail-on-write"}


def out(line: str) -> None:
    sys.stdout.write(line + "\n")


def err(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


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

        return lint.run(paths, "text", out, "--warnings-as-errors" in flags)
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
    except Exception as exc:  # click's usage errors arrive here in standalone_mode=False
        code = _click_exit(exc)
        if code is None:
            raise
        sys.exit(code)


# click's exception classes: older typer uses click itself, newer typer (0.29) a copy of it (typer._click).
_CLICK_MODULES = ("click.exceptions", "typer._click.exceptions")


def _click_exit(exc: Exception) -> int | None:
    """Show a click usage error as click does (usage, then ``Error: ...``); its exit code, or None if not click's."""
    for name in _CLICK_MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        if isinstance(exc, module.ClickException):
            if isinstance(exc, module.UsageError) and exc.ctx is None:
                from nb2kfp.cli.app import usage_of

                err(usage_of(sys.argv[1:]))
            exc.show()
            if isinstance(exc, module.UsageError):
                _hint_papermill_params(sys.argv[1:])
            return int(exc.exit_code)
        if isinstance(exc, module.Abort):
            return 1
        if isinstance(exc, module.Exit):
            return int(exc.exit_code)
    return None


def _hint_papermill_params(argv: list[str]) -> None:
    """papermill writes ``-p name value``; nb2kfp takes ``-p name=value``."""
    for flag, value in itertools.pairwise(argv):
        if flag in ("-p", "--param") and "=" not in value:
            err(f"Hint: parameters are written -p {value}=VALUE (one argument), not -p {value} VALUE.")
            return
