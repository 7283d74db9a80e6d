"""Step images: render the Dockerfile, build through the Docker engine (docker-py), push, pin by digest.

The tag is a content hash of everything that goes in (Dockerfile, requirements, the base image's digest or id:
the same whether or not this engine has pulled it), so an unchanged notebook finds its tag in the registry and
nothing is built, pushed or pulled. Build containers get no
network: wheels are fetched on the host with pip (its HTTP cache makes repeats cheap) and installed offline.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from nb2kfp import __version__
from nb2kfp.backends.step_runtime import IMAGE_RUNTIME, runtime_source
from nb2kfp.errors import RunError, UsageError
from nb2kfp.frontend import imagefiles
from nb2kfp.frontend.imagefiles import Carried
from nb2kfp.ir import Pipeline
from nb2kfp.masking import Masker
from nb2kfp.oci import ref as imageref
from nb2kfp.oci.registry import Credentials, Registry, credentials_for
from nb2kfp.requirements import Requirements
from nb2kfp.words import printable

Report = Callable[[str], None]


@dataclass(frozen=True)
class StepImage:
    repository: str
    tag: str
    digest: str | None  # sha256:... once the registry has it
    built: bool
    pushed_bytes: int
    seconds: float

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"


def docker_client() -> Any:
    try:
        import docker
    except ImportError:
        raise UsageError("building images needs docker-py: pip install 'nb2kfp[containers]'") from None

    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        raise RunError(f"no Docker engine answers (DOCKER_HOST or /var/run/docker.sock): {exc}") from None
    return client


def dockerfile(pipeline: Pipeline, base: str, requirements: Requirements, carried: Carried | None = None) -> str:
    """The step image's Dockerfile. Only a valid image reference reaches ``FROM``; the other values are
    nb2kfp's own (a KFP name, a version, a hash, a file name)."""
    imageref.check(base, "base image")
    template = resources.files("nb2kfp.images").joinpath("Dockerfile.j2").read_text(encoding="utf-8")
    env = jinja2.Environment(
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    files = carried or Carried((), (), ())
    rendered = env.from_string(template)
    return rendered.render(
        pipeline=pipeline.name,
        version=__version__,
        base=base,
        requirements=requirements.lines,
        source=requirements.source.rsplit("/", 1)[-1],
        requirements_sha=_sha(requirements.text())[:16],
        runtime_path=IMAGE_RUNTIME,
        runtime_sha=_sha(runtime_source())[:16],  # part of the tag: a new runtime makes a new image
        files=len(files.files),
        files_sha=files.digest()[:16],  # part of the tag: changed files, a new image
        workdir=imagefiles.WORKDIR,
    )


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _errors(exc: Exception, masker: Masker, registry: str) -> RunError:
    text = masker(str(exc))
    lowered = text.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "denied" in lowered:
        return RunError(
            f"registry {registry} refused the credentials (check NB2KFP_REGISTRY_USER/_PASSWORD or docker login)"
        )
    if "connection refused" in lowered or "no such host" in lowered or "dial tcp" in lowered:
        return RunError(f"registry {registry} is not reachable: {text.splitlines()[-1][:300]}")
    return RunError(f"registry {registry}: {text[:500]}")


def _existing_digest(client: Any, ref: str, creds: Credentials | None, masker: Masker, host: str) -> str | None:
    import docker

    try:
        found = client.api.inspect_distribution(ref, auth_config=creds.docker_auth() if creds else None)
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        text = str(exc).lower()
        if "manifest unknown" in text or "not found" in text or "name unknown" in text:
            return None
        raise _errors(exc, masker, host) from None
    return str(found["Descriptor"]["digest"])


def base_identity(client: Any, base: str, masker: Masker, auth: dict[str, str] | None = None) -> str:
    """What the step image's tag hashes for the base image, the same on every machine, before and after a pull:
    its registry digest (from the engine's copy, else asked of the registry: no pull), or the engine's image id
    for a base built on this machine (no digest anywhere)."""
    import docker

    name = imageref.parse(base).name
    try:
        image = client.images.get(base)
    except docker.errors.ImageNotFound:
        image = None
    if image is not None:
        digests = [d for d in image.attrs.get("RepoDigests") or [] if d.partition("@")[0] == name]
        return digests[0].partition("@")[2] if digests else str(image.id)
    try:
        return str(client.api.inspect_distribution(base, auth_config=auth)["Descriptor"]["digest"])
    except docker.errors.APIError as exc:
        reason = masker(str(exc.explanation or exc)).strip()[-300:]
        raise RunError(
            f"base image {base}: not in the Docker engine, and its registry did not answer: {reason}"
        ) from None


def pull_base(client: Any, base: str, masker: Masker, auth: dict[str, str] | None = None) -> None:
    """Make sure the engine has the base image (with ``auth``, else docker's own login): the build's own pull
    would have no credentials, and the Python probe needs it."""
    import docker

    try:
        client.images.get(base)
        return
    except docker.errors.ImageNotFound:
        pass
    try:
        client.images.pull(base, auth_config=auth)
    except docker.errors.APIError as exc:
        reason = masker(str(exc.explanation or exc)).strip()[-300:]
        raise RunError(f"base image {base}: not in the Docker engine, and pulling it failed: {reason}") from None


def _base_python(client: Any, base: str) -> str:
    """The base image's Python as ``3.11``: wheels are fetched for it. Steps run python3 in the base image, so a
    base where it does not run is an error (not wheels for this machine's Python)."""
    import docker

    probe = ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    needs = "steps run python3 in the base image, so it needs one that works"
    try:
        out = client.containers.run(base, probe, remove=True, network_mode="none")
    except docker.errors.ContainerError as exc:
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else str(exc.stderr or "")
        raise RunError(
            f"base image {base}: probing its Python failed (python3 exited with {exc.exit_status}: "
            f"{said.strip()[-300:] or 'no output'}); {needs}"
        ) from None
    except docker.errors.APIError as exc:  # e.g. no python3 in the image: the container cannot start
        reason = str(exc.explanation or exc).strip()[-300:]
        raise RunError(f"base image {base}: probing its Python failed ({reason}); {needs}") from None
    version = str(out.decode(errors="replace")).strip()
    if not re.fullmatch(r"3\.\d+", version):
        raise RunError(f"base image {base}: probing its Python printed {version[-100:]!r}, not a version; {needs}")
    return version


def _download_wheels(requirements: Requirements, folder: Path, python: str, report: Report) -> None:
    (folder / "wheels").mkdir()
    if not requirements.lines:
        return
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--dest",
        str(folder / "wheels"),
        "-r",
        str(folder / "requirements.txt"),
    ]
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if python != here:
        command += [
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "manylinux_2_28_x86_64",
            "--platform",
            "linux_x86_64",
        ]
    report(f"  fetching wheels for {len(requirements.lines)} requirement(s) (Python {python})")
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RunError(
            f"pip could not fetch the step image's dependencies from {requirements.source}:\n"
            + "\n".join(proc.stderr.strip().splitlines()[-8:])
        )


def _stream(lines: Iterator[dict[str, Any]], report: Report, masker: Masker, *, quiet: bool) -> dict[str, Any]:
    """Follow a build or push stream; raise on its error; return the last aux payload."""
    aux: dict[str, Any] = {}
    layers: dict[str, tuple[int, int]] = {}
    last_shown = 0.0
    for item in lines:
        if "error" in item:
            raise RunError(masker(str(item.get("error"))))
        if "aux" in item:
            aux = item["aux"]
        if "stream" in item and not quiet:
            text = printable(masker(str(item["stream"])).rstrip())  # the engine's text: never terminal controls
            if text.startswith("Step ") or text.startswith("Successfully"):
                report(f"  {text}")
        detail = item.get("progressDetail") or {}
        if "id" in item and detail.get("total"):
            total = int(detail["total"])  # the engine's current can pass its total (533.0 / 523.8 MB): cap it
            layers[item["id"]] = (min(int(detail.get("current", 0)), total), total)
            if not quiet and time.monotonic() - last_shown > 2:
                done, total = sum(c for c, _ in layers.values()), sum(t for _, t in layers.values())
                report(f"  pushing {len(layers)} layer(s): {done / 1e6:.1f} / {total / 1e6:.1f} MB")
                last_shown = time.monotonic()
        if item.get("status") in ("Pushed", "Layer already exists") and not quiet:
            report(f"  layer {printable(str(item.get('id')))}: {item['status'].lower()}")
    aux["pushed_bytes"] = sum(t for _, t in layers.values())
    return aux


def build_offline(
    client: Any,
    text: str,
    requirements: Requirements,
    base: str,
    ref: str,
    labels: dict[str, str],
    masker: Masker,
    report: Report,
    *,
    quiet: bool,
    what: str,
    files: dict[str, str] | None = None,
    auth: dict[str, str] | None = None,
    carried: Carried | None = None,
) -> None:
    """Build Dockerfile ``text`` as ``ref`` with no network: the base is pulled (with ``auth``) and the
    requirements' wheels are fetched here first; ``files`` (name: text) go into the build context too, and the
    ``carried`` files under ``root/`` + the working directory (the Dockerfile copies ``root/`` to ``/``)."""
    pull_base(client, base, masker, auth)
    with tempfile.TemporaryDirectory(prefix="nb2kfp-build-") as folder:
        ctx = Path(folder)
        (ctx / "Dockerfile").write_text(text, encoding="utf-8")
        (ctx / "requirements.txt").write_text(requirements.text(), encoding="utf-8")
        for name, content in (files or {}).items():
            (ctx / name).write_text(content, encoding="utf-8")
        if carried is not None:
            _work_tree(ctx / "root", carried)
        _download_wheels(requirements, ctx, _base_python(client, base), report)
        stream = client.api.build(
            path=folder,
            tag=ref,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",
            decode=True,
            labels=labels,
        )
        try:
            _stream(stream, report, masker, quiet=quiet)
        except RunError as exc:
            raise RunError(f"building {what} failed: {exc}") from None


def _work_tree(root: Path, carried: Carried) -> None:
    """``root``/WORKDIR holding the carried files (copies: links resolved), readable by any user; the working
    directory itself writable by any user, as a pod may run as one (its mode survives ``COPY root/ /``)."""
    work = root / imagefiles.WORKDIR.lstrip("/")
    work.mkdir(parents=True)
    for relative, source in carried.files:
        target = work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        target.chmod(0o755 if os.access(source, os.X_OK) else 0o644)
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            path.chmod(0o755)
    root.chmod(0o755)
    work.chmod(0o777)


def build_image(
    pipeline: Pipeline,
    requirements: Requirements,
    base: str,
    registry: Registry | None,
    creds: Credentials | None,
    report: Report,
    *,
    quiet: bool = False,
    carried: Carried | None = None,
) -> StepImage:
    """Build (unless the tag already exists) and push (with a registry) the pipeline's step image, carrying
    ``carried`` (the notebook's files) in its working directory."""
    started = time.monotonic()
    carried = carried or Carried((), (), ())
    client = docker_client()
    masker = Masker.for_credentials(creds)
    text = dockerfile(pipeline, base, requirements, carried)  # checks the base is an image reference
    same_registry = registry is not None and imageref.host(base) == registry.host
    auth = creds.docker_auth() if creds and same_registry else None
    base_id = base_identity(client, base, masker, auth)  # no pull: an image already built needs no base here
    tag = _sha(f"{text}\0{requirements.text()}\0{base_id}")[:20]
    repository = registry.repository(pipeline.name) if registry else f"nb2kfp/{pipeline.name}"
    ref = f"{repository}:{tag}"
    if registry is not None:
        digest = _existing_digest(client, ref, creds, masker, registry.host)
        if digest:
            return StepImage(repository, tag, digest, built=False, pushed_bytes=0, seconds=time.monotonic() - started)
    elif client.images.list(name=ref):
        return StepImage(repository, tag, None, built=False, pushed_bytes=0, seconds=time.monotonic() - started)
    report(f"  building {ref}")
    labels, what = {"io.nb2kfp.pipeline": pipeline.name}, f"the step image for {pipeline.name}"
    files = {"nb2kfp-step.py": runtime_source()}  # the Dockerfile copies it to IMAGE_RUNTIME
    build_offline(
        client, text, requirements, base, ref, labels, masker, report,
        quiet=quiet, what=what, files=files, auth=auth, carried=carried,
    )  # fmt: skip
    if registry is None:
        return StepImage(repository, tag, None, built=True, pushed_bytes=0, seconds=time.monotonic() - started)
    report(f"  pushing {ref}")
    digest, pushed = push_tag(client, repository, tag, creds, masker, report, quiet=quiet)
    return StepImage(repository, tag, digest, built=True, pushed_bytes=pushed, seconds=time.monotonic() - started)


def push_tag(
    client: Any, repository: str, tag: str, creds: Credentials | None, masker: Masker, report: Report, *, quiet: bool
) -> tuple[str, int]:
    """Push ``repository:tag`` from the engine; its digest and the bytes sent."""
    host = imageref.host(repository)
    try:
        aux = _stream(
            client.api.push(
                repository, tag=tag, auth_config=creds.docker_auth() if creds else None, stream=True, decode=True
            ),
            report,
            masker,
            quiet=quiet,
        )
    except RunError as exc:
        raise _errors(exc, masker, host) from None
    digest = aux.get("Digest")
    if not digest:
        raise RunError(f"registry {host} accepted the push of {repository}:{tag} but reported no digest")
    return str(digest), int(aux["pushed_bytes"])


def pull(image: StepImage, creds: Credentials | None) -> None:
    """Make sure the engine has the image (DockerRunner cannot pull from registries that need auth)."""
    client = docker_client()
    if client.images.list(name=image.repository) and any(
        image.ref in (i.tags + i.attrs.get("RepoDigests", [])) for i in client.images.list(name=image.repository)
    ):
        return
    client.images.pull(image.ref, auth_config=creds.docker_auth() if creds else None)


def push_once(registry_text: str, name: str, local_tag: str, build: Callable[[], str], report: Report) -> str:
    """Push the image ``local_tag`` (a content-hash tag) to REGISTRY/``name``:<its tag> unless the registry has it
    already, ``build`` making it first (it returns the image's id); its reference pinned by digest. The nb2kfp
    images built from a lock (the MLServer image, the monitoring image) go out this way."""
    registry = Registry.parse(registry_text)
    repository, version = registry.repository(name), imageref.parse(local_tag).tag
    creds = credentials_for(registry.host)
    masker = Masker.for_credentials(creds)
    client = docker_client()
    digest = _existing_digest(client, f"{repository}:{version}", creds, masker, registry.host)
    if digest:
        report(f"{repository}:{version} is already in the registry")
    else:
        client.images.get(build()).tag(repository, version)
        report(f"pushing {repository}:{version}")
        digest, _ = push_tag(client, repository, version, creds, masker, report, quiet=True)
    return f"{repository}@{digest}"
