"""``nb2kfp run NB --local``: compile, then run the pipeline here with kfp.local, step by step."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nb2kfp import extras
from nb2kfp.config import find_settings
from nb2kfp.errors import UsageError
from nb2kfp.ir import ParamValue, Pipeline
from nb2kfp.words import count

_MARK = {"running": "..", "succeeded": "ok", "failed": "FAILED"}


def parse_overrides(pipeline: Pipeline, items: list[str]) -> dict[str, ParamValue]:
    """``-p name=value`` items as the pipeline's arguments (encoded as :func:`kfp_spec.argument` does)."""
    from nb2kfp.backends.kfp_spec import argument
    from nb2kfp.frontend.params import coerce

    values: dict[str, ParamValue] = {}
    names = {p.name for p in pipeline.parameters}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep:
            raise UsageError(f"-p {item!r}: write -p name=value")
        if name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise UsageError(f"-p {name}: the pipeline has no such parameter (parameters: {known})")
        try:
            values[name] = argument(pipeline, pipeline.parameter(name), coerce(pipeline.parameter(name), text))
        except ValueError as exc:
            raise UsageError(f"-p {item}: {exc}") from None
    return values


def _new_run_dir(base: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate = base / f"{name}-{stamp}"
    n = 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}-{stamp}-{n}"
    return candidate


def _in_image(notebook: Path, pipeline: Pipeline, registry_text: str | None, report: Callable[[str], None]) -> Pipeline:
    """Build the step image (pushing it when a registry is given) and pin the pipeline to it."""
    from nb2kfp.backends import images, requirements
    from nb2kfp.commands.build import pin
    from nb2kfp.registry import Registry, credentials_for

    registry = Registry.parse(registry_text) if registry_text else None
    creds = credentials_for(registry.host) if registry else None
    reqs = requirements.resolve(notebook, pipeline.modules)
    image = images.build_image(pipeline, reqs, pipeline.base_image, registry, creds, report, quiet=True)
    images.pull(image, creds)
    report(f"step image {image.ref} ({'built' if image.built else 'up to date'})")
    return pin(pipeline, image.ref)


def _origin(notebook: Path, run_dir: Path) -> dict[str, str]:
    """Where a model came from, recorded on its image: the notebook, its commit (when in git), the run."""
    from nb2kfp import git
    from nb2kfp.errors import RunError

    try:
        commit = git.rev_parse("HEAD", notebook.resolve().parent)
    except (RunError, OSError):  # not a git work tree, or no git here: the image records no commit
        commit = ""
    return {"notebook": notebook.name, "commit": commit, "run": run_dir.name}


def _package_models(
    notebook: Path, run_dir: Path, pipeline: Pipeline, prefix: str, report: Callable[[str], None]
) -> dict[str, str]:
    """Each model:VARIABLE the run produced becomes the image PREFIX/<variable> (files as model.<ext>)."""
    import shutil
    import tempfile

    from nb2kfp.backends import local
    from nb2kfp.commands import model

    images: dict[str, str] = {}
    folders = local.model_folders(run_dir / "artifacts", pipeline)
    if not folders:
        report("--model-image: no step declares a model (tag the step with model:VARIABLE)")
    for name, folder in sorted(folders.items()):
        with tempfile.TemporaryDirectory(prefix="nb2kfp-model-") as tmp:
            for item in folder.iterdir():
                target = "model" + item.suffix if item.name.startswith("data.") else item.name
                shutil.copy(item, Path(tmp) / target)
            refs: list[str] = []
            image = f"{prefix.rstrip('/')}/{name.lower().replace('_', '-')}"
            origin = _origin(notebook, run_dir)
            model.run(Path(tmp), image, run_dir / "models" / name, None, False, report, refs.append, origin)
            images[name] = refs[-1]
    return images


def run(
    notebook: Path,
    params: list[str],
    run_dir: Path | None,
    as_json: bool,
    verbose: bool,
    report: Callable[[str], None],
    report_error: Callable[[str], None],
    docker: bool = False,
    registry: str | None = None,
    model_image: str | None = None,
) -> int:
    extras.require(
        "nb2kfp run --local",
        "kfp",
        "cloudpickle",
        *(["docker"] if docker else []),
        *(["oras", "requests"] if model_image else []),
    )
    from nb2kfp.atomic import write_text
    from nb2kfp.backends import kfp_spec, kfp_warnings, local
    from nb2kfp.frontend.builder import build

    result = build(notebook, find_settings(notebook.parent))
    for d in result.diagnostics:
        report_error(d.format())
    pipeline = result.pipeline
    arguments: dict[str, Any] = dict(parse_overrides(pipeline, params))
    if docker:
        pipeline = _in_image(notebook, pipeline, registry, report_error)
    target = (run_dir or _new_run_dir(Path(".nb2kfp") / "runs", pipeline.name)).resolve()
    target.mkdir(parents=True, exist_ok=True)
    spec_path = target / "pipeline.yaml"
    write_text(spec_path, kfp_spec.render(pipeline))
    width = max((len(s.name) for s in pipeline.steps), default=4)

    def on_event(step: str, status: str, seconds: float | None) -> None:
        took = f" {seconds:.2f}s" if seconds is not None else ""
        report_error(f"  {_MARK.get(status, status):>6}  {step:<{width}}{took}")

    how = "kfp.local in Docker" if docker else "kfp.local"
    report_error(f"running {pipeline.name} ({count(len(pipeline.steps), 'step')}) with {how} in {target}")
    echo = report_error if verbose else None
    with kfp_warnings.translated(report_error, {kfp_spec.task_name(s): s.name for s in pipeline.steps}):
        outcome = local.run(spec_path, pipeline, arguments, target, on_event, echo=echo, docker=docker)
    write_text(target / "result.json", json.dumps(outcome.as_dict(), indent=2, sort_keys=True) + "\n")
    if outcome.failed_step and not verbose:
        report_error(f"--- output of step {outcome.failed_step} (full log: {target / 'run.log'})")
        for line in outcome.log_tail:
            report_error("  " + line)
    if model_image and outcome.status == "succeeded":
        outcome.models = _package_models(notebook, outcome.run_dir, pipeline, model_image, report_error)
    if as_json:
        report(json.dumps(outcome.as_dict(), sort_keys=True))
    else:
        for name, value in outcome.metrics.items():
            report(f"metric {name} = {value:g}")
        report(f"{outcome.status} in {outcome.seconds:.1f}s; outputs in {target}")
    return 0 if outcome.status == "succeeded" else 1
