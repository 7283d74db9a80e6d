"""``nb2kfp monitor MODEL_IMAGE --requests SOURCE``: the model's monitoring pipeline, written as a tagged notebook.

``prepare`` reads the model image's reference sample (its features) from the registry and writes
``monitor.ipynb`` (:mod:`nb2kfp.monitor.pipeline`); the CLI then runs it as ``nb2kfp run --local`` does, or
publishes it (a KFP pipeline version, and with ``--schedule`` a recurring run). ``verdict`` reads what a local run's
drift step wrote.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nb2kfp.errors import RunError, UsageError

Report = Callable[[str], None]


@dataclass(frozen=True)
class Verdict:
    drifted: list[str]
    features: int
    report: Path
    figures: dict[str, object]


def prepare(
    image: str,
    requests: str,
    alpha: float,
    correction: str,
    folder: Path | None,
    step_image: str | None,
    *,
    local: bool,
    insecure: bool,
    report: Report,
    registry_secret: str | None = None,
) -> Path:
    from nb2kfp import extras

    extras.require("nb2kfp monitor", "oras", "requests", "pandas", "pyarrow", "scipy")
    from nb2kfp.monitor import pipeline
    from nb2kfp.serving import oci, reference

    if local:
        source = Path(requests)
        if not source.exists():
            raise UsageError(f"--requests {requests}: no such file or folder")
        requests = str(source.resolve())
    model, files = oci.read_with_files(image, (reference.DATA, reference.SCHEMA), insecure=insecure)
    if reference.SCHEMA not in files or reference.DATA not in files:
        raise UsageError(
            f"{image}: the image records no reference sample (tag the training step model:VARIABLE with "
            "reference:VARIABLE, or nb2kfp model build PATH --reference FILE)"
        )
    schema = json.loads(files[reference.SCHEMA])
    features = [str(f["name"]) for f in schema["features"]]
    name = model.meta.name
    content = pipeline.notebook(name, model.ref, features, requests, alpha, correction, step_image, registry_secret)
    path = pipeline.write(folder or Path(".nb2kfp") / "monitors" / model.meta.name, content)
    report(f"monitoring pipeline of {model.ref}: {path} ({len(features)} features, reference {schema['sha256'][:12]})")
    return path


def step_image(registry: str, report: Report) -> str:
    """The monitoring image in ``registry``, pinned by digest (built offline the first time, then reused)."""
    from nb2kfp.monitor import image

    ref = image.push(registry, image.base_image(Path.cwd()), report)
    report(f"monitoring image {ref}")
    return ref


def verdict(run_dir: Path) -> Verdict:
    """What the drift step of the run in ``run_dir`` found."""
    from nb2kfp.monitor.pipeline import STEP

    folder = run_dir / "files" / STEP
    try:
        figures = json.loads((folder / "drift.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise RunError(f"{run_dir}: the drift step wrote no drift.json") from None
    return Verdict(list(figures["drifted_features"]), len(figures["features"]), folder / "drift-report.html", figures)


def issue_body(found: Verdict, image: str) -> str:
    """The GitLab issue's text: the verdict, each feature's test and p-values, where the report is."""
    features = found.figures.get("features") or {}
    assert isinstance(features, dict)
    lines = [
        f"Drift in **{', '.join(found.drifted)}** ({len(found.drifted)} of {found.features} features) of the requests "
        f"served by `{image}`, against its reference sample.",
        "",
        "| feature | kind | statistic | p-value | corrected | drifted |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in features.items():
        mark = "yes" if f["drifted"] else ""
        figures = f"{f['statistic']:.4g} | {f['p_value']:.3g} | {f['adjusted_p_value']:.3g}"
        lines.append(f"| {name} | {f['kind']} | {figures} | {mark} |")
    job = os.environ.get("CI_JOB_URL")
    lines += ["", f"Report: `{found.report}`" + (f" (artifacts of {job})" if job else "")]
    return "\n".join(lines) + "\n"


def notify(found: Verdict, image: str, report: Report) -> None:
    """Open or update the model's drift issue in the CI job's GitLab project (NB2KFP_GITLAB_TOKEN or GITLAB_TOKEN,
    CI_SERVER_URL, CI_PROJECT_ID); without a token, say what would have been written."""
    from nb2kfp.clients.gitlab import GitLabProject

    name = image.split("@")[0].rsplit("/", 1)[-1]
    title = f"Drift in the requests served by {name}"
    project = GitLabProject.from_env()
    if project is None:
        report(f"no GitLab token (NB2KFP_GITLAB_TOKEN or GITLAB_TOKEN): no issue opened ({title})")
        return
    with project:
        iid, opened = project.upsert_issue(title, issue_body(found, image), f"drift-{name}", ("drift",))
    report(f"GitLab issue #{iid} {'opened' if opened else 'updated'}: {title}")


def cron_fields(text: str) -> str:
    """KFP's cron (six fields, seconds first) from five (``0 6 * * *``: 06:00 every day) or six."""
    fields = text.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6 or not all(re.fullmatch(r"[0-9*/,?A-Za-z-]+", f) for f in fields):
        raise UsageError(f"--schedule {text!r}: give a cron expression, e.g. '0 6 * * *' (06:00 every day)")
    return " ".join(fields)


def schedule(notebook: Path, host: str | None, cron: str, report: Report) -> int:
    """Publish the monitoring pipeline and make a KFP recurring run of it on ``cron``."""
    import tempfile

    from nb2kfp import extras, service
    from nb2kfp.clients import kfp as kfp_client

    cron = cron_fields(cron)
    host = host or kfp_client.endpoint_from_env()
    if host is None:
        raise UsageError("--schedule: give --host URL (or set NB2KFP_KFP_ENDPOINT or KF_PIPELINES_ENDPOINT)")
    extras.require("nb2kfp monitor --schedule", "kfp", "kfp_server_api")
    host, token = kfp_client.normalize_host(host), kfp_client.token_from_env()
    compiled = service.compile_for_kfp(notebook, report, None)
    version = service.version_of(compiled)
    with tempfile.TemporaryDirectory(prefix="nb2kfp-monitor-") as tmp:
        spec = Path(tmp) / "pipeline.yaml"
        spec.write_text(compiled.spec(), encoding="utf-8")
        published = service.publish(compiled, spec, host, token, version, compiled.pipeline.description)
    name = compiled.pipeline.name
    job = kfp_client.schedule(published, host, token, cron, f"{name} {cron}", name)
    report(f"{name} version {version}: {published.url}; recurring run {job} on '{cron}' in experiment {name}")
    return 0
