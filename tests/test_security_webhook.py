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
from nb2kfp.errors import RunError, UsageError

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


def _local(root: Path) -> ServeConfig:
    """A server whose "GitLab" is the folder ``root`` (bare repositories as ``root/PATH.git``)."""
    return ServeConfig(secret=SECRET, projects=frozenset({"proj"}), gitlab_url=str(root), allow_local_repos=True)


def test_checkout_never_hands_a_payload_value_to_git_as_an_option(tmp_path: Path) -> None:
    """Even an Event that skipped validation (built directly) cannot make git run a command."""
    from nb2kfp.delivery.worker import checkout

    _bare_repo(tmp_path)
    marker = tmp_path / "pwned"
    event = Event("push", "42", "proj", "refs/heads/main", "0" * 40, f"--upload-pack=touch {marker};false")
    with pytest.raises(RunError):
        checkout(event, tmp_path / "repos", _local(tmp_path))
    assert not marker.exists()


@pytest.mark.parametrize("local", ["{root}", "file://{root}", "ext::sh -c touch% {marker}", "--upload-pack=x"])
def test_local_and_odd_gitlab_urls_are_refused_unless_the_server_allows(tmp_path: Path, local: str) -> None:
    from nb2kfp.delivery.worker import checkout

    _, sha = _bare_repo(tmp_path)
    marker = tmp_path / "pwned"
    url = local.format(root=tmp_path, marker=marker)
    with pytest.raises(UsageError) as info:
        ServeConfig.load(None, ["proj"], {"NB2KFP_WEBHOOK_SECRET": SECRET, "NB2KFP_SERVE_GITLAB_URL": url})
    assert "GitLab URL" in str(info.value)
    event = Event("push", "42", "proj", "refs/heads/main", "0" * 40, sha)
    with pytest.raises(RunError) as run_info:  # a config made without load() is checked again
        checkout(event, tmp_path / "repos", ServeConfig(secret=SECRET, projects=frozenset({"proj"}), gitlab_url=url))
    assert "GitLab URL" in str(run_info.value)
    assert not marker.exists()
    if not local.startswith(("ext", "-")):
        env = {"NB2KFP_WEBHOOK_SECRET": SECRET, "NB2KFP_SERVE_GITLAB_URL": url, "NB2KFP_SERVE_ALLOW_LOCAL_REPOS": "1"}
        tree, commit = checkout(event, tmp_path / "repos", ServeConfig.load(None, ["proj"], env))
        assert commit == sha and (tree / "a.txt").read_text() == "a\n"


def test_the_files_a_push_changed_keep_their_names(tmp_path: Path) -> None:
    """A notebook named with non-ASCII letters: git quotes such paths ("\\303\\244...") unless told not to, and the
    quoted name matched no notebook, so the push built nothing."""
    from nb2kfp.delivery.worker import changed_files, checkout

    bare, first = _bare_repo(tmp_path)
    work = tmp_path / "work"
    (work / "ä analysis.ipynb").write_text("{}\n")
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", "b"], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", str(bare), "main"], cwd=work, check=True)
    second = subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True).stdout.strip()
    event = Event("push", "42", "proj", "refs/heads/main", first, second)
    tree, commit = checkout(event, tmp_path / "repos", _local(tmp_path))
    assert commit == second
    assert changed_files(tree, first, commit) == ["ä analysis.ipynb"]
    assert changed_files(tree, "0" * 40, commit) is None  # a new branch: everything


# ---------------------------------------------------------------- issue 24, case 1: where the git token goes


class GitHost:
    """A git host on 127.0.0.1 (dumb HTTP: the files of the bare repositories under ``root``) that records each
    request's path and Authorization header."""

    def __init__(self, root: Path) -> None:
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[tuple[str, str]] = []
        seen = self.requests

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("Authorization", "")))
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _hosted(bare: Path, root: Path, path: str) -> None:
    import shutil

    shutil.copytree(bare, root / f"{path}.git")
    subprocess.run(["git", "update-server-info"], cwd=root / f"{path}.git", check=True)


def test_the_git_token_goes_only_to_the_servers_own_gitlab(tmp_path: Path) -> None:
    """A payload naming another host (another listener on 127.0.0.1) as the repository: the worker fetched from it,
    sending the server's git token; now it fetches the served path from its own GitLab URL only."""
    import base64

    from nb2kfp.delivery.webhook import Metrics
    from nb2kfp.delivery.worker import Workers

    bare, sha = _bare_repo(tmp_path)
    _hosted(bare, tmp_path / "own", "group/proj")
    _hosted(bare, tmp_path / "other", "group/proj")
    token = "glpat-server-git-token-1234"
    own, other = GitHost(tmp_path / "own"), GitHost(tmp_path / "other")
    try:
        config = ServeConfig(secret=SECRET, projects=frozenset({"group/proj"}), git_token=token, gitlab_url=own.url)
        body = push(after=sha)
        body["project"]["git_http_url"] = f"{other.url}/group/proj.git"
        event = Event.from_payload(body, "k1")
        ok, message = Workers(EventQueue(tmp_path / "q.sqlite3"), config, tmp_path, Metrics(), print).process(event)
    finally:
        own.close()
        other.close()
    assert other.requests == []
    basic = "Basic " + base64.b64encode(f"oauth2:{token}".encode()).decode()
    assert own.requests and all(auth == basic for _, auth in own.requests), own.requests
    assert ok and sha[:12] in message, message
    assert token not in message


def test_a_project_served_by_id_names_no_url_to_fetch(tmp_path: Path) -> None:
    """The payload's path of a project allowed by its id is the payload's word: nothing is fetched for it."""
    from nb2kfp.delivery.worker import checkout

    config = ServeConfig(secret=SECRET, projects=frozenset({"42"}), gitlab_url="https://gitlab.example.com")
    with pytest.raises(RunError, match="served by its id"):
        checkout(Event.from_payload(push(), "k1"), tmp_path / "repos", config)
    assert not (tmp_path / "repos").exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://gitlab.example.com",
        "http://127.0.0.1.example.com",
        "https://user:pw@gitlab.example.com",
        "https://gitlab.example.com?x=1",
        "ssh://git@gitlab.example.com",
        "gitlab.example.com:group",
    ],
)
def test_the_gitlab_url_is_https_or_loopback_http(url: str) -> None:
    with pytest.raises(UsageError, match="NB2KFP_SERVE_GITLAB_URL"):
        ServeConfig.load(None, ["g/p"], {"NB2KFP_WEBHOOK_SECRET": SECRET, "NB2KFP_SERVE_GITLAB_URL": url})


def test_the_token_is_scoped_to_the_repository_and_ci_reports_to_the_servers_gitlab() -> None:
    from nb2kfp.delivery.worker import _ci_env
    from nb2kfp.git import remote_env

    env = ServeConfig.load(
        None, ["group/proj"], {"NB2KFP_WEBHOOK_SECRET": SECRET, "NB2KFP_SERVE_GITLAB_URL": "https://gl.example.com/"}
    )
    url = env.repository_url(Event.from_payload(push(), None))
    assert url == "https://gl.example.com/group/proj.git"
    git_env = remote_env("glpat-secret-token", url)
    count = int(git_env["GIT_CONFIG_COUNT"])
    keys = {git_env[f"GIT_CONFIG_KEY_{n}"]: git_env[f"GIT_CONFIG_VALUE_{n}"] for n in range(count)}
    assert keys["http.https://gl.example.com/group/proj.git.extraHeader"].startswith("Authorization: Basic ")
    assert "http.extraHeader" not in keys and keys["http.followRedirects"] == "false"
    assert git_env["GIT_ALLOW_PROTOCOL"] == "https"
    body = push()
    body["project"]["web_url"] = "https://evil.example.net/group/proj"
    assert _ci_env(Event.from_payload(body, None), SHA, env.server_url())["CI_SERVER_URL"] == "https://gl.example.com"


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

    from nb2kfp.delivery.webhook import Metrics
    from nb2kfp.delivery.worker import Workers

    queue = EventQueue(tmp_path / "queue.sqlite3", busy_timeout=0.05)
    config = ServeConfig(secret=SECRET, projects=frozenset({"42"}))
    metrics = Metrics()
    app = create_app(config, queue, metrics)
    queue.put(Event.from_payload(push(), "k1"))  # no GitLab URL configured: the event fails at once once claimed
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
        assert "NB2KFP_SERVE_GITLAB_URL" in (queue.records()[0].message or "")
        assert call(app, "GET", "/healthz")[0] == 200
        status, text = call(app, "GET", "/metrics")
        assert "nb2kfp_webhook_events_store_errors_total" in text
        assert all(len(line.splitlines()) == 1 for line in lines)
    finally:
        workers.shutdown()


def test_an_event_claimed_too_often_is_marked_failed_without_running(tmp_path: Path) -> None:
    import sqlite3

    from nb2kfp.delivery.webhook import Metrics
    from nb2kfp.delivery.worker import MAX_ATTEMPTS, Workers

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
    env["NB2KFP_SERVE_GITLAB_URL"] = "https://gitlab.example.com"
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


def test_an_expired_lease_is_reclaimed_without_a_restart(queue: EventQueue) -> None:
    """A worker that died or hangs holds its event (and so its project) only until its lease runs out: the next
    claim queues it again and takes it; the lost worker's late result is not recorded over the new claim's."""
    queue.put(Event.from_payload(push(), "k1"))
    lost = queue.claim("worker-a", lease_seconds=-1)  # a lease that has already run out
    assert lost is not None and lost.attempts == 1
    again = queue.claim("worker-b", lease_seconds=3600)
    assert again is not None and (again.id, again.attempts) == (lost.id, 2)
    assert not queue.done(lost.id, "worker-a", "late result of the lost worker", ok=True)
    assert [(r.status, r.message) for r in queue.records()] == [("in_progress", None)]
    assert queue.done(again.id, "worker-b", "failed: the retry's result", ok=False)
    assert [(r.status, r.message) for r in queue.records()] == [("failed", "failed: the retry's result")]


def test_a_live_lease_keeps_the_project_busy(queue: EventQueue) -> None:
    queue.put(Event.from_payload(push(), "k1"))
    queue.put(Event.from_payload(push(ref="refs/heads/other"), "k2"))  # same project, another branch
    assert queue.claim("worker-a", lease_seconds=3600) is not None
    assert queue.claim("worker-b", lease_seconds=3600) is None  # one event per project at a time


# ---------------------------------------------------------------- issue 24, case 11: replays under a new key


def test_a_signed_delivery_replayed_under_a_new_key_is_a_duplicate(queue: EventQueue) -> None:
    """The signature covers webhook-id, timestamp and body, not Idempotency-Key or X-Gitlab-Event-UUID: a captured
    delivery replayed within the 5 minutes under a new key was queued (and built) again."""
    import time

    from nb2kfp.delivery.webhook import sign, signing_key

    key = signing_key("whsec_" + "a2V5" * 8)
    app = create_app(ServeConfig(secret=SECRET, projects=frozenset({"42"}), signing_key=key), queue)
    body = json.dumps(push()).encode()
    stamp = str(int(time.time()))
    signed = {"webhook-id": "msg_1", "webhook-timestamp": stamp, "webhook-signature": sign(key, "msg_1", stamp, body)}
    answers = []
    for delivery in ("k1", "k2"):
        headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET, "Idempotency-Key": delivery, **signed}
        answers.append(call(app, "POST", "/webhooks/gitlab", body, {**headers, "X-Gitlab-Event-UUID": delivery}))
    assert [(status, a["status"]) for status, a in answers] == [(202, "queued"), (202, "duplicate")]
    assert answers[0][1]["id"] == answers[1][1]["id"]
    assert len(queue.records()) == 1
    other_push = push(after="cd" * 20)  # another push of the same ref is no replay
    assert post(app, other_push)[0] == 401  # unsigned: refused
    body = json.dumps(other_push).encode()
    signed["webhook-signature"] = sign(key, "msg_1", stamp, body)
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET, "Idempotency-Key": "k3", **signed}
    assert call(app, "POST", "/webhooks/gitlab", body, headers)[1]["status"] == "queued"


def test_the_same_push_for_the_project_named_by_path_is_a_duplicate(queue: EventQueue) -> None:
    queue.put(Event.from_payload(push(), "k1"))
    other_id = push(project_id=43)  # same path, another id
    assert queue.put(Event.from_payload(other_id, "k2"))[1]
    assert not queue.put(Event.from_payload(push(ref="refs/heads/other"), "k3"))[1]


# ---------------------------------------------------------------- issue 24, case 10: idle connections


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthz(port: int, timeout: float) -> int | None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def test_idle_connections_cannot_starve_the_receiver(tmp_path: Path) -> None:
    """Connections that never finish their headers held a descriptor each until the server could accept no more:
    /healthz went unanswered. The real server on 127.0.0.1, its descriptor limit lowered to 200 (as 1,024 is by
    default) so that 300 idle connections are enough; it caps connections at 100 and gives headers 1 s."""
    import contextlib
    import os
    import resource
    import socket
    import sys
    import time

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NB2KFP_")}
    env.update(
        NB2KFP_WEBHOOK_SECRET=SECRET,
        NB2KFP_SERVE_MAX_CONNECTIONS="100",
        NB2KFP_SERVE_HEADER_TIMEOUT="1",
        NB2KFP_SERVE_BODY_TIMEOUT="1",
    )
    argv = [sys.executable, "-m", "nb2kfp", "serve", "--data", str(tmp_path / "data"), "--port", str(port)]
    argv += ["--workers", "0", "--project", "42"]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=few_descriptors)
    idle: list[socket.socket] = []
    try:
        assert _wait(lambda: _healthz(port, 1) == 200), (tmp_path / "serve.log").read_text()
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            idle.append(sock)
        started = time.monotonic()
        assert _wait(lambda: _healthz(port, 1) == 200, timeout=10), (tmp_path / "serve.log").read_text()
        assert time.monotonic() - started < 8
        for sock in idle:  # each was closed by the server: over the cap at once, the others after 1 s
            with contextlib.suppress(ConnectionResetError):  # aborted: a reset
                assert sock.recv(1) == b""
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.append(slow)
        head = f"POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: {SECRET}\r\nContent-Length: 100\r\n\r\n"
        slow.sendall(head.encode() + b"{")  # then nothing: the body's deadline answers
        assert slow.recv(100).startswith(b"HTTP/1.1 408"), (tmp_path / "serve.log").read_text()
        assert "Traceback" not in (tmp_path / "serve.log").read_text()
    finally:
        for sock in idle:
            sock.close()
        server.terminate()
        server.wait(20)
        log.close()
