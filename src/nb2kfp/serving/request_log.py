"""``model serve --local --log-requests DIR``: a logging proxy on 127.0.0.1 in front of the model server.

MLServer logs no payloads (its access log has the path and status only), so ``serve`` publishes the server on a
second, private port and listens on the user's port itself: each request is forwarded unchanged, and each inference
(``POST .../infer``) is appended, with its answer, as one JSON line to ``DIR/requests-<model>.jsonl``:
``{"time": ISO-8601, "model": NAME, "status": 200, "request": {...}, "response": {...}}`` -- the shape
``nb2kfp monitor --requests`` reads, and close to the payload KServe's logger sends (its CloudEvents' data).
"""

from __future__ import annotations

import datetime
import http.server
import json
import threading
from pathlib import Path
from typing import Any

from nb2kfp.errors import UsageError

MAX_BODY = 64 * 1024 * 1024  # bytes of one request the proxy accepts


class RequestLog:
    """JSON lines appended under a lock (one proxy thread per connection)."""

    def __init__(self, folder: Path, model: str) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"--log-requests {folder}: cannot make it ({exc.strerror})") from None
        self.path = folder / f"requests-{model}.jsonl"
        self.model = model
        self._lock = threading.Lock()
        self.count = 0

    def write(self, status: int, request: object, response: object) -> None:
        entry = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "model": self.model,
            "status": status,
            "request": request,
            "response": response,
        }
        line = json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            self.count += 1


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


class Proxy:
    """A threaded HTTP server on 127.0.0.1:``port`` forwarding to ``upstream`` and logging inferences."""

    def __init__(self, port: int, upstream: str, log: RequestLog) -> None:
        import requests

        session = requests.Session()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002 - BaseHTTPRequestHandler's signature
                return  # the server's own log is MLServer's; the payloads go to the request log

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                try:
                    answer = session.request(self.command, upstream + self.path, data=body, headers=headers, timeout=60)
                except requests.exceptions.RequestException:
                    self.send_error(502, "the model server did not answer")
                    return
                if self.command == "POST" and self.path.rstrip("/").endswith("/infer"):
                    log.write(answer.status_code, _json(body), _json(answer.content))
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="nb2kfp-request-log", daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
