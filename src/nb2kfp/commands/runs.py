"""``nb2kfp runs``: the local runs in ``.nb2kfp/runs``, newest first; ``runs show RUN``; ``runs clean``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nb2kfp.errors import UsageError
from nb2kfp.local_run import records
from nb2kfp.words import count


def _duration(data: dict[str, Any]) -> str:
    seconds = data.get("seconds")
    return f"{seconds:.1f}s" if isinstance(seconds, (int, float)) else "-"


def _params(data: dict[str, Any]) -> str:
    params = data.get("parameters") or {}
    return " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(params.items()))


def run_list(base: Path, report: Callable[[str], None], *, as_json: bool) -> int:
    found = records.past_runs(base)
    if as_json:
        report(json.dumps([data for _, data in found], indent=2, sort_keys=True))
        return 0
    if not found:
        report(f"no runs in {base}")
        return 0
    rows = [
        (
            folder.name,
            str(d.get("status", "?")),
            str(d.get("started", ""))[:19].replace("T", " "),
            _duration(d),
            _params(d),
        )
        for folder, d in found
    ]
    widths = [max(len(row[i]) for row in [*rows, ("RUN", "STATUS", "STARTED", "TOOK", "")]) for i in range(4)]
    for row in [("RUN", "STATUS", "STARTED", "TOOK", "PARAMETERS"), *rows]:
        report("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + "  " + row[4])
    _report_kept(report)
    return 0


def _report_kept(report: Callable[[str], None]) -> None:
    """The step processes kept warm for a next run (local_run/kept.py): this project's by step, the others'
    counted; each costs memory until it ends or `runs clean` stops it."""
    from nb2kfp.local_run import waiting

    project = str(records.project_root(Path.cwd()))
    found = waiting.processes()
    ours = [p for p in found if p["project"] == project]
    for p in ours:
        report(f"kept warm: step {p['step']} (pid {p['pid']}, {p['rss_mb']} MiB, for {p['seconds']} s)")
    others = [p for p in found if p["project"] != project]
    if others:
        total = sum(p["rss_mb"] for p in others)
        report(f"kept warm for other projects: {count(len(others), 'step process', 'step processes')} ({total} MiB)")
    if found:
        report("`nb2kfp runs clean` stops this project's (--all: every one)")


def run_show(ref: str, base: Path, report: Callable[[str], None], *, as_json: bool) -> int:
    folder, data = records.find(ref, base)
    if as_json:
        report(json.dumps(data, indent=2, sort_keys=True))
        return 0
    report(f"run {folder.name}: {data.get('status')} ({_duration(data)}), started {data.get('started')}")
    report(f"notebook {data.get('notebook')}, pipeline {data.get('pipeline')}, nb2kfp {data.get('nb2kfp_version')}")
    if data.get("parameters"):
        report(f"parameters: {_params(data)}")
    details = data.get("step_details") or {}
    steps = data.get("steps") or {}
    for step, status in sorted(steps.items(), key=lambda s: str((details.get(s[0]) or {}).get("start") or "~")):
        took = (details.get(step) or {}).get("seconds")
        report(f"  {status:<12} {step}" + (f"  {took:.2f}s" if isinstance(took, (int, float)) else ""))
    for name, value in (data.get("metrics") or {}).items():
        report(f"metric {name} = {value:g}")
    for name, text in (data.get("text_metrics") or {}).items():
        report(f"metric {name} = {text!r}")
    for name, ref_ in (data.get("models") or {}).items():
        report(f"model {name}: {ref_}")
    error = data.get("error")
    if error:
        where = f", cell {error['cell']}" if error.get("cell") else ""
        report(f"error in step {error.get('step')}{where}: {error.get('message')}")
    if data.get("running_step"):
        report(f"stopped during step {data['running_step']}")
    report(f"folder {folder}")
    for extra in ("report.html", "run.log", "pipeline.yaml"):
        if (folder / extra).exists():
            report(f"  {extra}")
    return 0


def run_clean(
    keep: int | None, base: Path, report: Callable[[str], None], *, cache: bool = False, every_project: bool = False
) -> int:
    """``nb2kfp runs clean``: this project's kept processes stopped (``every_project``: every one), the runs but the
    newest ``keep`` removed (None: none), and with ``cache`` the step cache emptied."""
    if keep is not None and keep < 0:
        raise UsageError("--keep takes a number of runs, 0 or more")
    if keep is not None:
        removed = records.clean(keep, base)
        report(f"removed {count(len(removed), 'run')} from {base}, kept the newest {keep}")
    if cache:
        folder = records.cache_folder(Path.cwd())
        entries = records.clean_cache(folder)
        report(f"emptied the step cache {folder} ({count(entries, 'entry', 'entries')})")
    from nb2kfp.local_run import kept

    project = None if every_project else str(records.project_root(Path.cwd()))
    stopped = kept.stop_all(project)
    if stopped:
        whose = "of every project" if project is None else f"of {project}"
        report(f"stopped {count(stopped, 'step process', 'step processes')} kept warm for the next run ({whose})")
    return 0
