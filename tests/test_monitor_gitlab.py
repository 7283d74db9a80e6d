"""A drifted result opens, then updates, one GitLab issue per model (the GitLab double: its issues API)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from doubles.gitlab_server import GitLabDouble, User
from nb2kfp.commands import monitor
from nb2kfp.monitor import drift

TOKEN = "glpat-monitor-t0ken-value"
IMAGE = "registry.example.com/ml/clf@sha256:" + "c" * 64


@pytest.fixture
def server(tmp_path: Path) -> Iterator[GitLabDouble]:
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    with GitLabDouble(tmp_path / "origin.git") as double:
        double.add_token(TOKEN, User(7, "nb2kfp-bot"))
        double.add_token("alice-token", User(8, "alice"))
        yield double


def verdict(tmp_path: Path, drifted: list[str]) -> monitor.Verdict:
    kinds = {"a": "numeric", "colour": "categorical"}
    p = {"a": 1e-9 if "a" in drifted else 0.4, "colour": 0.7}
    result = drift.Result(IMAGE, 0.05, "bonferroni", 100, 50, kinds, {"a": 0.5, "colour": 1.2}, p, p, drifted)
    return monitor.Verdict(drifted, 2, tmp_path / "drift-report.html", result.as_dict())


def test_drift_opens_one_issue_then_updates_it(
    server: GitLabDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []
    monkeypatch.delenv("GITLAB_TOKEN", raising=False)
    monkeypatch.delenv("NB2KFP_GITLAB_TOKEN", raising=False)
    monitor.notify(verdict(tmp_path, ["a"]), IMAGE, lines.append)
    assert "no GitLab token" in lines[-1] and not server.issues
    monkeypatch.setenv("NB2KFP_GITLAB_TOKEN", TOKEN)
    monkeypatch.setenv("CI_SERVER_URL", server.url)
    monkeypatch.setenv("CI_PROJECT_ID", str(server.project_id))
    monkeypatch.setenv("CI_JOB_URL", "https://gitlab.example.com/ml/notebooks/-/jobs/9")
    monitor.notify(verdict(tmp_path, ["a"]), IMAGE, lines.append)
    assert lines[-1] == "GitLab issue #1 opened: Drift in the requests served by clf"
    (issue,) = server.issues.values()
    assert issue["labels"] == ["drift"] and "| a | numeric | 0.5 | 1e-09 | 1e-09 | yes |" in issue["description"]
    assert "jobs/9" in issue["description"]
    monitor.notify(verdict(tmp_path, ["a", "colour"]), IMAGE, lines.append)
    assert lines[-1] == "GitLab issue #1 updated: Drift in the requests served by clf"
    (issue,) = server.issues.values()
    assert "Drift in **a, colour**" in issue["description"]
    assert TOKEN not in "\n".join(lines)


def test_an_issue_someone_else_wrote_is_not_edited(
    server: GitLabDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2kfp.clients.gitlab import GitLabProject, marker

    with GitLabProject(server.url, str(server.project_id), "alice-token") as alice:
        alice.upsert_issue("quoting the bot", "text", "drift-clf")
    assert server.issues[1]["description"].startswith(marker("drift-clf"))
    monkeypatch.setenv("NB2KFP_GITLAB_TOKEN", TOKEN)
    monkeypatch.setenv("CI_SERVER_URL", server.url)
    monkeypatch.setenv("CI_PROJECT_ID", str(server.project_id))
    monitor.notify(verdict(tmp_path, ["a"]), IMAGE, lambda line: None)
    assert len(server.issues) == 2 and server.issues[1]["title"] == "quoting the bot"
