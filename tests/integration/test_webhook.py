"""`nb2kfp serve`: the webhook receiver over real HTTP on 127.0.0.1, fed by a real `git push` into a bare repository
whose post-receive hook posts GitLab-shaped push payloads and headers (as GitLab does after a push).

Not covered by this setup (no GitLab can run here): GitLab itself (its retry schedule, its disabling of failing
hooks, its exact payload for every field: the hook writes the fields nb2kfp reads plus the usual ones), TLS in
front of the receiver, fetching over smart HTTP with a token (the repositories are fetched by path; that the token
stays out of argv and URLs is checked on the command and environment git gets), and commit statuses (no GitLab API).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbfactory import write

pytestmark = pytest.mark.slow
SECRET = "s3cret-webhook-token"
PROJECT_ID = 42
GIT = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev"]
GOOD = [(["step:load"], "x = 1\n"), (["step:show"], "print(x)\n")]
BROKEN = [(["step:load"], "x = 1\n"), (["step:train"], "y = x +\n")]

HOOK = """#!{python}
# post-receive: post one GitLab push / tag push hook per updated ref (what GitLab does after a push).
import json, os, subprocess, sys, urllib.error, urllib.request, uuid

ZEROS = "0" * 40
here = os.getcwd()  # the bare repository
project = json.load(open(os.path.join(here, "project.json")))
url, token = os.environ["NB2KFP_HOOK_URL"], os.environ.get("NB2KFP_HOOK_TOKEN", "")
repeat = int(os.environ.get("NB2KFP_HOOK_REPEAT", "1"))


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


for line in sys.stdin:
    before, after, ref = line.split()
    tag = ref.startswith("refs/tags/")
    commits, total = [], 0
    if after != ZEROS and before != ZEROS:  # GitLab sends no commits on branch creation
        revs = git("rev-list", f"{{before}}..{{after}}").split()
        total = len(revs)
        for rev in revs[:20]:
            commits.append({{"id": rev, "message": git("log", "-1", "--format=%B", rev), "url": "", "added": [],
                            "modified": [], "removed": []}})
    kind = "tag_push" if tag else "push"
    payload = {{
        "object_kind": kind, "event_name": kind, "before": before, "after": after, "ref": ref,
        "ref_protected": False,
        "checkout_sha": None if after == ZEROS else git("rev-parse", after + "^{{commit}}").strip(),
        "user_id": 1, "user_name": "Dev", "user_username": "dev", "project_id": project["id"], "project": project,
        "commits": commits, "total_commits_count": total, "repository": {{"name": project["name"]}},
    }}
    body = json.dumps(payload).encode()
    key = str(uuid.uuid4())
    for attempt in range(repeat):  # GitLab retries with the same Idempotency-Key
        request = urllib.request.Request(url, data=body, method="POST", headers={{
            "Content-Type": "application/json", "User-Agent": "GitLab/17.0", "X-Gitlab-Token": token,
            "X-Gitlab-Event": "Tag Push Hook" if tag else "Push Hook", "X-Gitlab-Event-UUID": str(uuid.uuid4()),
            "X-Gitlab-Instance": "https://gitlab.example.com", "Idempotency-Key": key}})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, answer = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read().decode()
        with open(os.path.join(here, "hook-log.jsonl"), "a") as log:
            log.write(json.dumps({{"ref": ref, "after": after, "key": key, "status": status,
                                  "answer": json.loads(answer)}}) + "\\n")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`nb2kfp serve` (commands.serve.run) in a subprocess, so that it can be killed with SIGKILL."""

    def __init__(self, data: Path, workers: int, projects: tuple[str, ...] = ("group/proj",)) -> None:
        self.data, self.workers, self.projects = data, workers, projects
        self.port = _free_port()
        self.secret_file = data.parent / "secret"
        self.secret_file.write_text(SECRET + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}/webhooks/gitlab"

    def start(self) -> Server:
        code = (
            "import functools, sys\nfrom pathlib import Path\nfrom nb2kfp.commands.serve import run\n"
            f"sys.exit(run('127.0.0.1', {self.port}, Path({str(self.data)!r}), Path({str(self.secret_file)!r}),"
            f" {list(self.projects)!r}, {self.workers}, functools.partial(print, flush=True)))\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NB2KFP_", "CI_"))}
        env["NB2KFP_SERVE_ALLOW_LOCAL_REPOS"] = "1"  # the projects are bare repositories on this machine
        env["NB2KFP_SERVE_GITLAB_URL"] = str(self.data.parent / "gitlab")  # where Project puts them
        log = open(self.data.parent / f"serve-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.data.parent / f"serve-{self.port}.log").read_text()
            try:
                if request(self.port, "GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the server did not start")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        self.proc.wait(20)
        self.proc = None


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any] | str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        text = response.read().decode()
    finally:
        conn.close()
    try:
        return response.status, json.loads(text)
    except ValueError:
        return response.status, text


def hook_headers(**extra: str) -> dict[str, str]:
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET, "Idempotency-Key": str(uuid.uuid4()), **extra}


def rows(data: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(data / "queue.sqlite3", timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM events ORDER BY id")]
    finally:
        db.close()


def wait_until_settled(data: Path, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = rows(data)
        if found and all(r["status"] not in ("queued", "in_progress") for r in found):
            return found
        time.sleep(0.1)
    raise AssertionError(f"events still pending: {rows(data)}")


class Project:
    """A bare repository (the "GitLab project") with the post-receive hook, and a clone to push from."""

    def __init__(self, root: Path, port: int) -> None:
        self.bare = root / "gitlab" / "group" / "proj.git"
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.bare)], check=True)
        info = {
            "id": PROJECT_ID,
            "name": "proj",
            "path_with_namespace": "group/proj",
            "web_url": "https://gitlab.example.com/group/proj",
            "git_http_url": str(self.bare),
            "default_branch": "main",
        }
        (self.bare / "project.json").write_text(json.dumps(info))
        hook = self.bare / "hooks" / "post-receive"
        hook.write_text(HOOK.format(python=sys.executable))
        hook.chmod(0o755)
        self.work = root / "work"
        subprocess.run(["git", "init", "-q", "-b", "main", str(self.work)], check=True)
        subprocess.run(["git", "remote", "add", "origin", str(self.bare)], cwd=self.work, check=True)
        self.port = port

    def commit(self, files: dict[str, list[Any] | str], message: str = "change") -> str:
        for name, content in files.items():
            target = self.work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                target.write_text(content)
            else:
                write(target, content)
        subprocess.run([*GIT, "add", "-A"], cwd=self.work, check=True)
        subprocess.run([*GIT, "commit", "-qm", message], cwd=self.work, check=True)
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=self.work, capture_output=True, text=True
        ).stdout.strip()

    def push(self, *refspecs: str, repeat: int = 1) -> list[dict[str, Any]]:
        """Push; the hook's answers for this push (status and JSON body per request)."""
        log = self.bare / "hook-log.jsonl"
        seen = len(log.read_text().splitlines()) if log.exists() else 0
        env = {**os.environ, "NB2KFP_HOOK_URL": f"http://127.0.0.1:{self.port}/webhooks/gitlab"}
        env.update(NB2KFP_HOOK_TOKEN=SECRET, NB2KFP_HOOK_REPEAT=str(repeat))
        subprocess.run(["git", "push", "-q", "origin", *refspecs], cwd=self.work, env=env, check=True)
        return [json.loads(line) for line in log.read_text().splitlines()[seen:]]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "serve"


@pytest.fixture
def server_factory(data: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop(kill=True)


def _start(started: list[Server], data: Path, workers: int, port: int | None = None) -> Server:
    server = Server(data, workers)
    if port is not None:
        server.port, server.url = port, f"http://127.0.0.1:{port}/webhooks/gitlab"
    started.append(server.start())
    return server


def test_refuses_bad_requests_and_queues_nothing(data: Path, server_factory: list[Server]) -> None:
    """Token, size, JSON and event-kind checks over real HTTP. Not covered: GitLab's own retry/disable behaviour
    after these answers, and the signing-token path (GitLab's webhook-signature; see the unit check below)."""
    port = _start(server_factory, data, workers=0).port
    push = json.dumps({"object_kind": "push", "project_id": PROJECT_ID, "ref": "refs/heads/main"}).encode()
    assert request(port, "POST", "/webhooks/gitlab", push, {"X-Gitlab-Event": "Push Hook"})[0] == 401
    assert request(port, "POST", "/webhooks/gitlab", push, hook_headers(**{"X-Gitlab-Token": "wrong"}))[0] == 401
    status, answer = request(port, "POST", "/webhooks/gitlab", b"{not json", hook_headers())
    assert status == 400 and isinstance(answer, dict) and answer["reason"].startswith("malformed JSON")
    assert request(port, "POST", "/webhooks/gitlab", push, hook_headers())[0] == 400  # no before/after
    try:
        status = request(port, "POST", "/webhooks/gitlab", b"{" + b" " * (1 << 20) + b"}", hook_headers())[0]
    except (BrokenPipeError, ConnectionResetError):
        status = 413  # the server answered and closed before the client finished sending
    assert status == 413
    status, answer = request(port, "POST", "/webhooks/gitlab", push, hook_headers(**{"X-Gitlab-Event": "Issue Hook"}))
    assert status == 202 and isinstance(answer, dict) and answer["status"] == "ignored"
    other = {"object_kind": "push", "project_id": 7, "ref": "refs/heads/main", "before": "0" * 40, "after": "a" * 40}
    status, answer = request(port, "POST", "/webhooks/gitlab", json.dumps(other).encode(), hook_headers())
    assert status == 202 and isinstance(answer, dict) and answer["status"] == "ignored"
    assert rows(data) == []
    status, metrics = request(port, "GET", "/metrics")
    assert status == 200 and isinstance(metrics, str)
    assert "nb2kfp_webhook_events_received_total 7" in metrics
    assert 'nb2kfp_webhook_events_rejected_total{code="401"} 2' in metrics
    assert 'nb2kfp_webhook_events_ignored_total{reason="project"} 1' in metrics
    assert "nb2kfp_webhook_events_queued 0" in metrics


def test_signature_and_git_token_stay_out_of_argv() -> None:
    """GitLab's signing token (Standard Webhooks: v1,base64 HMAC-SHA256 of id.timestamp.body) and the git token's
    route to git. Not covered: a real GitLab signing a request, and a real HTTP git server reading the header."""
    from nb2kfp.delivery.webhook import sign, signature_ok, signing_key
    from nb2kfp.git import remote_env as git_env

    key = signing_key("whsec_" + "a2V5" * 8)
    headers = {"webhook-id": "k1", "webhook-timestamp": str(int(time.time()))}
    headers["webhook-signature"] = "v1,bogus " + sign(key, "k1", headers["webhook-timestamp"], b"{}")
    assert signature_ok(key, headers, b"{}")
    assert not signature_ok(key, headers, b"{ }")
    assert not signature_ok(key, {**headers, "webhook-timestamp": "1"}, b"{}")
    env = git_env("glpat-secret-token", "https://gitlab.example.com/group/proj.git")
    assert env["GIT_CONFIG_KEY_1"] == "http.https://gitlab.example.com/group/proj.git.extraHeader"
    assert "glpat-secret-token" not in env["GIT_CONFIG_VALUE_1"]
    assert env["GIT_CONFIG_VALUE_1"].startswith("Authorization: Basic ")


def test_push_is_processed_once_and_errors_are_located(
    tmp_path: Path, data: Path, server_factory: list[Server]
) -> None:
    """A real push, delivered twice with the same Idempotency-Key (a GitLab retry): acknowledged both times, queued
    and processed once; then a push with a notebook that does not compile, a branch deletion and an annotated tag.
    Not covered: the GitLab commit statuses the ci report phase would set (no GitLab API here, it logs only)."""
    server = _start(server_factory, data, workers=1)
    project = Project(tmp_path, server.port)
    project.commit({"good.ipynb": GOOD})
    answers = project.push("main", repeat=2)
    assert [a["status"] for a in answers] == [202, 202]
    assert [a["answer"]["status"] for a in answers] == ["queued", "duplicate"]
    assert answers[0]["answer"]["id"] == answers[1]["answer"]["id"]
    (first,) = wait_until_settled(data)
    assert first["status"] == "done" and first["attempts"] == 1, first["message"]
    out = data / "out" / str(first["id"])
    state = json.loads((out / "ci.json").read_text())
    assert state["notebooks"]["good.ipynb"]["status"] == "success"
    assert (out / "specs" / "good.pipeline.yaml").is_file()

    subprocess.run(["git", "checkout", "-qb", "feature"], cwd=project.work, check=True)
    project.commit({"broken.ipynb": BROKEN})
    project.push("feature")
    broken = wait_until_settled(data)[-1]
    assert broken["status"] == "failed"
    lines = broken["message"].splitlines()  # from the ci.json the run wrote: the failed notebook, its errors once
    assert lines[1:] == [
        "broken.ipynb: does not compile",
        "broken.ipynb: cell 2, line 1: error: syntax error: invalid syntax [NB031]",
    ]
    project.push("--delete", "feature")
    deleted = wait_until_settled(data)[-1]
    assert deleted["status"] == "done" and "nothing to build" in deleted["message"]
    subprocess.run([*GIT, "tag", "-a", "v1", "-m", "release", "main"], cwd=project.work, check=True)
    (answer,) = project.push("v1")
    tagged = wait_until_settled(data)[-1]
    assert answer["answer"]["id"] == tagged["id"] and tagged["kind"] == "tag_push"
    assert tagged["status"] == "done" and tagged["message"].startswith(f"ok: {first['after'][:12]}, everything")
    metrics = request(server.port, "GET", "/metrics")[1]
    assert isinstance(metrics, str)
    assert "nb2kfp_webhook_events_deduplicated_total 1" in metrics
    assert "nb2kfp_webhook_events_processed_total 3" in metrics and "nb2kfp_webhook_events_failed_total 1" in metrics
    assert SECRET not in (tmp_path / f"serve-{server.port}.log").read_text()


def test_newer_push_supersedes_a_queued_one(tmp_path: Path, data: Path, server_factory: list[Server]) -> None:
    """Two pushes to main while nothing processes (workers=0): the older is superseded, the newer keeps the older's
    base so both pushes' notebooks count as changed once a worker runs it. Not covered: GitLab's ordering of
    deliveries (here they arrive in push order)."""
    server = _start(server_factory, data, workers=0)
    project = Project(tmp_path, server.port)
    project.commit({"a.ipynb": GOOD, "b.ipynb": GOOD, "c.ipynb": GOOD})
    project.push("main")
    project.commit({"a.ipynb": [*GOOD, ([], "z = 2\n")]})
    project.push("main")
    project.commit({"b.ipynb": [*GOOD, ([], "z = 3\n")]})
    project.push("main")
    first, second, third = rows(data)
    assert [first["status"], second["status"], third["status"]] == ["superseded", "superseded", "queued"]
    assert second["superseded_by"] == third["id"] and third["base"] == first["before"] == "0" * 40
    server.stop()
    # an update after a processed push keeps its own base
    server = _start(server_factory, data, workers=1, port=server.port)
    settled = wait_until_settled(data)
    assert [r["status"] for r in settled] == ["superseded", "superseded", "done"]
    project.commit({"c.ipynb": [*GOOD, ([], "z = 4\n")]})
    project.push("main")
    last = wait_until_settled(data)[-1]
    assert last["status"] == "done" and last["base"] == third["after"], last
    state = json.loads((data / "out" / str(last["id"]) / "ci.json").read_text())
    assert {nb: e["changed"] for nb, e in state["notebooks"].items()} == {
        "a.ipynb": False,
        "b.ipynb": False,
        "c.ipynb": True,
    }


def test_kill_9_loses_nothing(tmp_path: Path, data: Path, server_factory: list[Server]) -> None:
    """SIGKILL while one event is in progress and others are queued; after a restart every event is processed, once
    in effect (one row per delivery, done; only the interrupted one ran twice). Not covered: power loss (fsync is
    trusted as SQLite's synchronous=FULL uses it) and a crash between GitLab's send and the commit (GitLab retries
    those: no 2xx was sent)."""
    server = _start(server_factory, data, workers=1)
    project = Project(tmp_path, server.port)
    project.commit({"good.ipynb": GOOD, "more.ipynb": GOOD})
    branches = [f"b{n}" for n in range(8)]
    answers = project.push(*(f"HEAD:refs/heads/{b}" for b in branches))
    assert [a["answer"]["status"] for a in answers] == ["queued"] * len(branches)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses = [r["status"] for r in rows(data)]
        if "in_progress" in statuses and "queued" in statuses:
            break
        time.sleep(0.005)
    else:
        raise AssertionError(f"never caught an event in progress: {rows(data)}")
    server.stop(kill=True)
    before = rows(data)
    assert any(r["status"] == "in_progress" for r in before) and any(r["status"] == "queued" for r in before)
    _start(server_factory, data, workers=2, port=server.port)
    settled = wait_until_settled(data)
    assert len(settled) == len(branches) and len({r["key"] for r in settled}) == len(branches)
    assert all(r["status"] == "done" for r in settled), [r["message"] for r in settled]
    interrupted = {r["id"] for r in before if r["status"] == "in_progress"}
    assert {r["id"] for r in settled if r["attempts"] == 2} == interrupted
    assert all(r["attempts"] == 1 for r in settled if r["id"] not in interrupted)
    for r in settled:
        state = json.loads((data / "out" / str(r["id"]) / "ci.json").read_text())
        assert {e["status"] for e in state["notebooks"].values()} == {"success"}
