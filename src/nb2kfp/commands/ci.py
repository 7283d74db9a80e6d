"""``nb2kfp ci PHASE``: the one entry the GitLab CI component's jobs call.

Phases: ``lint`` (Code Quality report; fails on errors), ``compile`` (specs as artifacts), ``build`` (step images
for changed notebooks, specs pinned by digest), ``publish`` (a KFP pipeline version per changed notebook),
``report`` (commit statuses and one merge request note; without a GitLab token it only logs; GitLab errors
warn and succeed), or ``all`` of them in order. Jobs hand each other ``<output-dir>/ci.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from nb2kfp import service
from nb2kfp.delivery.ci import State, changed, code_quality, select
from nb2kfp.errors import Diagnostic, Nb2KfpError, NotebookError, Severity
from nb2kfp.ir import Pipeline

PHASES = ("lint", "compile", "build", "publish", "report")
Report = Callable[[str], None]


def _spec_path(out: Path, notebook: str) -> Path:
    return out / "specs" / (notebook.removesuffix(".ipynb") + ".pipeline.yaml")


class _Compiled:
    """Each notebook compiled once per run, when a phase first needs it; the phases share the IR."""

    def __init__(self) -> None:
        self._done: dict[str, service.Compiled | NotebookError] = {}

    def __call__(self, notebook: str) -> service.Compiled:
        """The notebook's compilation; raises its NotebookError (again) when it does not compile."""
        if notebook not in self._done:
            try:
                self._done[notebook] = service.compile_notebook(Path(notebook))
            except NotebookError as exc:
                self._done[notebook] = exc
        done = self._done[notebook]
        if isinstance(done, NotebookError):
            raise done
        return done

    def pipeline(self, notebook: str) -> Pipeline | None:
        try:
            return self(notebook).pipeline
        except NotebookError:
            return None


def _lint(state: State, notebooks: list[str], compiled: _Compiled, out: Path, report: Report) -> bool:
    from nb2kfp.atomic import write_text

    found: list[Diagnostic] = []
    for nb in notebooks:
        try:
            diags = compiled(nb).diagnostics
        except NotebookError as exc:
            diags = list(exc.diagnostics)
        entry = state.entry(nb)
        entry.diagnostics = [d.as_dict() for d in diags]
        entry.status = "failed" if any(d.severity is Severity.ERROR for d in diags) else "pending"
        entry.failure = "lint errors" if entry.status == "failed" else None
        found.extend(diags)
        for d in diags:
            report(d.format())
    write_text(out / "gl-code-quality-report.json", json.dumps(code_quality(found), indent=2) + "\n")
    errors = sum(d.severity is Severity.ERROR for d in found)
    report(f"lint: {len(notebooks)} notebook(s), {errors} error(s), {len(found) - errors} warning(s)")
    return errors == 0


def _compile(state: State, notebooks: list[str], compiled: _Compiled, out: Path, report: Report) -> bool:
    from nb2kfp.atomic import write_text

    ok = True
    for nb in notebooks:
        entry = state.entry(nb)
        target = _spec_path(out, nb)
        try:
            text = compiled(nb).spec()
        except NotebookError as exc:
            entry.status, entry.failure, ok = "failed", "does not compile", False
            for line in exc.lines():
                report(line)
            continue
        write_text(target, text)
        entry.spec = str(target)
        report(f"compile: {nb} -> {target}")
    return ok


def _build(
    state: State, notebooks: list[str], compiled: _Compiled, out: Path, registry_text: str, report: Report
) -> bool:
    from nb2kfp.atomic import write_text
    from nb2kfp.backends import kfp_spec
    from nb2kfp.oci.registry import Registry

    registry = Registry.parse(registry_text)
    for nb in notebooks:
        entry = state.entry(nb)
        if entry.status == "failed" or not entry.changed:
            continue
        pinned = service.build_and_pin(Path(nb), compiled(nb).pipeline, registry, report)
        write_text(_spec_path(out, nb), kfp_spec.render(pinned.pipeline))
        entry.image = pinned.image.ref
        done = "built and pushed" if pinned.image.built else "already in the registry"
        report(f"build: {nb}: {pinned.image.ref} ({done})")
    return True


def _publish(state: State, notebooks: list[str], compiled: _Compiled, host: str, report: Report) -> bool:
    from nb2kfp.clients import kfp as kfp_client

    host = kfp_client.normalize_host(host)
    token = kfp_client.token_from_env()
    ok = True
    for nb in notebooks:
        entry = state.entry(nb)
        if entry.status == "failed" or not entry.changed or not entry.spec:
            continue
        this = compiled(nb)
        try:  # the spec as published: pinned to its built step image when the build phase made one
            service.check_size(Path(nb), service.pin(this.pipeline, entry.image) if entry.image else this.pipeline)
        except NotebookError as exc:
            entry.status, entry.failure, ok = "failed", "too large for KFP", False
            for line in exc.lines():
                report(line)
            continue
        commit = service.commit_of(Path(nb), None)
        version = service.version_of(this, commit)
        published = service.publish(this, Path(entry.spec), host, token, version, f"{nb} at {commit[:12]}")
        entry.kfp_url = published.url
        report(
            f"publish: {nb}: {this.pipeline.name} {version} ({'created' if published.created else 'already there'}) "
            f"{published.url}"
        )
    return ok


def _report(state: State, compiled: _Compiled, report: Report) -> bool:
    """Commit statuses and the merge request note; never fails the pipeline on GitLab trouble."""
    try:
        from nb2kfp.delivery import report as mr_report

        body = mr_report.render_from_state(state, os.environ, compiled.pipeline)
        from nb2kfp.clients.gitlab import GitLabProject

        project = GitLabProject.from_env()
        if project is None:
            report("report: no GitLab token (NB2KFP_GITLAB_TOKEN or GITLAB_TOKEN): logging only")
            report(body)
            return True
        sha = os.environ.get("CI_COMMIT_SHA", "")
        key = os.environ.get(mr_report.REPORT_KEY_ENV, "")
        for nb, entry in sorted(state.notebooks.items()):
            ok = entry.status != "failed"
            project.set_status(
                sha,
                "success" if ok else "failed",
                mr_report.status_name(nb, key),
                "pipeline compiled" if ok else (entry.failure or "failed"),
                entry.kfp_url,
            )
        iid = os.environ.get("CI_MERGE_REQUEST_IID")
        if iid:
            note = project.upsert_mr_note(int(iid), body, key)
            report(f"report: merge request !{iid} note {note} updated")
    except Nb2KfpError as exc:
        report(f"warning: report: {exc}")
    return True


def run(phase: str, pattern: str, out: Path, registry: str | None, host: str | None, report: Report) -> int:
    phases = PHASES if phase == "all" else (phase,)
    notebooks = select(pattern)
    state = State.load(out)
    state.notebooks = {k: v for k, v in state.notebooks.items() if k in notebooks}  # this run's selection only
    which, why = changed(notebooks)
    for nb in notebooks:
        state.entry(nb).changed = nb in which
    report(f"nb2kfp ci {phase}: {len(notebooks)} notebook(s), {len(which)} to build/publish ({why})")
    if not host:
        from nb2kfp.clients.kfp import endpoint_from_env

        host = endpoint_from_env()
    ok = True
    if set(phases) - {"report"}:  # each CI job starts afresh: URL-catalog components into this job's cache
        service.fetch_components([Path(nb) for nb in notebooks], report)  # the network step; lint reports misses
    compiled = _Compiled()  # each notebook compiled at most once, after the fetch, by the first phase needing it
    for name in phases:
        if name == "lint":
            ok = _lint(state, notebooks, compiled, out, report) and ok
        elif name == "compile":
            ok = _compile(state, notebooks, compiled, out, report) and ok
        elif name == "build" and registry:
            ok = _build(state, notebooks, compiled, out, registry, report) and ok
        elif name == "publish" and host:
            ok = _publish(state, notebooks, compiled, host, report) and ok
        elif name == "report":
            for entry in state.notebooks.values():
                if entry.status == "pending":
                    entry.status = "success"
            _report(state, compiled, report)
        state.save(out)
    return 0 if ok else 1
