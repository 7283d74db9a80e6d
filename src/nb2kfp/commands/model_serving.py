"""``nb2kfp model deploy / promote / serve``: the model image as an init container in front of a pinned server.

``deploy`` writes Kubernetes manifests, ``promote`` swaps the model's digest in them (nothing else changes), and
``serve --local`` does what the Deployment does with this machine's Docker engine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from nb2kfp.errors import UsageError

Report = Callable[[str], None]
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise UsageError(f"--name {name!r}: use lowercase letters, digits and '-' (a Kubernetes name, up to 63)")


def _write(folder: Path, texts: dict[str, str]) -> None:
    from nb2kfp.atomic import write_text

    for file_name, text in texts.items():
        write_text(folder / file_name, text)


def deploy(image: str, name: str, runtime_name: str, folder: Path, report: Report, *, insecure: bool) -> int:
    from nb2kfp.serving import card, manifests, oci, runtimes

    _check_name(name)
    runtime = runtimes.runtime(runtime_name, folder)  # the settings of the project the manifests go to
    model, files = oci.read_with_files(image, (card.FILE,), insecure=insecure)
    runtime.check(model.meta, image)
    _write(folder, manifests.render(name, model, runtime, runtimes.request_log_url(folder)))
    _card(folder, model.ref, files, report)
    if runtime.image.startswith("nb2kfp/"):
        report(f"note: {runtime.image} exists only where it was built: nb2kfp model runtime --registry R pushes it")
    report(f"{name}: {model.ref} on {runtime.image} ({runtime.name}); apply with: kubectl apply -k {folder}")
    return 0


def promote(name: str, image: str, folder: Path, report: Report, *, insecure: bool) -> int:
    """Roll out another model: only its digest changes in the folder ``deploy`` wrote (and the model card)."""
    from nb2kfp.serving import card, manifests, oci, runtimes

    _check_name(name)
    deployed_name, runtime_name, repository, digest = manifests.deployed(folder)
    if deployed_name != name:
        raise UsageError(f"{folder} deploys {deployed_name!r}, not {name!r}")
    runtime = runtimes.runtime(runtime_name, folder)  # the settings of the project the manifests are in
    model, files = oci.read_with_files(image, (card.FILE,), insecure=insecure)
    runtime.check(model.meta, image)
    if (model.repository, model.digest) == (repository, digest):
        report(f"{name} already serves {model.ref}: nothing to change")
        return 0
    _write(folder, manifests.render(name, model, runtime, runtimes.request_log_url(folder)))
    _card(folder, model.ref, files, report)
    report(f"{name}: {repository}@{digest} -> {model.ref}; apply with: kubectl apply -k {folder}")
    return 0


def _card(folder: Path, ref: str, files: dict[str, bytes], report: Report) -> None:
    """The model card of the image as a page beside the manifests, and where it is."""
    from nb2kfp.atomic import write_text
    from nb2kfp.serving import card

    if card.FILE not in files:
        report(f"model card: none in {ref} (built before nb2kfp wrote cards)")
        return
    try:
        content = json.loads(files[card.FILE])
        text = card.page(content, ref)
    except (ValueError, KeyError, TypeError):
        report(f"model card: /models/{card.FILE} in {ref} is not a card nb2kfp can read")
        return
    write_text(folder / card.PAGE, text)
    report(f"model card: {folder / card.PAGE} (/models/{card.FILE} in the image)")


def _example(text: str | None) -> object:
    if text is None:
        return None
    raw = text
    if text.startswith("@"):
        try:
            raw = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--example {text}: cannot read it: {exc.strerror}") from None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"--example: not JSON ({exc})") from None
    if not isinstance(value, dict) or not isinstance(value.get("inputs"), list):
        raise UsageError('--example: give a V2 inference request, {"inputs": [{"name": ..., "shape": ..., ...}]}')
    return value


def serve(
    image: str,
    port: int,
    example: str | None,
    *,
    insecure: bool,
    report: Report,
    result: Report,
    ready: float = 180,
    log_requests: Path | None = None,
) -> int:
    from nb2kfp.serving import local, oci, runtimes

    request = _example(example)
    runtime = runtimes.runtime("mlserver", Path.cwd())
    model = oci.read(image, insecure=insecure)
    runtime.check(model.meta, image)
    request = request or model.meta.example()
    if request is None:
        raise UsageError(f"{image}: the image records no input signature; give one request with --example JSON")
    local.serve(model, runtime, port, request, ready, report, result, log_requests)
    return 0


def push_runtime(registry: str, report: Report, result: Report) -> int:
    """The MLServer image where a cluster can pull it, pinned by digest, and the setting that names it."""
    from nb2kfp.serving import image

    ref = image.push(registry, report)
    report(f'pin it for model deploy: [serving] mlserver_image = "{ref}" (nb2kfp.toml; or [tool.nb2kfp.serving])')
    result(ref)
    return 0
