"""The flows the commands share (and with them the CI jobs and the webhook, which runs ``nb2kfp ci``): compile a
notebook (to IR, to a spec), compile it as of a git ref, build its step image and pin the pipeline to it, publish it
to KFP, push a model image, fetch URL-catalog components (docs/architecture.md shows the layers).

Commands (:mod:`nb2kfp.commands`, called only by the CLI) check their options, call these and print; nothing here
prints except through the ``report`` callback it is given. Heavy modules (the spec writer, Docker, the KFP client)
are imported where used, so ``compile --check`` and ``lint`` stay fast.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nb2kfp import stamp
from nb2kfp.config import Settings, find_settings
from nb2kfp.errors import Diagnostic, NotebookError, RunError, UsageError, error
from nb2kfp.ir import Pipeline

if TYPE_CHECKING:
    from nb2kfp.clients.kfp import Published
    from nb2kfp.images.step_image import StepImage
    from nb2kfp.oci.registry import Credentials, Registry
    from nb2kfp.requirements import Requirements
    from nb2kfp.serving.reference import Reference

Report = Callable[[str], None]


@dataclass(frozen=True)
class Compiled:
    """A notebook compiled to IR with the settings it was compiled with."""

    notebook: Path
    pipeline: Pipeline
    diagnostics: list[Diagnostic]  # warnings (errors raise NotebookError)
    settings: Settings

    @property
    def stamp(self) -> str:
        return stamp.stamp(self.pipeline.source_hash, self.settings)

    @functools.cached_property
    def documents(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The KFP spec and platform documents, built once for the spec text and the checks on them."""
        from nb2kfp.backends import kfp_spec

        return kfp_spec.build_documents(self.pipeline)

    def spec(self) -> str:
        """The KFP pipeline spec (YAML) with its stamp line."""
        from nb2kfp.backends import kfp_spec

        return kfp_spec.render(self.pipeline, self.stamp, self.documents)

    def check_size(self, kfp_version: str | None = None) -> None:
        """NotebookError when the Argo Workflow a KFP cluster makes of this pipeline would outgrow Argo's limit
        (:mod:`nb2kfp.backends.argo_size`), on ``kfp_version`` (default: the newest, whose Workflows are largest)."""
        check_size(self.notebook, self.pipeline, kfp_version, self.documents)


def check_size(
    notebook: Path,
    pipeline: Pipeline,
    kfp_version: str | None = None,
    documents: tuple[dict[str, Any], dict[str, Any] | None] | None = None,
) -> None:
    """See :meth:`Compiled.check_size` (also for a pipeline pinned to a built step image)."""
    from nb2kfp import kfpnames
    from nb2kfp.backends import argo_size, kfp_spec

    major, minor = kfpnames.release(kfp_version)
    version = f"{major}.{minor}" if f"{major}.{minor}" in argo_size.KFP_VERSIONS else argo_size.KFP_VERSIONS[-1]
    spec, platform = documents or kfp_spec.build_documents(pipeline)
    found = argo_size.problem(spec, platform, version)
    if found:
        raise NotebookError([error(str(notebook), found, "NB059")])


def compile_notebook(notebook: Path, settings: Settings | None = None) -> Compiled:
    """The notebook's IR (settings: given, else found beside it); NotebookError with located diagnostics."""
    from nb2kfp.frontend import builder

    settings = settings or find_settings(notebook.parent)
    result = builder.build(notebook, settings)
    return Compiled(notebook, result.pipeline, result.diagnostics, settings)


def diagnostics(notebook: Path) -> list[Diagnostic]:
    """Every diagnostic compiling the notebook gives (``lint``)."""
    try:
        return compile_notebook(notebook).diagnostics
    except NotebookError as exc:
        return list(exc.diagnostics)


def compile_for_kfp(notebook: Path, report_error: Report, kfp_version: str | None = None) -> Compiled:
    """Compile for a KFP server (publish, ``run --host``): warnings reported, the policy's pinned-image rule and
    the size of the Workflow the server makes of it (on ``kfp_version``, default the newest) checked before anything
    is written or sent."""
    from nb2kfp.security import policy

    compiled = compile_notebook(notebook)
    compiled.check_size(kfp_version)
    for d in compiled.diagnostics:
        report_error(d.format())
    policy.check_pinned(compiled.settings, (s.image for s in compiled.pipeline.steps), str(notebook))
    return compiled


def compile_at(notebook: Path, ref: str) -> tuple[Pipeline | None, str]:
    """The notebook's pipeline as of git ref ``ref`` and how that went: 'compiled', 'absent' or 'invalid'.
    Every file is read as of ``ref``: the notebook, the notebooks it includes, the settings."""
    from nb2kfp.frontend import builder
    from nb2kfp.loader import AtRef

    at_ref = AtRef(ref, notebook)
    if not notebook.resolve().is_relative_to(at_ref.root):
        raise UsageError(f"{notebook} is not inside the git repository at {at_ref.root}")
    if not at_ref.is_file(notebook):
        return None, "absent"
    try:
        return builder.build(notebook, find_settings(notebook.parent, at_ref), loader=at_ref).pipeline, "compiled"
    except (NotebookError, UsageError):  # UsageError: the settings at ``ref`` do not parse
        return None, "invalid"


def commit_of(notebook: Path, commit: str | None) -> str:
    """``commit``, else GitLab's ``CI_COMMIT_SHA``, else git's HEAD where the notebook is, else ``local``."""
    from nb2kfp import git

    if commit:
        return commit.strip()
    if os.environ.get("CI_COMMIT_SHA"):
        return os.environ["CI_COMMIT_SHA"].strip()
    try:
        return git.rev_parse("HEAD", notebook.resolve().parent)
    except (RunError, OSError):  # not a git work tree, or no git here
        return "local"


def pin(pipeline: Pipeline, image: str) -> Pipeline:
    """Steps that use the notebook's default image run ``image`` (built by nb2kfp: the step runtime is in it)
    instead; ``image:`` tags are kept."""
    steps = tuple(replace(s, image=image) if s.image == pipeline.base_image else s for s in pipeline.steps)
    return replace(pipeline, steps=steps, base_image=image, runtime_image=image)


@dataclass(frozen=True)
class Pinned:
    """A pipeline pinned to the step image built for it."""

    pipeline: Pipeline
    image: StepImage
    requirements: Requirements
    credentials: Credentials | None
    files: tuple[str, ...] = ()  # what the image carries from the notebook's folder (its working directory)


def build_and_pin(
    notebook: Path,
    pipeline: Pipeline,
    registry: Registry | None,
    report: Report,
    base: str | None = None,
    *,
    quiet: bool = True,
    announce: bool = False,
) -> Pinned:
    """The one build-image-and-pin sequence (``build``, ``ci build``, ``run --docker``): resolve the notebook's
    requirements (``announce``: say where from), build the step image on ``base`` (default: the pipeline's) unless
    its tag exists (``quiet``: without Docker's build output), push it to ``registry`` (if any), and pin the
    pipeline to it."""
    from nb2kfp import requirements
    from nb2kfp.frontend import imagefiles
    from nb2kfp.images import step_image as images
    from nb2kfp.oci.registry import credentials_for

    creds = credentials_for(registry.host) if registry else None
    carried = imagefiles.collect(notebook, pipeline)  # the notebook's files the steps need, in the image
    reqs = requirements.resolve(notebook, (*pipeline.modules, *carried.imports), carried.local_modules)
    if announce:
        report(
            f"{notebook}: step image for {pipeline.name} ({len(reqs.lines)} requirement(s) from {reqs.source}; "
            f"{len(carried.files)} file(s), {carried.size / 1e6:.1f} MB, from the notebook's folder)"
        )
    for module in reqs.unmapped:
        report(
            f"{notebook}: warning: imports {module!r}, which no distribution installed here or requirement "
            "file provides: the step image will not have it [NB103]"
        )
    image = images.build_image(
        pipeline, reqs, base or pipeline.base_image, registry, creds, report, quiet=quiet, carried=carried
    )
    return Pinned(pin(pipeline, image.ref), image, reqs, creds, tuple(name for name, _ in carried.files))


def version_of(compiled: Compiled, commit: str | None = None) -> str:
    """The KFP pipeline version name: ``<commit[:12]>-<stamp[:12]>`` (publishing the same commit twice uploads
    nothing)."""
    from nb2kfp.clients import kfp as kfp_client

    return kfp_client.version_name(commit_of(compiled.notebook, commit), compiled.stamp)


def publish(
    compiled: Compiled, spec: Path, host: str, token: str | None, version: str, description: str | None = None
) -> Published:
    """Upload ``spec`` (compiled from ``compiled``, maybe pinned) as ``version`` of the notebook's pipeline, after
    the policy's endpoint and pinned-image rules."""
    from nb2kfp.clients import kfp as kfp_client
    from nb2kfp.security import policy

    policy.check_endpoint(compiled.settings, host)
    policy.check_pinned(compiled.settings, policy.spec_images(spec.read_text(encoding="utf-8")), str(compiled.notebook))
    name = compiled.pipeline.name
    return kfp_client.publish(spec, name, version, host, token, description or compiled.pipeline.description)


def push_model(
    source: Path,
    image: str,
    output_dir: Path | None,
    framework: str | None,
    *,
    insecure: bool,
    report: Report,
    origin: dict[str, str] | None = None,
    reference: Reference | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """Push the model at ``source`` (a file or folder) as the image ``image`` (REGISTRY/REPOSITORY[:TAG]; no Docker
    engine needed), with its ``reference`` sample beside it, write the manifests ``model deploy`` writes and
    ``model.json`` and the model card's page to ``output_dir`` (default ``.nb2kfp/models/<name>``; ``details``: the
    run that made it, its parameters and metrics, for the card); the pushed image's reference (by digest)."""
    import json
    import tempfile

    from nb2kfp import kfpnames
    from nb2kfp.atomic import write_text
    from nb2kfp.oci import ref as imageref
    from nb2kfp.oci.registry import credentials_for
    from nb2kfp.serving import card, manifests, meta, oci, runtimes
    from nb2kfp.serving import model_image as models

    try:
        parsed = imageref.parse(image.removeprefix("oci://"))
    except imageref.BadReference:
        parsed = None
    if parsed is None or not parsed.domain or parsed.digest:
        raise UsageError("--image: give REGISTRY/REPOSITORY[:TAG], e.g. registry.example.com/ml/model:1")
    repository, host = parsed.name, parsed.domain
    name = kfpnames.clean(parsed.path.rsplit("/", 1)[-1]) or "model"
    with tempfile.TemporaryDirectory(prefix="nb2kfp-model-") as work:
        described = meta.describe(source, name, framework, origin) if source.exists() else meta.ModelMeta(name)
        content = card.make(described, source, reference, details or {})
        extra = {**meta.generated_files(described, source), **(reference.files() if reference else {})}
        extra[card.FILE] = card.file_bytes(content)
        labels = {**described.labels(), **(reference.labels() if reference else {})}
        layers, config, manifest = models.assemble(source, Path(work), name, labels, extra)
        tag = parsed.tag or "sha256-" + layers[-1].digest.removeprefix("sha256:")[:16]
        report(f"pushing model {source} ({layers[-1].size / 1e6:,.1f} MB) to {repository}:{tag}")
        pushed = models.push(
            repository, tag, layers, config, manifest, credentials_for(host), insecure=insecure, report=report
        )
    folder = output_dir or Path(".nb2kfp") / "models" / name
    ref = oci.ModelRef(repository, pushed.digest, described)
    project = source if source.is_dir() else source.parent  # its settings: the model's project's, wherever run from
    log_url = runtimes.request_log_url(project)
    for file_name, text in manifests.render(name, ref, runtimes.runtime("mlserver", project), log_url).items():
        write_text(folder / file_name, text)
    record = {
        "image": pushed.ref,
        "tag": tag,
        "digest": pushed.digest,
        "pushed_bytes": pushed.pushed_bytes,
        "layers": [b.digest for b in pushed.layers],
        "labels": labels,
    }
    write_text(folder / "model.json", json.dumps(record, indent=2) + "\n")
    write_text(folder / card.PAGE, card.page(content, pushed.ref, str((details or {}).get("run", ""))))
    report(f"model card: {folder / card.PAGE} (and /models/{card.FILE} in the image)")
    report(f"pushed {pushed.pushed_bytes / 1e6:,.1f} MB in {pushed.seconds:.1f}s; manifests in {folder}")
    return pushed.ref


def fetch_components(notebooks: list[Path], report: Report) -> bool:
    """The network step: each component: cell's component from the URL catalogs, into the local cache (within
    the size and time limits, checked against the sha256 pins). False if any could not be fetched."""
    from nb2kfp.catalog import lookup as catalog
    from nb2kfp.frontend.notebook import read_notebook

    failed = False
    for notebook in notebooks:
        settings = find_settings(notebook.parent)
        if not settings.catalog_urls:
            continue
        try:
            cells = read_notebook(notebook, ignore_tags=settings.ignore_tags).cells
        except NotebookError as exc:
            report(exc.lines()[0])
            failed = True
            continue
        paths, urls = list(settings.catalog_paths), list(settings.catalog_urls)
        for ref in sorted({c.component_ref for c in cells if c.component_ref}):
            name, _, version = ref.partition("@")
            try:
                found = catalog.find(name, version or None, paths, urls, settings.catalog_pins, fetch=True)
            except ValueError as exc:
                report(f"{notebook}: component:{ref}: {exc}")
                failed = True
                continue
            where = found.call.source if found else "no catalog"
            report(f"{notebook}: component:{ref}: {where}")
    return not failed
