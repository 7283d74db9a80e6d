"""Model images (KServe modelcars): model files under /models on a busybox layer, pushed without a Docker engine.

Layers are uncompressed tars with sorted entries, zero mtimes and root ownership, and the config carries no
timestamp: the same files always give the same digest, and a push of an unchanged model sends no layer bytes
(each blob is checked with HEAD first). The registry protocol is oras-py's, not ours.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tarfile
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from nb2kfp.errors import RunError, UsageError
from nb2kfp.masking import Masker
from nb2kfp.oci import ref as imageref
from nb2kfp.oci.registry import Credentials, is_loopback

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
APPLETS = ("sh", "ln", "sleep", "cp", "ls", "cat", "mkdir", "true", "env")
CHUNK = 64 * 1024 * 1024
CONNECT_TIMEOUT = 10.0  # seconds
READ_TIMEOUT = 120.0  # seconds without a byte from the registry (NB2KFP_REGISTRY_TIMEOUT overrides)
TRIES = 3
Report = Callable[[str], None]


@dataclass(frozen=True)
class Blob:
    path: Path
    digest: str
    size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ModelImage:
    repository: str
    tag: str
    digest: str
    layers: tuple[Blob, ...]
    pushed_bytes: int
    seconds: float

    @property
    def ref(self) -> str:
        return f"{self.repository}@{self.digest}"


class _Hashing:
    """A write-only file that hashes and counts what tarfile writes."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.sha, self.size = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.size


def _info(name: str, kind: bytes, mode: int, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.linkname = kind, mode, size, link
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


def _layer(out: Path, dirs: list[str], files: list[tuple[str, Path]], links: list[tuple[str, str]]) -> Blob:
    entries: list[tuple[str, tarfile.TarInfo, Path | None]] = []
    for d in dirs:
        entries.append((d, _info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755), None))
    for name, source in files:
        mode = 0o755 if source.stat().st_mode & 0o111 else 0o644
        entries.append((name, _info(name, tarfile.REGTYPE, mode, source.stat().st_size), source))
    for name, target in links:
        entries.append((name, _info(name, tarfile.SYMTYPE, 0o777, link=target), None))
    with out.open("wb") as raw:
        sink = _Hashing(raw)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
            for _, info, content in sorted(entries, key=lambda e: e[0]):
                if content is None:
                    tar.addfile(info)
                else:
                    with content.open("rb") as fh:
                        tar.addfile(info, fh)
    return Blob(out, f"sha256:{sink.sha.hexdigest()}", sink.size, LAYER)


def _static_busybox() -> Path:
    found = shutil.which("busybox") or ("/bin/busybox" if Path("/bin/busybox").exists() else None)
    if not found:
        raise UsageError("a model image needs a statically linked busybox here (Debian: apt install busybox-static)")
    path = Path(found).resolve()
    header = path.read_bytes()[:4096]
    if header[:4] != b"\x7fELF" or b"/ld-linux" in header or b"ld-musl" in header:
        raise UsageError(f"{path} is not a statically linked busybox (Debian: apt install busybox-static)")
    return path


Entries = tuple[list[str], list[tuple[str, Path]], list[tuple[str, str]]]


def model_files(source: Path) -> Entries:
    """(folders, files, links) under /models. A link that stays in the model folder is stored as a link; one that
    leads out of it (``weights -> /etc/shadow``) is refused, never followed. Names must be UTF-8 text."""
    if not source.exists():
        raise RunError(f"{source}: no such model file or folder")
    if source.is_file():
        return ["models"], [(f"models/{_name(source, source.name)}", source)], []
    root = source.resolve()
    dirs, files, links = ["models"], [], []
    for top, subdirs, names in os.walk(root, followlinks=False):
        for name in sorted([*subdirs, *names]):
            path = Path(top) / name
            rel = _name(source, path.relative_to(root).as_posix())
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root) or not target.exists():
                    raise RunError(
                        f"{source}: {rel} is a link that leads out of the model folder (or nowhere): refused"
                    )
                links.append((f"models/{rel}", os.path.relpath(target, path.parent)))
            elif path.is_dir():
                dirs.append(f"models/{rel}")
            elif path.is_file():
                files.append((f"models/{rel}", path))
            else:
                raise RunError(f"{source}: {rel} is not a regular file, folder or link")
    if not files:
        raise RunError(f"{source}: the model folder holds no files")
    return dirs, files, links


def _name(source: Path, name: str) -> str:
    """``name`` as stored in the image: NFC-normalised UTF-8 text (no undecodable bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise RunError(f"{source}: a file name is not UTF-8 text: rename it") from None
    return unicodedata.normalize("NFC", name)


def assemble(
    source: Path, work: Path, name: str, labels: dict[str, str] | None = None, extra: dict[str, bytes] | None = None
) -> tuple[list[Blob], Blob, bytes]:
    """Layers, config blob and manifest bytes for the model at ``source``.

    ``labels`` go into the image config and the manifest's annotations; ``extra`` files (name -> bytes) are written
    under /models beside the model's own files (model-settings.json).
    """
    busybox = _static_busybox()
    base = _layer(
        work / "busybox.tar",
        ["bin", "mnt", "tmp"],
        [("bin/busybox", busybox)],
        [(f"bin/{a}", "busybox") for a in APPLETS],
    )
    dirs, files, links = model_files(source)
    for extra_name, data in sorted((extra or {}).items()):
        (work / "generated").mkdir(exist_ok=True)
        (work / "generated" / extra_name).write_bytes(data)
        files.append((f"models/{extra_name}", work / "generated" / extra_name))
    labels = {"org.opencontainers.image.title": name, **(labels or {})}
    model = _layer(work / "model.tar", dirs, files, links)
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = {
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": {**labels, "io.nb2kfp.model": "true"},
        },
        "rootfs": {"type": "layers", "diff_ids": [base.digest, model.digest]},
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    (work / "config.json").write_bytes(config_bytes)
    config_blob = Blob(
        work / "config.json", f"sha256:{hashlib.sha256(config_bytes).hexdigest()}", len(config_bytes), CONFIG
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config_blob.descriptor(),
        "layers": [base.descriptor(), model.descriptor()],
        "annotations": labels,
    }
    return [base, model], config_blob, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def push(
    repository: str,
    tag: str,
    layers: list[Blob],
    config: Blob,
    manifest: bytes,
    creds: Credentials | None,
    *,
    insecure: bool,
    report: Report,
) -> ModelImage:
    try:
        import oras.auth
        import oras.provider
        import requests
    except ImportError:
        raise UsageError("model images need oras: pip install 'nb2kfp[containers]'") from None

    started = time.monotonic()
    host = imageref.host(repository)
    masker = Masker.for_credentials(creds)
    plain = insecure or is_loopback(host)  # plain HTTP: loopback as Docker does, others only when asked
    registry = client(host, plain=plain, creds=creds)
    container = registry.get_container(f"{repository}:{tag}")
    pushed = 0
    try:
        for blob in [*layers, config]:
            layer = {**blob.descriptor(), "annotations": {}}
            if registry.blob_exists(layer, container):
                report(f"  {blob.digest[:19]} {blob.size / 1e6:,.1f} MB: already in the registry")
                continue
            t0 = time.monotonic()
            response = registry.upload_blob(
                str(blob.path), container, layer, do_chunked=blob.size > CHUNK, chunk_size=CHUNK
            )
            _check(response, masker, host, "upload", given=creds is not None)
            pushed += blob.size
            rate = blob.size / 1e6 / max(time.monotonic() - t0, 1e-6)
            report(f"  {blob.digest[:19]} {blob.size / 1e6:,.1f} MB: pushed ({rate:,.0f} MB/s)")
        url = f"{registry.prefix}://{container.manifest_url()}"
        response = registry.do_request(url, "PUT", headers={"Content-Type": MANIFEST}, data=manifest)
        _check(response, masker, host, "manifest", given=creds is not None)
    except requests.exceptions.RequestException as exc:
        raise RunError(f"registry {host} is not reachable: {type(exc).__name__}") from None
    except (ValueError, oras.auth.AuthenticationException) as exc:  # oras' own errors quote the registry's body
        raise RunError(f"registry {host}: {masker(str(exc).splitlines()[0][:200])}") from None
    digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    answered = response.headers.get("Docker-Content-Digest")
    if answered and answered != digest:
        raise RunError(f"registry {host} stored the manifest as {answered}, expected {digest}")
    return ModelImage(repository, tag, digest, tuple(layers), pushed, time.monotonic() - started)


def client(host: str, *, plain: bool, creds: Credentials | None) -> Any:
    """An oras registry client for ``host`` with bounded requests (:func:`bounded`), basic auth with ``creds``,
    or no Authorization header at all when there are none (oras' BasicAuth without credentials raised an
    AttributeError on the registry's 401; its ORAS_USER/ORAS_PASS are not used: credentials_for says where
    credentials come from)."""
    import oras.auth.basic
    import oras.provider

    class Anonymous(oras.auth.basic.BasicAuth):  # type: ignore[misc]
        def get_auth_header(self) -> dict[str, str]:
            return {}

    registry = oras.provider.Registry(hostname=host, insecure=plain, auth_backend="basic")
    if creds:
        registry.auth.set_basic_auth(creds.username, creds.password)
    else:
        registry.auth = Anonymous()
    bounded(registry, host, given=creds is not None)
    return registry


def bounded(registry: Any, host: str, *, given: bool) -> None:
    """Every request of ``registry`` (oras) gets connect and read timeouts and at most TRIES tries, 1 s then 2 s
    apart, instead of oras' own retry (up to 131 s of sleep per request, then a JSON error on a 500 page).
    Failures end as one-line RunErrors; refused credentials are not retried (``given``: whether any were sent, for
    the message)."""
    import functools

    import requests

    read_timeout = float(os.environ.get("NB2KFP_REGISTRY_TIMEOUT") or READ_TIMEOUT)
    registry.session.request = functools.partial(registry.session.request, timeout=(CONNECT_TIMEOUT, read_timeout))
    request = type(registry).do_request.__wrapped__

    def do_request(url: str, method: str = "GET", *args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, TRIES + 1):
            try:
                response = request(registry, url, method, *args, **kwargs)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                problem = f"{type(exc).__name__} (connect {CONNECT_TIMEOUT:.0f} s, read {read_timeout:.0f} s)"
            else:
                if response.status_code in (401, 403):
                    raise refused(host, given=given)
                if response.status_code < 500:
                    return response
                problem = f"HTTP {response.status_code}"
            if attempt == TRIES:
                raise RunError(f"registry {host}: {method} failed {TRIES} times, last: {problem}")
            time.sleep(attempt)
        raise AssertionError("unreachable")

    registry.do_request = do_request


def _check(response: Any, masker: Masker, host: str, what: str, *, given: bool) -> None:
    status = getattr(response, "status_code", 0)
    if status in (401, 403):
        raise refused(host, given=given)
    if status >= 300:
        text = " ".join(masker(response.text[:300]).split())
        raise RunError(f"registry {host} rejected the {what} ({status}): {text}")


def refused(host: str, *, given: bool) -> RunError:
    """The registry said 401/403: with credentials, they are wrong; without, say where they come from."""
    if not given:
        return RunError(
            f"registry {host} asks for credentials and none are set: set NB2KFP_REGISTRY_USER and "
            f"NB2KFP_REGISTRY_PASSWORD (or CI_REGISTRY_USER/_PASSWORD), or run docker login {host}"
        )
    return RunError(f"registry {host} refused the credentials (check NB2KFP_REGISTRY_USER/_PASSWORD or docker login)")
