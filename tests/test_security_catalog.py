"""Security case 4 (issue 14): catalog URLs are untrusted input. Small HTTP servers on 127.0.0.1 play the catalog:
one serves files, one answers forever, one never answers, one redirects, one answers 500 with a body that must
not be echoed. The real `nb2kfp` commands and urllib run against them."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from clirun import Make
from nb2kfp.catalog import lookup as catalog
from nb2kfp.config import find_settings
from nb2kfp.errors import UsageError
from nb2kfp.frontend.builder import build

BUNDLED = Path(catalog.bundled_dir())
COMPONENT = (BUNDLED / "data-drift-check" / "0.1.0.yaml").read_bytes()
SECRET_BODY = b"INTERNAL-SECRET-BODY\nline two"


class _Catalog(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []
    down: ClassVar[bool] = False  # every path answers 503 (the catalog is unreachable)

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if type(self).down:
            self._send(503, b"down")
        elif self.path.startswith("/ok/"):
            self._send(200, COMPONENT if self.path.endswith("/2.0.yaml") else b"", 404)
        elif self.path.startswith("/broken/"):
            self._send(200, b"components: [" + SECRET_BODY)
        elif self.path.startswith("/error/"):
            self._send(500, SECRET_BODY)
        elif self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere.yaml")
            self.end_headers()
        elif self.path.startswith("/endless/"):
            self.send_response(200)
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while True:
                    self.wfile.write(chunk)
            except OSError:
                return
        elif self.path.startswith("/stall/"):
            time.sleep(30)
        elif self.path.startswith("/drip/"):  # a byte a second: never idle long enough for a socket timeout
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(60):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                return

    def _send(self, status: int, body: bytes, empty_status: int = 200) -> None:
        status = status if body else empty_status
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("NB2KFP_CATALOG_TIMEOUT", "2")
    monkeypatch.delenv(catalog.ALLOWED_ENV, raising=False)
    _Catalog.requests = []
    _Catalog.down = False
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Catalog)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def settings_file(folder: Path, urls: list[str], extra: str = "allow_loopback_http = true\n") -> None:
    quoted = ", ".join(f'"{u}"' for u in urls)
    (folder / "nb2kfp.toml").write_text(f"[catalog]\nurls = [{quoted}]\n{extra}")


@pytest.mark.parametrize(
    "url",
    ["file:///etc", "http://kfp-components.example.com", "ftp://example.com/c", "https://user:pw@example.com/c"],
)
def test_only_https_urls_are_accepted(tmp_path: Path, url: str) -> None:
    settings_file(tmp_path, [url], extra="")
    with pytest.raises(UsageError) as info:
        find_settings(tmp_path)
    assert "pw" not in str(info.value)


def test_plain_http_needs_loopback_and_the_flag(tmp_path: Path) -> None:
    settings_file(tmp_path, ["http://127.0.0.1:8000/c"], extra="")
    with pytest.raises(UsageError):
        find_settings(tmp_path)
    settings_file(tmp_path, ["http://127.0.0.1:8000/c"])
    assert find_settings(tmp_path).catalog_urls == ("http://127.0.0.1:8000/c",)
    settings_file(tmp_path, ["https://components.example.com/c"], extra="")
    assert find_settings(tmp_path).catalog_urls == ("https://components.example.com/c",)


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("endless", "over 1 MiB"),
        ("stall", "timed out"),
        ("drip", "timed out"),
        ("redirect", "redirects"),
        ("error", "HTTP 500"),
        ("broken", "not YAML"),
    ],
)
def test_bad_servers_fail_in_one_line_without_their_text(server: str, path: str, fragment: str) -> None:
    started = time.monotonic()
    with pytest.raises(ValueError) as info:
        catalog.find("comp", "2.0", [], [f"{server}/{path}"], fetch=True)
    message = str(info.value)
    assert fragment in message and "INTERNAL-SECRET" not in message and "\n" not in message, message
    assert time.monotonic() - started < 20


def test_lint_uses_only_the_cache_and_says_when_it_is_missing(server: str, make_nb: Make, tmp_path: Path) -> None:
    settings_file(tmp_path, [f"{server}/ok"])
    nb = make_nb([(["component:comp@2.0", "step:drift"], "reference_path = 'a'\ncurrent_path = 'b'")])
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    lint = [sys.executable, "-m", "nb2kfp", "lint", str(nb)]
    proc = subprocess.run(lint, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "NB096" in proc.stdout and "nb2kfp catalog fetch" in proc.stdout, proc.stdout
    assert _Catalog.requests == []  # lint never touched the network
    fetch = [sys.executable, "-m", "nb2kfp", "catalog", "fetch", str(nb)]
    proc = subprocess.run(fetch, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _Catalog.requests == ["/ok/comp/2.0.yaml"]
    proc = subprocess.run(lint, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert "NB096" not in proc.stdout and "NB090" not in proc.stdout, proc.stdout
    assert _Catalog.requests == ["/ok/comp/2.0.yaml"]


def test_a_sha256_pin_refuses_other_content(server: str, tmp_path: Path) -> None:
    good = hashlib.sha256(COMPONENT).hexdigest()
    assert catalog.find("comp", "2.0", [], [f"{server}/ok"], (("comp@2.0", good),), fetch=True) is not None
    with pytest.raises(ValueError, match="pins"):
        catalog.find("comp", "2.0", [], [f"{server}/ok"], (("comp@2.0", "0" * 64),))
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(ValueError, match="pins"):
        catalog.find("comp", "2.0", [], [f"{server}/ok"], (("comp", "f" * 64),), fetch=True)


def test_under_serve_only_the_servers_urls_are_fetched(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.ALLOWED_ENV, "")
    with pytest.raises(ValueError, match="not one the server allows"):
        catalog.find("comp", "2.0", [], [f"{server}/ok"], fetch=True)
    assert _Catalog.requests == []
    monkeypatch.setenv(catalog.ALLOWED_ENV, f"{server}/ok")
    assert catalog.find("comp", "2.0", [], [f"{server}/ok"], fetch=True) is not None
    with pytest.raises(ValueError, match="not one the server allows"):
        catalog.find("comp", "2.0", [], [f"{server}/ok-evil"], fetch=True)


def test_serve_passes_its_allow_list_to_the_ci_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from nb2kfp.delivery.queue import Event
    from nb2kfp.delivery.worker import _ci_env

    monkeypatch.delenv("NB2KFP_SERVE_CATALOG_URLS", raising=False)
    event = Event("push", "42", "g/p", "refs/heads/main", "0" * 40, "ab" * 20)
    assert _ci_env(event, "ab" * 20, None)[catalog.ALLOWED_ENV] == ""
    monkeypatch.setenv("NB2KFP_SERVE_CATALOG_URLS", "https://components.example.com/c")
    assert _ci_env(event, "ab" * 20, None)[catalog.ALLOWED_ENV] == "https://components.example.com/c"


def test_each_ci_job_fetches_what_its_notebooks_call(server: str, make_nb: Make, tmp_path: Path) -> None:
    """CI jobs start with an empty cache: `nb2kfp ci compile` fetches first (the job's one network step)."""
    settings_file(tmp_path, [f"{server}/ok"])
    make_nb(
        [
            (["step:data"], "ref = 'ref.csv'\ncur = 'cur.csv'"),
            (["component:comp@2.0", "step:drift", "prev:data"], "reference = ref\ncurrent = cur\ncolumn = 'x'"),
        ]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CI_")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    argv = [sys.executable, "-m", "nb2kfp", "ci", "compile", "--notebooks", "*.ipynb", "--output-dir", "out"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _Catalog.requests == ["/ok/comp/2.0.yaml"]
    assert list((tmp_path / "out").rglob("*.pipeline.yaml"))


def test_an_old_cached_component_or_a_failed_fetch_is_said_with_its_age(
    server: str, make_nb: Make, tmp_path: Path
) -> None:
    settings_file(tmp_path, [f"{server}/ok"])
    settings = find_settings(tmp_path)
    nb = make_nb(
        [
            (["step:data"], "ref = 'r.csv'\ncur = 'c.csv'"),
            (["component:comp@2.0"], "reference = ref\ncurrent = cur\ncolumn = 'x'"),
        ]
    )
    found = catalog.find("comp", "2.0", [], [f"{server}/ok"], fetch=True)
    assert found is not None

    def stale() -> list[str]:
        diags = build(nb, settings).diagnostics
        return [d.format() for d in diags if d.code == "NB097"]

    assert stale() == []  # just fetched
    cached = Path(found.call.file)
    ten_days_ago = time.time() - 10 * 86400
    os.utime(cached, (ten_days_ago, ten_days_ago))
    [msg] = stale()
    assert "cell 2" in msg and "10 days ago" in msg and "nb2kfp catalog fetch" in msg and "warning" in msg, msg
    _Catalog.down = True  # offline: the fetch fails, the old copy stays, and lint says so
    with pytest.raises(ValueError, match="HTTP 503"):
        catalog.find("comp", "2.0", [], [f"{server}/ok"], fetch=True)
    [msg] = stale()
    assert "10 days ago" in msg and "the last fetch failed (HTTP 503)" in msg, msg
    os.utime(cached)  # even a recent copy is reported while the last fetch failed
    [msg] = stale()
    assert "the last fetch failed" in msg, msg
    _Catalog.down = False
    catalog.find("comp", "2.0", [], [f"{server}/ok"], fetch=True)
    assert stale() == []
