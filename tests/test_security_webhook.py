"""Security cases 2 and 8 (issue 14): payload values that reach git, and the receiver's faults. The receiver is
called in-process through ASGI (tests/asgi.py); git and SQLite are the real ones."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from asgi import call
from nb2kfp.errors import RunError
from nb2kfp.gitlab.queue import Event, EventQueue
from nb2kfp.gitlab.webhook import ServeConfig, create_app

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
