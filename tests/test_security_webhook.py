"""Security cases 2 and 8 (issue 14): payload values that reach git, and the receiver's faults. The receiver is
called in-process through ASGI (tests/asgi.py); git and SQLite are the real ones."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from asgi import call
from nb2kfp.delivery.queue import Event, EventQueue
from nb2kfp.delivery.webhook import ServeConfig, create_app
from nb2kfp.errors import RunError

SECRET = "a-webhook-secret-of-some-length"
GIT = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev"]
SHA = "ab" * 20


def push(**fields: Any) -> dict[str, Any]:
    body = {"object_kind": "push", "project_id": 42, "ref": "refs/heads/main", "before": "0" * 40, "after": SHA}
    body["project"] = {"id": 42, "path_with_namespace": "group/proj", "git_http_url": "https://gitlab.example.com/g/p"}
    body.update(fields)
    return body


def post(app: Any, body: bytes | dict[str, Any]) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET, "Content-Type": "application/json"}
    return call(app, "POST", "/webhooks/gitlab", data, headers)


@pytest.fixture
def queue(tmp_path: Path) -> EventQueue:
    return EventQueue(tmp_path / "queue.sqlite3")


@pytest.fixture
def app(queue: EventQueue) -> Any:
    return create_app(ServeConfig(secret=SECRET, projects=frozenset({"42"})), queue)


@pytest.mark.parametrize(
    "fields",
    [
        {"after": "--upload-pack=touch /tmp/nb2kfp-pwned;false"},
        {"after": "HEAD"},
        {"before": "-x"},
        {"ref": "--upload-pack=x"},
        {"ref": "refs/heads/a..b"},
        {"ref": "refs/heads/x.lock"},
        {"ref": "main"},
        {"ref": "refs/heads/bad\x7fname"},
    ],
)
def test_payload_values_that_are_no_sha_or_ref_are_refused(app: Any, queue: EventQueue, fields: dict[str, Any]) -> None:
    status, answer = post(app, push(**fields))
    assert status == 400, answer
    assert queue.records() == []
    assert "pwned" not in json.dumps(answer)


def test_valid_push_is_queued(app: Any, queue: EventQueue) -> None:
    assert post(app, push(ref="refs/heads/feature/ü-1"))[0] == 202
    assert post(app, push(after="cd" * 32))[0] == 202  # a SHA-256 repository
    assert len(queue.records()) == 2


def _bare_repo(root: Path) -> tuple[Path, str]:
    work, bare = root / "work", root / "proj.git"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "a.txt").write_text("a\n")
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", "a"], cwd=work, check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
    return bare, sha


def test_checkout_never_hands_a_payload_value_to_git_as_an_option(tmp_path: Path) -> None:
    """Even an Event that skipped validation (built directly) cannot make git run a command."""
    from nb2kfp.commands.serve import checkout

    bare, _ = _bare_repo(tmp_path)
    marker = tmp_path / "pwned"
    event = Event("push", "42", "g/p", "refs/heads/main", "0" * 40, f"--upload-pack=touch {marker};false")
    event.payload["project"] = {"git_http_url": str(bare)}
    with pytest.raises(RunError):
        checkout(event, tmp_path / "repos", None, allow_local=True)
    assert not marker.exists()


@pytest.mark.parametrize("local", ["{bare}", "file://{bare}", "ext::sh -c touch% {marker}", "--upload-pack=x"])
def test_local_and_odd_repository_urls_are_refused_unless_the_server_allows(tmp_path: Path, local: str) -> None:
    from nb2kfp.commands.serve import checkout

    bare, sha = _bare_repo(tmp_path)
    marker = tmp_path / "pwned"
    event = Event("push", "42", "g/p", "refs/heads/main", "0" * 40, sha)
    event.payload["project"] = {"git_http_url": local.format(bare=bare, marker=marker)}
    with pytest.raises(RunError) as info:
        checkout(event, tmp_path / "repos", None)
    assert "repository URL" in str(info.value)
    assert not marker.exists()
    if not local.startswith(("ext", "-")):
        tree, commit = checkout(event, tmp_path / "repos", None, allow_local=True)
        assert commit == sha and (tree / "a.txt").read_text() == "a\n"


# ---------------------------------------------------------------- case 8: receiver faults


def test_a_deeply_nested_body_is_400(app: Any, queue: EventQueue) -> None:
    status, answer = post(app, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    assert status == 400 and "nested too deeply" in answer["reason"]
    assert queue.records() == []


def test_a_ref_with_a_lone_surrogate_is_400_not_503(app: Any, queue: EventQueue) -> None:
    body = json.dumps(push()).replace("refs/heads/main", "refs/heads/\\ud800").encode()
    status, answer = post(app, body)
    assert status == 400, answer
    assert queue.records() == []
    body = json.dumps(push()).replace("group/proj", "group/\\udfff").encode()
    assert post(app, body)[0] == 400


def _wait(condition: Any, timeout: float = 20.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_queue_write_errors_are_retried_counted_and_shown_in_healthz(tmp_path: Path) -> None:
    """A second connection holds SQLite's write lock (a real SQLITE_BUSY on every write of the worker)."""
    import sqlite3

    from nb2kfp.commands.serve import Workers
    from nb2kfp.delivery.webhook import Metrics

    queue = EventQueue(tmp_path / "queue.sqlite3", busy_timeout=0.05)
    config = ServeConfig(secret=SECRET, projects=frozenset({"42"}))
    metrics = Metrics()
    app = create_app(config, queue, metrics)
    body = push()
    body["project"]["git_http_url"] = "file:///nowhere"  # refused at once: the event fails quickly once claimed
    queue.put(Event.from_payload(body, "k1"))
    lock = sqlite3.connect(tmp_path / "queue.sqlite3", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    lines: list[str] = []
    workers = Workers(queue, config, tmp_path, metrics, lines.append)
    workers.start(1)
    try:
        assert _wait(lambda: metrics.counts.get("store_errors", 0) >= 2)
        status, answer = call(app, "GET", "/healthz")
        assert status == 503 and answer["status"] == "degraded" and "locked" in answer["reason"]
        assert all(t.is_alive() for t in workers._threads)
        lock.execute("ROLLBACK")
        lock.close()
        assert _wait(lambda: [r.status for r in queue.records()] == ["failed"]), queue.records()
        assert "repository URL" in (queue.records()[0].message or "")
        assert call(app, "GET", "/healthz")[0] == 200
        status, text = call(app, "GET", "/metrics")
        assert "nb2kfp_webhook_events_store_errors_total" in text
        assert all(len(line.splitlines()) == 1 for line in lines)
    finally:
        workers.shutdown()


def test_an_event_claimed_too_often_is_marked_failed_without_running(tmp_path: Path) -> None:
    import sqlite3

    from nb2kfp.commands.serve import MAX_ATTEMPTS, Workers
    from nb2kfp.delivery.webhook import Metrics

    queue = EventQueue(tmp_path / "queue.sqlite3")
    queue.put(Event.from_payload(push(), "k1"))
    with sqlite3.connect(tmp_path / "queue.sqlite3") as db:
        db.execute("UPDATE events SET attempts = ?", (MAX_ATTEMPTS,))
    workers = Workers(queue, ServeConfig(secret=SECRET, projects=frozenset({"42"})), tmp_path, Metrics(), print)
    workers.start(1)
    try:
        assert _wait(lambda: [r.status for r in queue.records()] == ["failed"])
        assert f"after {MAX_ATTEMPTS} attempts" in (queue.records()[0].message or "")
        assert not (tmp_path / "repos").exists()  # never fetched
    finally:
        workers.shutdown()


def _serve(tmp_path: Path, secret: str, *extra: str) -> subprocess.CompletedProcess[str]:
    import os
    import sys

    (tmp_path / "secret").write_text(secret + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NB2KFP_")}
    argv = [sys.executable, "-m", "nb2kfp", "serve", "--data", str(tmp_path / "data"), "--port", "0"]
    argv += ["--secret-file", str(tmp_path / "secret"), "--project", "42", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)


def test_a_read_only_queue_file_is_one_line_at_start_up(tmp_path: Path) -> None:
    from conftest import require

    EventQueue(tmp_path / "data" / "queue.sqlite3").close()
    immutable = subprocess.run(["chattr", "+i", str(tmp_path / "data" / "queue.sqlite3")], capture_output=True)
    require(immutable.returncode == 0, "chattr +i (root on ext4/tmpfs) makes a file read-only even for root")
    try:
        proc = _serve(tmp_path, SECRET)
    finally:
        subprocess.run(["chattr", "-i", str(tmp_path / "data" / "queue.sqlite3")], check=True)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "readonly" in proc.stderr and "queue.sqlite3" in proc.stderr


def test_a_short_webhook_secret_is_refused_unless_allowed(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "short")
    assert proc.returncode == 2 and "16 or more" in proc.stderr and "--allow-weak-secret" in proc.stderr
    assert "short" not in proc.stderr.replace("--allow-weak-secret", "")
    assert ServeConfig.load(None, ["42"], {"NB2KFP_WEBHOOK_SECRET": "short"}, allow_weak_secret=True).secret == "short"


@pytest.mark.parametrize(
    "name",
    [
        "main",
        "feature/x-1",
        "a..b",
        "a/.b",
        "a.lock",
        "a/b.lock/c",
        "a b",
        "a~1",
        "a^",
        "a:b",
        "a?",
        "a*",
        "a[",
        "a\\\\b",
        "a//b",
        "a/",
        "a.",
        "@",
        "a@{1}",
        "a@b",
        "ü-ünïcode",
        "-leading-dash",
        "x/-y",
        ".hidden",
        "tab\tname",
    ],
)
def test_refs_are_judged_as_git_check_ref_format_judges_them(name: str) -> None:
    """The payload check agrees with the real `git check-ref-format` on branch refs."""
    from nb2kfp.git import check_ref

    ref = f"refs/heads/{name}"
    git_says = subprocess.run(["git", "check-ref-format", ref], capture_output=True).returncode == 0
    try:
        check_ref(ref)
        ours = True
    except ValueError:
        ours = False
    assert ours == git_says, (ref, git_says)
