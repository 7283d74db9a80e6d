"""Model images (KServe modelcars): model files under /models on a busybox layer, pushed without a Docker engine.

Layers are uncompressed tars with sorted entries, zero mtimes and root ownership, and the config carries no
timestamp: the same files always give the same digest, and a push of an unchanged model sends no layer bytes
(each blob is checked with HEAD first). The registry protocol is oras-py's, not ours.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from nb2kfp.errors import RunError, UsageError
from nb2kfp.registry import Credentials, Masker, is_loopback

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
APPLETS = ("sh", "ln", "sleep", "cp", "ls", "cat", "mkdir", "true", "env")
CHUNK = 64 * 1024 * 1024
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


def model_files(source: Path) -> tuple[list[str], list[tuple[str, Path]]]:
    if not source.exists():
        raise RunError(f"{source}: no such model file or folder")
    if source.is_file():
        return ["models"], [(f"models/{source.name}", source)]
    dirs, files = ["models"], []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source).as_posix()
        if path.is_dir():
            dirs.append(f"models/{rel}")
        elif path.is_file():
            files.append((f"models/{rel}", path))
    if not files:
        raise RunError(f"{source}: the model folder holds no files")
    return dirs, files


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
    dirs, files = model_files(source)
    for extra_name, data in sorted((extra or {}).items()):
        (work / "generated").mkdir(exist_ok=True)
        (work / "generated" / extra_name).write_bytes(data)
        files.append((f"models/{extra_name}", work / "generated" / extra_name))
    labels = {"org.opencontainers.image.title": name, **(labels or {})}
    model = _layer(work / "model.tar", dirs, files, [])
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
    insecure: bool,
    report: Report,
) -> ModelImage:
    try:
        import oras.provider
        import requests
    except ImportError:
        raise UsageError("model images need oras: pip install 'nb2kfp[containers]'") from None

    started = time.monotonic()
    host = repository.split("/", 1)[0]
    masker = Masker.for_credentials(creds)
    plain = insecure or is_loopback(host)  # plain HTTP: loopback as Docker does, others only when asked
    registry = oras.provider.Registry(hostname=host, insecure=plain, auth_backend="basic")
    if creds:
        registry.auth.set_basic_auth(creds.username, creds.password)
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
            _check(response, masker, host, "upload")
            pushed += blob.size
            rate = blob.size / 1e6 / max(time.monotonic() - t0, 1e-6)
            report(f"  {blob.digest[:19]} {blob.size / 1e6:,.1f} MB: pushed ({rate:,.0f} MB/s)")
        url = f"{registry.prefix}://{container.manifest_url()}"
        response = registry.do_request(url, "PUT", headers={"Content-Type": MANIFEST}, data=manifest)
        _check(response, masker, host, "manifest")
    except requests.exceptions.ConnectionError as exc:
        raise RunError(f"registry {host} is not reachable: {type(exc).__name__}") from None
    digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
    answered = response.headers.get("Docker-Content-Digest")
    if answered and answered != digest:
        raise RunError(f"registry {host} stored the manifest as {answered}, expected {digest}")
    return ModelImage(repository, tag, digest, tuple(layers), pushed, time.monotonic() - started)


def _check(response: Any, masker: Masker, host: str, what: str) -> None:
    status = getattr(response, "status_code", 0)
    if status in (401, 403):
        raise RunError(
            f"registry {host} refused the credentials (check NB2KFP_REGISTRY_USER/_PASSWORD or docker login)"
        )
    if status >= 300:
        raise RunError(f"registry {host} rejected the {what} ({status}): {masker(response.text[:300])}")
