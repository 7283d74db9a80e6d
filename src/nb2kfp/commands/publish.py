"""``nb2kfp publish``: compile notebooks and upload each as a KFP pipeline version (or write the
Kubernetes custom resources for it); and ``nb2kfp run NB --host URL``: compile and run on a KFP server.

A version is named ``<commit[:12]>-<stamp[:12]>``: the commit (``--commit``, ``CI_COMMIT_SHA`` or git's
HEAD) and the compile stamp (notebook content, repository settings, nb2kfp version), so publishing the
same commit twice uploads nothing. The endpoint is ``--host``, else ``NB2KFP_KFP_ENDPOINT`` or KFP's own
``KF_PIPELINES_ENDPOINT``; the bearer token comes from :func:`nb2kfp.clients.kfp.token_from_env`.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2kfp import extras
from nb2kfp.config import Settings, find_settings
from nb2kfp.errors import NotebookError, RunError, UsageError
from nb2kfp.ir import Pipeline
from nb2kfp.security import policy
from nb2kfp.words import count

_MARK = {"PENDING": "..", "RUNNING": "..", "SUCCEEDED": "ok", "FAILED": "FAILED", "SKIPPED": "skip"}


@dataclass(frozen=True)
class _Compiled:
    pipeline: Pipeline
    text: str
    stamp: str
    settings: Settings


def _compile(notebook: Path, report_error: Callable[[str], None]) -> _Compiled:
    from nb2kfp.backends import kfp_spec
    from nb2kfp.commands.compile import stamp
    from nb2kfp.frontend.builder import build

    settings = find_settings(notebook.parent)
    result = build(notebook, settings)
    for d in result.diagnostics:
        report_error(d.format())
    policy.check_pinned(settings, (s.image for s in result.pipeline.steps), str(notebook))  # before any output
    mark = stamp(result.pipeline.source_hash, settings)
    return _Compiled(result.pipeline, kfp_spec.render(result.pipeline, mark), mark, settings)


def commit_of(notebook: Path, commit: str | None) -> str:
    """``--commit``, else GitLab's ``CI_COMMIT_SHA``, else git's HEAD where the notebook is, else ``local``."""
    from nb2kfp import git

    if commit:
        return commit.strip()
    if os.environ.get("CI_COMMIT_SHA"):
        return os.environ["CI_COMMIT_SHA"].strip()
    try:
        return git.rev_parse("HEAD", notebook.resolve().parent)
    except RunError:
        return "local"


def run(
    notebooks: list[Path],
    host: str | None,
    manifests: Path | None,
    commit: str | None,
    report: Callable[[str], None],
    report_error: Callable[[str], None],
    kfp_version: str | None = None,
) -> int:
    from nb2kfp.backends import kfp_manifests
    from nb2kfp.clients import kfp as kfp_client

    if kfp_version is not None:
        if manifests is None:
            raise UsageError("--kfp-version picks the shape of the --manifests resources: give --manifests DIR")
        kfp_manifests.crd_shape(kfp_version)  # a bad version is a usage error before anything is compiled
    if host is not None and manifests is not None:
        raise UsageError("give --host URL (upload to KFP) or --manifests DIR (write Kubernetes resources), not both")
    if host is None and manifests is None:
        host = kfp_client.endpoint_from_env()
        if host is None:
            raise UsageError(
                "give --host URL (upload to KFP; or set NB2KFP_KFP_ENDPOINT or KF_PIPELINES_ENDPOINT) "
                "or --manifests DIR (write Kubernetes resources)"
            )
    if host is not None:
        extras.require("nb2kfp publish --host", "kfp", "kfp_server_api")
        host = kfp_client.normalize_host(host)
    token = kfp_client.token_from_env() if host is not None else None
    failed = False
    for notebook in notebooks:
        try:
            compiled = _compile(notebook, report_error)
        except NotebookError as exc:
            for line in exc.lines():
                report_error(line)
            failed = True
            continue
        name = compiled.pipeline.name
        version = kfp_client.version_name(commit_of(notebook, commit), compiled.stamp)
        description = compiled.pipeline.description
        with tempfile.TemporaryDirectory(prefix="nb2kfp-publish-") as tmp:
            spec = Path(tmp) / "pipeline.yaml"
            spec.write_text(compiled.text, encoding="utf-8")
            if manifests is not None:
                paths = kfp_manifests.write_manifests(spec, name, version, manifests, description, kfp_version)
                report(f"{notebook} -> {', '.join(str(p) for p in paths)}")
                continue
            assert host is not None
            policy.check_endpoint(compiled.settings, host)
            try:
                published = kfp_client.publish(spec, name, version, host, token, description)
            except RunError as exc:  # the server is down or refuses us: the next notebook would fare no better
                report_error(f"{notebook}: {exc}")
                return 1
        what = "published" if published.created else "already there"
        report(f"{notebook}: {name} version {version} {what}: {published.url}")
    return 1 if failed else 0


def remote_run(
    notebook: Path,
    host: str,
    params: list[str],
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
    from nb2kfp.backends import kfp_spec
    from nb2kfp.clients import kfp as kfp_client
    from nb2kfp.local_run.params import as_arguments, parameters_of

    extras.require("nb2kfp run --host", "kfp", "kfp_server_api")
    host = kfp_client.normalize_host(host)
    token = kfp_client.token_from_env()
    compiled = _compile(notebook, report_error)
    policy.check_endpoint(compiled.settings, host)
    pipeline = compiled.pipeline
    given = parameters_of(pipeline, param_files or [], param_yaml or [], params)[0]
    arguments: dict[str, Any] = dict(as_arguments(pipeline, given))
    tasks = {kfp_spec.task_name(s): s.name for s in pipeline.steps}
    run_name = f"{pipeline.name} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    width = max((len(s) for s in tasks.values()), default=4)

    def on_event(task: str, state: str) -> None:
        report_error(f"  {_MARK.get(state, state.lower()):>6}  {tasks.get(task, task):<{width}}")

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nb2kfp-run-") as tmp:
        spec = Path(tmp) / "pipeline.yaml"
        spec.write_text(compiled.text, encoding="utf-8")
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
