"""Security case 9 (issue 14): `nb2kfp model build` against registries that fail: small fake registries on
127.0.0.1 (one answers 500 to everything, one accepts connections and never answers), and the real registry of
.ci/services.sh with a wrong password. Each ends in one line, within bounded time (the read timeout is lowered to
1 s through NB2KFP_REGISTRY_TIMEOUT; the fakes do not speak the rest of the registry protocol)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import require


class _Answers500(BaseHTTPRequestHandler):
    def _fail(self) -> None:
        body = b"<html>internal error\nsecond line</html>"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _fail

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def stalling_registry() -> Iterator[str]:
    """Accepts connections, reads nothing and answers nothing (a registry that stopped mid-push)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def model_build(tmp_path: Path, image: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "model" / "weights.bin").write_bytes(os.urandom(1000))
    full = {k: v for k, v in os.environ.items() if not k.startswith("NB2KFP_REGISTRY")}
    full.update(NB2KFP_REGISTRY_TIMEOUT="1", **env)
    argv = [sys.executable, "-m", "nb2kfp", "model", "build", "model", "--image", image, "--output-dir", "out"]
    return subprocess.run(argv, cwd=tmp_path, env=full, capture_output=True, text=True, timeout=120)


def _one_line_failure(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()
    assert [line for line in last if not line.startswith("pushing model")] == [last[-1]], proc.stderr
    return last[-1]


def test_a_registry_answering_500_fails_in_one_line_after_bounded_retries(
    tmp_path: Path, failing_registry: str
) -> None:
    line = _one_line_failure(model_build(tmp_path, f"{failing_registry}/m:1"))
    assert "HTTP 500" in line and "3 times" in line and "internal error" not in line
    assert not (tmp_path / "out").exists()


def test_a_registry_that_stops_answering_times_out_in_one_line(tmp_path: Path, stalling_registry: str) -> None:
    line = _one_line_failure(model_build(tmp_path, f"{stalling_registry}/m:1"))
    assert "ReadTimeout" in line and "3 times" in line


def test_the_real_registry_with_a_wrong_password_is_one_line(tmp_path: Path) -> None:
    registry = os.environ.get("NB2KFP_TEST_REGISTRY")
    require(bool(registry), "no test registry: run .ci/services.sh and source its env file")
    user = os.environ.get("NB2KFP_TEST_REGISTRY_USER", "")
    proc = model_build(
        tmp_path, f"{registry}/sec-{os.getpid()}/m:1", NB2KFP_REGISTRY_USER=user, NB2KFP_REGISTRY_PASSWORD="wrong-pw"
    )
    line = _one_line_failure(proc)
    assert "refused the credentials" in line and "wrong-pw" not in proc.stderr
