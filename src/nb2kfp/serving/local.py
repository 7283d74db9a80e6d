"""``model serve --local``: the Deployment's init-container pattern with this machine's Docker engine.

A fresh volume; the model image copies /models into it (no network); the serving container mounts it read-only at
/mnt/models and runs on a network of its own (a bridge network made for it: even an engine without the default
bridge, ``--bridge=none``, makes one), its port published on 127.0.0.1:PORT only. Loading a model runs code (pickle),
so the server never shares the host's network: it cannot reach what listens on the host's loopback. One V2 request
once the model is ready; then it serves until Ctrl-C (or SIGTERM) and removes its container, network and volume.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nb2kfp.errors import RunError
from nb2kfp.images import step_image as images
from nb2kfp.oci import ref as imageref
from nb2kfp.oci.registry import credentials_for
from nb2kfp.serving import image
from nb2kfp.serving.oci import ModelRef
from nb2kfp.serving.runtimes import Runtime

COPY = ["sh", "-c", "cp -r /models/. /mnt/models/"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving_image(client: Any, runtime: Runtime, report: images.Report) -> str:
    from nb2kfp.config import find_settings
    from nb2kfp.serving.image import mlserver_tag

    base = find_settings(Path.cwd()).image
    if runtime.image == mlserver_tag(base):
        built = image.ensure(runtime.image, base, report)
        how = f"built in {built.seconds:.0f}s" if built.built else "reused"
        report(f"serving image {built.ref} ({how}) ID {built.id}")
        return built.id
    if not client.images.list(name=runtime.image):  # a pinned image from settings
        host = imageref.host(runtime.image)
        creds = credentials_for(host) if host else None
        client.images.pull(runtime.image, auth_config=creds.docker_auth() if creds else None)
    found = client.images.get(runtime.image)
    report(f"serving image {runtime.image} ID {found.id}")
    return str(found.id)


def _wait_ready(container: Any, url: str, timeout: float) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except requests.exceptions.RequestException:
            pass  # not listening yet
        container.reload()
        if container.status not in ("created", "running"):
            break
        time.sleep(0.5)
    tail = container.logs(tail=12).decode("utf-8", "replace").strip().splitlines()
    raise RunError(f"the model server did not become ready ({container.status}):\n  " + "\n  ".join(tail))


class Stop:
    """Ctrl-C and SIGTERM while ``serve`` runs: a flag, and a KeyboardInterrupt only while it starts up.

    Once the server answers, a signal only sets ``requested``: a KeyboardInterrupt that lands while Python runs a
    finalizer (garbage collection inside a Docker API call) is printed as "Exception ignored" and dropped, and the
    serving loop went on serving (CI saw ``serve`` ignore Ctrl-C for 60 s). The loop polls the flag instead.
    """

    def __init__(self) -> None:
        self.requested = False
        self.raising = True

    def __call__(self, *_: object) -> None:
        self.requested = True
        if self.raising:
            raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Stop]:
    stop = Stop()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_until_stopped(container: Any, stop: Stop, poll: float = 0.5) -> None:
    """Poll the serving container until Ctrl-C or SIGTERM; a container that stops on its own is an error."""
    stop.raising = False
    if stop.requested:
        return
    while True:
        container.reload()
        if container.status != "running":
            raise RunError(f"the model server stopped ({container.status})")
        for _ in range(int(poll / 0.1) or 1):  # short sleeps: a stop is noticed within 0.1 s
            if stop.requested:
                return
            time.sleep(0.1)


def serve(
    model: ModelRef,
    runtime: Runtime,
    port: int,
    request: object,
    ready_timeout: float,
    report: images.Report,
    result: images.Report,
    log_dir: Path | None = None,
) -> None:
    """Serve ``model`` on 127.0.0.1:``port``; with ``log_dir``, through the logging proxy of
    :mod:`nb2kfp.serving.request_log` (the server then listens on a private port behind it)."""
    import docker
    import requests

    from nb2kfp.serving import request_log

    log = request_log.RequestLog(log_dir, model.meta.name) if log_dir is not None else None

    started = time.monotonic()
    client = images.docker_client()
    serving_id = _serving_image(client, runtime, report)
    creds = credentials_for(imageref.host(model.repository))
    try:
        client.images.pull(model.ref, auth_config=creds.docker_auth() if creds else None)
    except docker.errors.APIError as exc:
        raise RunError(f"cannot pull {model.ref}: {exc.explanation or exc}") from None
    suffix = uuid.uuid4().hex[:10]
    port = port or free_port()
    inner = free_port() if log is not None else port  # the server's own port (private behind the proxy)
    volume = client.volumes.create(f"nb2kfp-model-{suffix}", labels={"io.nb2kfp.model": model.ref})
    container = network = None
    with stop_on_signals() as stop:
        try:
            mount = {volume.name: {"bind": "/mnt/models", "mode": "rw"}}
            client.containers.run(model.ref, COPY, volumes=mount, network_mode="none", remove=True)
            try:
                network = client.networks.create(
                    f"nb2kfp-serve-{suffix}", driver="bridge", labels={"io.nb2kfp.model": model.ref}
                )
            except docker.errors.APIError as exc:
                raise RunError(
                    f"the Docker engine cannot make a network for the model server ({exc.explanation or exc}); "
                    "it never runs on the host's network (loading a model runs its code)"
                ) from None
            env = {
                "MLSERVER_HOST": "0.0.0.0",  # of its own network, whose port PORT alone is published (on 127.0.0.1)
                "MLSERVER_HTTP_PORT": str(inner),
                "MLSERVER_GRPC_PORT": str(free_port()),
                "MLSERVER_METRICS_PORT": str(free_port()),
            }
            container = client.containers.run(
                serving_id,
                detach=True,
                name=f"nb2kfp-serve-{suffix}",
                network=network.name,
                ports={f"{inner}/tcp": ("127.0.0.1", inner)},
                environment=env,
                volumes={volume.name: {"bind": "/mnt/models", "mode": "ro"}},
                labels={"io.nb2kfp.model": model.ref},
            )
            path = f"/v2/models/{model.meta.name}"
            _wait_ready(container, f"http://127.0.0.1:{inner}{path}", ready_timeout)
            answer = requests.post(f"http://127.0.0.1:{inner}{path}/infer", json=request, timeout=30)  # not logged
            if answer.status_code != 200:
                raise RunError(f"the smoke request failed ({answer.status_code}): {answer.text[:300]}")
            outputs = [o.get("data") for o in answer.json().get("outputs", [])]
            report(f"first prediction {outputs} after {time.monotonic() - started:.1f}s; serving until Ctrl-C")
            with contextlib.ExitStack() as proxy:
                if log is not None:
                    proxy.enter_context(request_log.Proxy(port, f"http://127.0.0.1:{inner}", log))
                    report(f"logging each inference request and its answer to {log.path}")
                result(f"http://127.0.0.1:{port}{path}")
                serve_until_stopped(container, stop)
            if log is not None:
                report(f"logged {log.count} inference requests to {log.path}")
            report("stopping")
        except KeyboardInterrupt:
            report("stopping")
        finally:
            stop.raising = False  # a second Ctrl-C must not cut the clean-up short
            if container is not None:
                container.remove(force=True)
            if network is not None:
                network.remove()
            volume.remove(force=True)
