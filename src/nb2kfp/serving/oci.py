"""Read a model image's manifest and config from its registry (no Docker engine): its digest and what it records."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field

from nb2kfp import extras
from nb2kfp.errors import RunError, UsageError
from nb2kfp.masking import Masker
from nb2kfp.oci import ref as imageref
from nb2kfp.oci.registry import credentials_for, is_loopback
from nb2kfp.serving import model_image as models
from nb2kfp.serving.meta import ModelMeta
from nb2kfp.serving.model_image import MANIFEST


@dataclass(frozen=True)
class ModelRef:
    repository: str
    digest: str
    meta: ModelMeta
    labels: dict[str, str] = field(default_factory=dict, compare=False)  # all of the image's labels, as written

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"


def parse(image: str) -> tuple[str, str]:
    """REPOSITORY and the tag or digest to look up, from REGISTRY/REPOSITORY[:TAG][@sha256:...]."""
    try:
        ref = imageref.parse(image.removeprefix("oci://"))
    except imageref.BadReference as exc:
        raise UsageError(f"{image!r}: a model image is REGISTRY/REPOSITORY[:TAG][@sha256:...]; {exc}") from None
    if not ref.domain:
        raise UsageError(f"{image!r}: name the model image's registry, e.g. registry.example.com/ml/clf@sha256:...")
    if ref.digest and not ref.digest.startswith("sha256:"):
        raise UsageError(f"{image!r}: only sha256 digests are supported")
    return ref.name, ref.digest or ref.tag or "latest"


def read(image: str, *, insecure: bool = False) -> ModelRef:
    ref, _ = read_with_files(image, (), insecure=insecure)
    return ref


def read_with_files(image: str, names: tuple[str, ...], *, insecure: bool = False) -> tuple[ModelRef, dict[str, bytes]]:
    """The model image and the files ``names`` under its /models (those it holds), from its model layer."""
    repository, reference = parse(image)
    extras.require("reading a model image", "oras", "requests")
    import requests

    host = imageref.host(repository)
    creds = credentials_for(host)
    masker = Masker.for_credentials(creds)
    registry = models.client(host, plain=insecure or is_loopback(host), creds=creds)  # bounded, as for pushes
    container = registry.get_container(f"{repository}@{reference}" if ":" in reference else f"{repository}:{reference}")
    try:
        url = f"{registry.prefix}://{container.manifest_url()}"
        response = registry.do_request(url, "GET", headers={"Accept": MANIFEST})
        _check(response, host, image, masker, given=creds is not None)
        digest = f"sha256:{hashlib.sha256(response.content).hexdigest()}"
        if reference.startswith("sha256:") and digest != reference:
            raise RunError(f"registry {host} answered {image} with a manifest whose digest is {digest}")
        manifest = json.loads(response.content)
        blob = registry.get_blob(container, manifest["config"]["digest"])
        _check(blob, host, image, masker, given=creds is not None)
        labels = json.loads(blob.content).get("config", {}).get("Labels") or {}
        found: dict[str, bytes] = {}
        if names and labels.get("io.nb2kfp.model") == "true" and manifest["layers"]:  # no layer: no files
            layer = manifest["layers"][-1]
            blob = registry.get_blob(container, layer["digest"])
            _check(blob, host, image, masker, given=creds is not None)
            if f"sha256:{hashlib.sha256(blob.content).hexdigest()}" != layer["digest"]:
                raise RunError(f"registry {host} answered {image}'s model layer with other bytes than its digest")
            found = _members(blob.content, names)
    except requests.exceptions.RequestException as exc:
        raise RunError(f"registry {host} is not reachable: {type(exc).__name__}") from None
    except (ValueError, KeyError, TypeError, IndexError, tarfile.TarError):
        raise RunError(f"{image}: the registry's answer is not an OCI image manifest and config") from None
    if labels.get("io.nb2kfp.model") != "true":
        raise UsageError(f"{image}: not a model image built by nb2kfp (no io.nb2kfp.model label)")
    return ModelRef(repository, digest, ModelMeta.from_labels(labels), labels), found


def _members(layer: bytes, names: tuple[str, ...]) -> dict[str, bytes]:
    """Regular files models/NAME of an (uncompressed) layer tar, never following links."""
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:") as tar:
        for member in tar:
            path = member.name.removeprefix("./")
            name = path.removeprefix("models/")
            if member.isreg() and path.startswith("models/") and name in names:
                handle = tar.extractfile(member)
                if handle is not None:
                    found[name] = handle.read()
    return found


def _check(response: object, host: str, image: str, masker: Masker, *, given: bool) -> None:
    status = getattr(response, "status_code", 0)
    if status in (401, 403):
        raise models.refused(host, given=given)
    if status == 404:
        raise UsageError(f"{image}: no such model image in the registry")
    if status >= 300:
        text = masker(str(getattr(response, "text", ""))[:200])
        raise RunError(f"registry {host} answered {status} for {image}: {text}")
