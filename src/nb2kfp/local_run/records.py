"""What a local run leaves behind: ``result.json`` in its run folder, and the list of past runs.

The record is written when the run starts (``"status": "running"`` with nb2kfp's pid) and again when it
ends, always whole (temp file + rename): a run killed outright stays ``running`` and reads as ``lost``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nb2kfp import __version__
from nb2kfp.atomic import write_text
from nb2kfp.errors import UsageError

RUNS = Path(".nb2kfp") / "runs"
CACHE = Path(".nb2kfp") / "cache"  # step results local runs reuse (nb2kfp.local_run.cache), in the project's root
_PROJECT_MARKS = (".git", "pyproject.toml", "nb2kfp.toml")
RESULT = "result.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_FAILURE = re.compile(
    r"\[nb2kfp\] step '(?P<step>[^']+)' failed(?: in .*, cell (?P<cell>\d+), line (?P<line>\d+))?: (?P<message>.*)"
)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def project_root(start: Path) -> Path:
    """A notebook's project: the nearest folder at or above ``start`` (the notebook's folder) that holds a
    ``.git``, ``pyproject.toml`` or ``nb2kfp.toml``; else ``start`` itself."""
    folder = start.resolve()
    for candidate in [folder, *folder.parents]:
        if any((candidate / mark).exists() for mark in _PROJECT_MARKS):
            return candidate
    return folder


def cache_folder(start: Path) -> Path:
    """The step cache of the project of ``start`` (a notebook's folder, or the current one), wherever runs start."""
    return project_root(start) / CACHE


def new_run_dir(base: Path, pipeline: str, run_name: str | None) -> Path:
    """``--run-name`` as given (it must be new), else ``<pipeline>-<date>-<time>``."""
    if run_name is not None:
        if not _NAME.match(run_name):
            raise UsageError(f"--run-name {run_name!r}: use letters, digits, '.', '_' and '-'")
        if (base / run_name).exists():
            raise UsageError(f"--run-name {run_name}: {base / run_name} exists already")
        return base / run_name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = base / f"{pipeline}-{stamp}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = base / f"{pipeline}-{stamp}-{n}"
    return candidate


@dataclass
class StepRecord:
    status: str = "pending"
    start: str | None = None
    seconds: float | None = None


@dataclass
class RunRecord:
    name: str
    notebook: str
    pipeline: str
    run_dir: Path
    spec: Path
    parameters: dict[str, Any]
    steps: dict[str, StepRecord]
    status: str = "running"
    started: str = field(default_factory=now)
    seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    text_metrics: dict[str, str] = field(default_factory=dict)  # metrics set to a str: shown, not KFP metrics
    error: dict[str, Any] | None = None
    models: dict[str, str] = field(default_factory=dict)
    running_step: str | None = None
    report: Path | None = None  # report.html, when the run makes one
    executed: Path | None = None  # the executed notebook (papermill's output notebook), when the run makes one
    _clock: float = field(default_factory=time.monotonic)

    def on_event(self, step: str, status: str, seconds: float | None) -> None:
        record = self.steps.setdefault(step, StepRecord())
        record.status = status
        if status == "running":
            record.start = now()
            self.running_step = step
        else:
            record.seconds = None if seconds is None else round(seconds, 3)
            if self.running_step == step and status != "interrupted":
                self.running_step = None

    def failed(self, log_tail: list[str], step: str) -> None:
        """The error of the failed step, from the line the step runtime logs last."""
        found = next((m for line in reversed(log_tail) if (m := _FAILURE.search(line))), None)
        self.error = {"step": step, "cell": None, "line": None, "message": "see run.log"}
        if found:
            cell, line = found.group("cell"), found.group("line")
            self.error.update(
                step=found.group("step"),
                cell=int(cell) if cell else None,
                line=int(line) if line else None,
                message=found.group("message"),
            )

    def finish(self, status: str) -> None:
        self.status = status
        self.seconds = round(time.monotonic() - self._clock, 3)
        for record in self.steps.values():
            if record.status in ("pending", "running"):
                record.status = "not run" if record.status == "pending" else status

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nb2kfp_version": __version__,
            "name": self.name,
            "notebook": self.notebook,
            "pipeline": self.pipeline,
            "status": self.status,
            "started": self.started,
            "seconds": self.seconds,
            "parameters": self.parameters,
            "steps": {name: r.status for name, r in self.steps.items()},
            "step_details": {name: vars(r) for name, r in self.steps.items()},
            "metrics": self.metrics,
            "text_metrics": self.text_metrics,
            "error": self.error,
            "models": self.models,
            "spec": str(self.spec),
            "run_dir": str(self.run_dir),
            "report": str(self.report) if self.report else None,
            "executed_notebook": str(self.executed) if self.executed else None,
        }
        if self.status == "running":
            data["pid"] = os.getpid()
        if self.status == "interrupted":
            data["running_step"] = self.running_step
        return data

    def write(self) -> None:
        write_text(self.run_dir / RESULT, json.dumps(self.as_dict(), indent=2, sort_keys=True) + "\n")


# -- past runs ------------------------------------------------------------------------------
def load(run_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((run_dir / RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("status") == "running" and not _alive(data.get("pid")):
        data["status"] = "lost"  # nb2kfp was killed before it could say how the run ended
    return data


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def past_runs(base: Path = RUNS) -> list[tuple[Path, dict[str, Any]]]:
    """Run folders with a readable record, newest first."""
    found = []
    for folder in base.iterdir() if base.is_dir() else []:
        data = load(folder) if folder.is_dir() else None
        if data is not None:
            found.append((folder, data))
    found.sort(key=lambda item: (str(item[1].get("started", "")), item[0].name), reverse=True)
    return found


def find(ref: str, base: Path = RUNS) -> tuple[Path, dict[str, Any]]:
    """A run by folder name (or a unique start of it), or a run folder's path."""
    path = Path(ref)
    if (path / RESULT).is_file():
        data = load(path)
        if data is not None:
            return path, data
    runs = past_runs(base)
    exact = [r for r in runs if r[0].name == ref]
    matches = exact or [r for r in runs if r[0].name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no run {ref!r} in {base} (nb2kfp runs lists them)")
    raise UsageError(f"{ref!r} names {len(matches)} runs: {', '.join(r[0].name for r in matches[:5])}")


def clean(keep: int, base: Path = RUNS) -> list[Path]:
    """Remove all but the newest ``keep`` runs (never one still running); the removed folders."""
    removed = []
    for folder, data in past_runs(base)[keep:]:
        if data.get("status") == "running":
            continue
        shutil.rmtree(folder)
        removed.append(folder)
    return removed


def clean_cache(folder: Path) -> int:
    """Empty the step cache (its entries and its artifact key); the number of entries it held."""
    if not folder.is_dir():
        return 0
    entries = len(list(folder.glob("*.json")))
    shutil.rmtree(folder)
    return entries
