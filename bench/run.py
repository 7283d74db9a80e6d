"""nb2kfp's benchmark suite: ``python bench/run.py [--quick]`` (``make bench``).

Measures nb2kfp against Kale 2.3.0 (installed by the bench into its own venv) in the same run, prints a
table and writes every raw sample to bench/results/latest.json. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import kale_peer  # noqa: E402
import measure  # noqa: E402
import suite_compile  # noqa: E402
import suite_data  # noqa: E402
import suite_fast  # noqa: E402
import suite_run  # noqa: E402
import suite_speed  # noqa: E402
from context import ROOT, Ctx, log  # noqa: E402
from report import Results, render  # noqa: E402

SUITES = {"compile": suite_compile, "fast": suite_fast, "run": suite_run, "data": suite_data, "speed": suite_speed}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick",
        action="store_true",
        help="2 repetitions (Kale's pipeline runs: 1, and none of the examples), 256 MiB data",
    )
    p.add_argument("--reps", type=int, help="repetitions of each measurement (default 5, --quick 2)")
    p.add_argument("--data-mb", type=int, help="size of the value passed between steps (default 1024, --quick 256)")
    p.add_argument("--only", action="append", choices=list(SUITES), help="run only these suites (repeatable)")
    p.add_argument("--no-kale", action="store_true", help="measure nb2kfp only")
    p.add_argument("--kale-venv", type=Path, default=kale_peer.DEFAULT_VENV, help="Kale's venv (created if missing)")
    p.add_argument("--json", type=Path, default=BENCH / "results" / "latest.json", help="where to write the JSON")
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch folder (notebooks, outputs)")
    args = p.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 5)
    args.data_mb = args.data_mb or (256 if args.quick else 1024)
    if args.reps < 1 or args.data_mb < 2:
        p.error("--reps must be >= 1 and --data-mb >= 2")
    return args


def _version(dist: str, python: str | None = None) -> str:
    if python is None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    try:
        return subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _git_rev() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _nb2kfp_location() -> str:
    """Where the measured nb2kfp lives (the checkout when installed editable, else site-packages)."""
    spec = importlib.util.find_spec("nb2kfp")
    return str(Path(spec.origin).parent) if spec and spec.origin else "not found"


def meta(args: argparse.Namespace, ctx: Ctx, git: str) -> dict[str, object]:
    kale = ctx.kale
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "reps": args.reps,
        "quick": args.quick,
        "data_mb": args.data_mb,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        },
        "nb2kfp": {
            "version": _version("nb2kfp"),
            "git": git,
            "kfp": _version("kfp"),
            "command": ctx.nb2kfp,
            "imported_from": _nb2kfp_location(),
        },
        "kale": {
            "venv": str(kale.venv) if kale else None,
            "error": kale.error if kale else "--no-kale",
            "version": _version("kubeflow-kale", str(kale.python)) if kale and kale.available else None,
            "kfp": _version("kfp", str(kale.python)) if kale and kale.available else None,
            "installed_now": kale.installed_now if kale else False,
            "install_seconds": round(kale.install_seconds, 1) if kale else 0,
        },
    }


def headline(ctx: Ctx, git: str) -> str:
    kale = _version("kubeflow-kale", str(ctx.kale.python)) if ctx.kale and ctx.kale.available else "n/a"
    where = _nb2kfp_location()
    source = git if where.startswith(str(ROOT)) else f"installed in {where}"
    return (
        f"nb2kfp {_version('nb2kfp')} ({source}) vs Kale {kale}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.platform()}; {ctx.results.meta['date']}; "
        f"{ctx.reps} repetitions, data {ctx.data_mb} MiB"
    )


def main(argv: list[str]) -> int:
    args = parse(argv)
    started = time.monotonic()
    git = _git_rev()
    scratch = Path(tempfile.mkdtemp(prefix="bench-nb2kfp-", dir=tempfile.gettempdir()))
    (scratch / "tmp").mkdir()
    kale = None if args.no_kale else kale_peer.ensure(args.kale_venv, log)
    if kale is not None and not kale.available:
        log(f"Kale will not be measured: {kale.error}")
    # TMPDIR inside the scratch folder: what the tools leave in temp folders goes when the scratch does
    env = measure.base_env(TMPDIR=str(scratch / "tmp"))
    ctx = Ctx(args.reps, args.quick, args.data_mb, scratch, Results({}), kale, env=env)
    results = ctx.results
    results.meta = meta(args, ctx, git)
    log(f"{args.reps} repetitions; scratch folder {scratch}")
    try:
        for name in args.only or list(SUITES):
            suite_started = time.monotonic()
            SUITES[name].run_suite(ctx)
            results.meta[f"{name}_seconds"] = round(time.monotonic() - suite_started, 1)
            results.write_json(args.json)  # after each suite: a partial file survives an interrupted run
    finally:
        from nb2kfp.local_run import kept

        kept.stop_all()  # what the incremental runs kept warm
        if not args.keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    results.meta["total_seconds"] = round(time.monotonic() - started, 1)
    results.meta["git_at_end"] = git_end = _git_rev()
    editable = _nb2kfp_location().startswith(str(ROOT))
    if editable and git_end != git:  # a commit or an edit during the run changes what is measured
        results.notes.append(f"the nb2kfp checkout changed during the run ({git} -> {git_end})")
    results.notes.append(
        f"{args.reps} repetitions, interleaved; medians of successful runs. ratio = nb2kfp / Kale (lower is better)."
    )
    results.write_json(args.json)
    print(headline(ctx, git))
    print(render(results), end="")
    print(f"\nraw samples: {args.json} ({results.meta['total_seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
