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

from nb2kfp.delivery.ci import State, changed, code_quality, select
from nb2kfp.errors import Diagnostic, Nb2KfpError, NotebookError, Severity

PHASES = ("lint", "compile", "build", "publish", "report")
Report = Callable[[str], None]


def _spec_path(out: Path, notebook: str) -> Path:
    return out / "specs" / (notebook.removesuffix(".ipynb") + ".pipeline.yaml")


def _lint(state: State, notebooks: list[str], out: Path, report: Report) -> bool:
    from nb2kfp.atomic import write_text
    from nb2kfp.commands.lint import diagnostics_for

    found: list[Diagnostic] = []
    for nb in notebooks:
        diags = diagnostics_for(Path(nb))
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


def _compile(state: State, notebooks: list[str], out: Path, report: Report) -> bool:
    from nb2kfp.atomic import write_text
    from nb2kfp.commands.compile import compile_notebook

    ok = True
    for nb in notebooks:
        entry = state.entry(nb)
        target = _spec_path(out, nb)
        try:
            compiled = compile_notebook(Path(nb), target)
        except NotebookError as exc:
            entry.status, entry.failure, ok = "failed", "does not compile", False
            for line in exc.lines():
                report(line)
            continue
        write_text(target, compiled.text)
        entry.spec = str(target)
        report(f"compile: {nb} -> {target}")
    return ok


def _build(state: State, notebooks: list[str], out: Path, registry_text: str, report: Report) -> bool:
    from nb2kfp.atomic import write_text
    from nb2kfp.backends import kfp_spec
    from nb2kfp.clients.registry import Registry, credentials_for
    from nb2kfp.commands.build import pin
    from nb2kfp.config import find_settings
    from nb2kfp.frontend.builder import build
    from nb2kfp.images import requirements
    from nb2kfp.images import step_image as images

    registry = Registry.parse(registry_text)
    creds = credentials_for(registry.host)
    for nb in notebooks:
        entry = state.entry(nb)
        if entry.status == "failed" or not entry.changed:
            continue
        pipeline = build(Path(nb), find_settings(Path(nb).parent)).pipeline
        reqs = requirements.resolve(Path(nb), pipeline.modules)
        image = images.build_image(pipeline, reqs, pipeline.base_image, registry, creds, report, quiet=True)
        write_text(_spec_path(out, nb), kfp_spec.render(pin(pipeline, image.ref)))
        entry.image = image.ref
        done = "built and pushed" if image.built else "already in the registry"
        report(f"build: {nb}: {image.ref} ({done})")
    return True


def _publish(state: State, notebooks: list[str], host: str, report: Report) -> bool:
    from nb2kfp.clients import kfp as kfp_client
    from nb2kfp.commands.compile import stamp
    from nb2kfp.commands.publish import commit_of
    from nb2kfp.config import find_settings
    from nb2kfp.frontend.builder import build
    from nb2kfp.security import policy

    host = kfp_client.normalize_host(host)
    token = kfp_client.token_from_env()
    for nb in notebooks:
        entry = state.entry(nb)
        if entry.status == "failed" or not entry.changed or not entry.spec:
            continue
        settings = find_settings(Path(nb).parent)
        policy.check_endpoint(settings, host)
        policy.check_pinned(settings, policy.spec_images(Path(entry.spec).read_text(encoding="utf-8")), nb)
        pipeline = build(Path(nb), settings).pipeline
        commit = commit_of(Path(nb), None)
        version = kfp_client.version_name(commit, stamp(pipeline.source_hash, settings))
        published = kfp_client.publish(
            Path(entry.spec), pipeline.name, version, host, token, description=f"{nb} at {commit[:12]}"
        )
        entry.kfp_url = published.url
        report(
            f"publish: {nb}: {pipeline.name} {version} ({'created' if published.created else 'already there'}) "
            f"{published.url}"
        )
    return True


def _report(state: State, report: Report) -> bool:
    """Commit statuses and the merge request note; never fails the pipeline on GitLab trouble."""
    try:
        from nb2kfp.delivery import report as mr_report

        body = mr_report.render_from_state(state, os.environ)
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
        from nb2kfp.commands.catalog import run_fetch

        run_fetch([Path(nb) for nb in notebooks], report)  # the network step; lint reports what is missing
    for name in phases:
        if name == "lint":
            ok = _lint(state, notebooks, out, report) and ok
        elif name == "compile":
            ok = _compile(state, notebooks, out, report) and ok
        elif name == "build" and registry:
            ok = _build(state, notebooks, out, registry, report) and ok
        elif name == "publish" and host:
            ok = _publish(state, notebooks, host, report) and ok
        elif name == "report":
            for entry in state.notebooks.values():
                if entry.status == "pending":
                    entry.status = "success"
            _report(state, report)
        state.save(out)
    return 0 if ok else 1
