"""Load test of the webhook receiver on loopback: ``python bench/webhook_load.py [--rate 100] [--seconds 10]``.

Starts ``nb2kfp serve`` (workers=0: only acknowledgement is measured, nothing is processed) on 127.0.0.1 in a
temporary folder, sends ``rate * seconds`` GitLab-shaped push hooks on an open-loop schedule (each request leaves at
its planned time, whatever the previous ones did) from a small thread pool, then reads the queue database: every
acknowledged delivery must be there (lost = acknowledged - stored; must be 0). Prints one table and exits.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SECRET = "bench-secret"
ZEROS = "0" * 40


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _payload(n: int) -> bytes:
    sha = uuid.uuid4().hex + uuid.uuid4().hex[:8]
    commits = [{"id": sha, "message": f"change {n}\n", "added": [], "modified": ["nb.ipynb"], "removed": []}]
    project = {
        "id": 42,
        "name": "proj",
        "path_with_namespace": "group/proj",
        "git_http_url": "https://gitlab.example.com/group/proj.git",
        "web_url": "https://gitlab.example.com/group/proj",
    }
    body = {
        "object_kind": "push",
        "before": "1" * 40,
        "after": sha,
        "ref": f"refs/heads/branch-{n % 10}",
        "checkout_sha": sha,
        "project_id": 42,
        "project": project,
        "commits": commits,
        "total_commits_count": 1,
    }
    return json.dumps(body).encode()


def _start(folder: Path, port: int) -> subprocess.Popen[bytes]:
    secret = folder / "secret"
    secret.write_text(SECRET)
    code = (
        "import sys\nfrom pathlib import Path\nfrom nb2kfp.commands.serve import run\n"
        f"sys.exit(run('127.0.0.1', {port}, Path({str(folder / 'data')!r}), Path({str(secret)!r}), ['42'], 0,"
        " lambda line: None))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("NB2KFP_")}
    src = Path(__file__).resolve().parent.parent / "src"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100, help="requests per second")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    total = args.rate * args.seconds
    with tempfile.TemporaryDirectory(prefix="nb2kfp-webhook-bench-") as tmp:
        folder = Path(tmp)
        port = _port()
        server = _start(folder, port)
        local = threading.local()
        latencies: list[float] = []
        late: list[float] = []
        acked: list[str] = []
        errors: list[str] = []
        lock = threading.Lock()
        bodies = [_payload(n) for n in range(total)]
        keys = [str(uuid.uuid4()) for _ in range(total)]

        def send(n: int, at: float) -> None:
            delay = at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            local.conn = conn
            headers = {
                "Content-Type": "application/json",
                "X-Gitlab-Event": "Push Hook",
                "X-Gitlab-Token": SECRET,
                "Idempotency-Key": keys[n],
                "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            }
            start = time.perf_counter()
            try:
                conn.request("POST", "/webhooks/gitlab", body=bodies[n], headers=headers)
                response = conn.getresponse()
                answer = json.loads(response.read())
                status = response.status
            except (OSError, http.client.HTTPException, ValueError) as exc:
                local.conn = None
                with lock:
                    errors.append(type(exc).__name__)
                return
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                late.append(max(0.0, start - at))
                if status == 202 and answer.get("status") in ("queued", "duplicate"):
                    acked.append(keys[n])
                else:
                    errors.append(str(status))

        try:
            began = time.perf_counter() + 0.2
            with ThreadPoolExecutor(args.threads) as pool:
                for n in range(total):
                    pool.submit(send, n, began + n / args.rate)
            wall = time.perf_counter() - began
        finally:
            server.terminate()
            server.wait(20)
        db = sqlite3.connect(folder / "data" / "queue.sqlite3")
        stored = {row[0] for row in db.execute("SELECT key FROM events")}
        db.close()

    lost = len(set(acked) - stored)
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))] if ms else float("nan")
    rows = [
        ("requests sent", f"{total} ({args.rate}/s for {args.seconds} s, {args.threads} threads)"),
        ("wall time", f"{wall:.2f} s"),
        ("acknowledged (202)", str(len(acked))),
        ("errors / other answers", str(len(errors))),
        ("ack latency p50", f"{p50:.2f} ms"),
        ("ack latency p99", f"{p99:.2f} ms"),
        ("ack latency max", f"{ms[-1]:.2f} ms" if ms else "-"),
        ("sender behind schedule p99", f"{sorted(late)[int(len(late) * 0.99)] * 1000:.2f} ms" if late else "-"),
        ("stored in queue DB", str(len(stored))),
        ("lost events (acked, not stored)", str(lost)),
    ]
    title = "webhook load (loopback, fsync per event)"
    width = max(len(title), *(len(name) for name, _ in rows))
    print(f"{title:<{width}} | value")
    print(f"{'-' * width}-+-{'-' * 40}")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")
    return 0 if lost == 0 and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
