"""nb2kfp.clients.gitlab (python-gitlab) against the GitLab double, and ``plan`` against a real git repository.

The double (tests/doubles/gitlab_server.py) is a real HTTP server on 127.0.0.1 backed by a real bare
git repository. It does not cover pagination, GitLab's permissions model (roles, token scopes, what a
job token may not do), webhooks, rate limits, the compare endpoint or pipelines: see its docstring.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import IN_CI, git
from doubles.gitlab_server import GitLabDouble, User
from nb2kfp import git as nbgit
from nb2kfp.backends import plan as planner
from nb2kfp.clients.gitlab import MARKER, GitLabProject
from nb2kfp.commands import plan as plan_command
from nb2kfp.delivery.report import NotebookReport, render_mr_note
from nb2kfp.errors import Diagnostic, RunError, Severity
from nb2kfp.frontend.builder import build
from nbfactory import Cell, write

pytestmark = pytest.mark.slow

TOKEN = "glpat-s3cr3t-t0ken-value"
BOT = User(7, "nb2kfp-bot", "nb2kfp bot")
HUMAN = User(8, "alice")

if shutil.which("git") is None:  # pragma: no cover - git is part of every dev and CI machine
    if IN_CI:
        pytest.fail("CI must provide this: git is not installed", pytrace=False)
    pytest.skip("git is not installed", allow_module_level=True)


def cells(prep: str = "clean = [x * 2 for x in data]") -> list[Cell]:
    return [
        (["pipeline-parameters"], "n = 3"),
        (["step:load"], "data = list(range(n))"),
        (["step:prep", "prev:load"], prep),
        (["step:train", "prev:prep"], "model = sum(clean)"),
        (["step:report", "prev:load"], "size = len(data)"),
    ]


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, object]:
    """A bare repository with two commits pushed from a working clone: c1 -> c2 (on main), plus a branch."""
    bare, work = tmp_path / "origin.git", tmp_path / "work"
    git(tmp_path, "init", "--bare", str(bare))
    git(tmp_path, "clone", str(bare), str(work))
    write(work / "pipeline.ipynb", cells())
    (work / "notes.txt").write_text("to be deleted\n")
    (work / "moved.txt").write_text("a file that is renamed, unchanged\n" * 5)
    git(work, "add", "-A")
    git(work, "commit", "-m", "first")
    c1 = git(work, "rev-parse", "HEAD")
    write(work / "pipeline.ipynb", cells("clean = [x * 3 for x in data]"))
    (work / "notes.txt").unlink()
    git(work, "mv", "moved.txt", "renamed.txt")
    (work / "new.txt").write_text("new\n")
    git(work, "add", "-A")
    git(work, "commit", "-m", "second")
    c2 = git(work, "rev-parse", "HEAD")
    git(work, "push", "origin", "main")
    git(work, "push", "origin", "main:feature")
    return {"bare": bare, "work": work, "c1": c1, "c2": c2}


@pytest.fixture
def server(repo: dict[str, object]) -> Iterator[GitLabDouble]:
    with GitLabDouble(Path(str(repo["bare"]))) as double:
        double.add_token(TOKEN, BOT)
        double.add_token("alice-token", HUMAN)
        double.add_token("oauth-token", BOT, kind="oauth")
        double.add_token("job-token", BOT, kind="job")
        double.add_merge_request(5, "feature", "main")
        yield double


def project(server: GitLabDouble, token: str = TOKEN, kind: str = "private") -> GitLabProject:
    return GitLabProject(server.url, str(server.project_id), token, kind)  # type: ignore[arg-type]


def test_statuses_are_posted_with_state_and_name(server: GitLabDouble, repo: dict[str, object]) -> None:
    sha = str(repo["c2"])
    gl = project(server)
    gl.set_status(sha, "running", "nb2kfp: pipeline.ipynb", "compiling")
    gl.set_status(sha, "running", "nb2kfp: pipeline.ipynb", "compiling")  # GitLab's 400 for the same state: no error
    gl.set_status(sha, "success", "nb2kfp: pipeline.ipynb", "pipeline compiled", "https://kfp.example.com/v/1")
    posted = [(s["status"], s["name"]) for s in server.statuses[sha]]
    assert posted == [("running", "nb2kfp: pipeline.ipynb"), ("success", "nb2kfp: pipeline.ipynb")]
    assert server.statuses[sha][-1]["target_url"] == "https://kfp.example.com/v/1"
    posts = [r for r in server.requests if r["method"] == "POST"]
    assert {r["path"] for r in posts} == {f"/projects/{server.project_id}/statuses/{sha}"}
    assert [r["status"] for r in posts] == [201, 400, 201]

    import gitlab

    listed = gitlab.Gitlab(server.url, private_token=TOKEN).projects.get(server.project_id).commits.get(sha, lazy=True)
    assert [s.status for s in listed.statuses.list(get_all=True)] == ["success"]
    with pytest.raises(ValueError, match="state must be one of"):
        gl.set_status(sha, "done", "x", "y")


def test_mr_note_is_created_once_then_updated_in_place(server: GitLabDouble, repo: dict[str, object]) -> None:
    work = Path(str(repo["work"]))
    pipeline = build(work / "pipeline.ipynb").pipeline
    first = render_mr_note([NotebookReport("pipeline.ipynb", pipeline)], "https://gitlab.example.com/p/1")
    gl = project(server)
    # someone quoting the marker in their own note must not make us edit (or fail to edit) theirs
    project(server, "alice-token").upsert_mr_note(5, f"quoting {MARKER}")
    note_id = gl.upsert_mr_note(5, first)
    second = render_mr_note(
        [NotebookReport("pipeline.ipynb", pipeline, status="failed", image="reg.example.com/ml/p@sha256:abc")], None
    )
    assert gl.upsert_mr_note(5, second) == note_id
    assert gl.upsert_mr_note(5, second) == note_id  # unchanged: no PUT at all
    ours = [n for n in server.notes[5] if n["author"]["id"] == BOT.id]
    assert len(ours) == 1 and ours[0]["id"] == note_id and ours[0]["body"] == second
    assert [r["method"] for r in server.requests if "/notes" in r["path"]].count("PUT") == 1
    assert len(server.notes[5]) == 2  # alice's note is untouched


def test_mr_note_is_never_edited_when_the_bot_user_is_unknown(server: GitLabDouble, repo: dict[str, object]) -> None:
    """GET /user refused (a token that may not ask, e.g. a job token): a note carrying the marker may be someone
    else's, quoting it, so the report writes a note of its own and edits none."""
    quoted = f"quoting {MARKER} in a review"
    alice = project(server, "alice-token").upsert_mr_note(5, quoted)
    server.fail_next("GET", r"^/user$", 403)
    gl = project(server)
    ours = gl.upsert_mr_note(5, "the report")
    assert ours != alice
    assert [r["method"] for r in server.requests if "/notes" in r["path"]].count("PUT") == 0
    bodies = {n["id"]: n["body"] for n in server.notes[5]}
    assert bodies == {alice: quoted, ours: f"{MARKER}\nthe report"}


def test_two_includes_keep_two_notes(server: GitLabDouble, repo: dict[str, object]) -> None:
    """The component included twice (job_prefix "" and "vision-"): each report job updates its own note."""
    pipeline = build(Path(str(repo["work"])) / "pipeline.ipynb").pipeline
    gl = project(server)
    plain = gl.upsert_mr_note(5, render_mr_note([NotebookReport("pipeline.ipynb", pipeline)], None))
    keyed = render_mr_note([NotebookReport("vision/pipeline.ipynb", pipeline)], None, key="vision-")
    assert keyed.startswith("<!-- nb2kfp:report:vision- -->\n")
    vision = gl.upsert_mr_note(5, keyed, key="vision-")
    assert vision != plain
    again = render_mr_note([NotebookReport("pipeline.ipynb", pipeline, status="failed")], None)
    assert gl.upsert_mr_note(5, again) == plain
    bodies = {n["id"]: n["body"] for n in server.notes[5]}
    assert bodies == {plain: again, vision: keyed}


def test_changed_files_lists_both_paths_of_a_rename_and_deleted_files(repo: dict[str, object]) -> None:
    """What ci and the webhook build: the files a push changed, read from the clone (git diff)."""
    work = Path(str(repo["work"]))
    changed = nbgit.changed_files(str(repo["c1"]), str(repo["c2"]), work)
    assert changed == ["moved.txt", "new.txt", "notes.txt", "pipeline.ipynb", "renamed.txt"]
    assert nbgit.changed_files("0" * 40, "HEAD", work) == ["new.txt", "pipeline.ipynb", "renamed.txt"]


@pytest.mark.parametrize(("token", "kind"), [("oauth-token", "oauth"), ("job-token", "job")])
def test_other_auth_headers(server: GitLabDouble, repo: dict[str, object], token: str, kind: str) -> None:
    project(server, token, kind).set_status(str(repo["c1"]), "pending", "nb2kfp", "queued")
    assert server.requests[-1]["auth"] == kind and server.requests[-1]["status"] == 201


def _one_line_without_token(exc: pytest.ExceptionInfo[RunError], token: str) -> str:
    text = str(exc.value)
    assert "\n" not in text and token not in text
    return text


def test_errors_are_one_line_and_never_show_the_token(server: GitLabDouble, repo: dict[str, object]) -> None:
    bad = "glpat-wrong-token-123456"
    with pytest.raises(RunError) as exc:
        project(server, bad).set_status(str(repo["c1"]), "running", "nb2kfp", "x")
    assert "401 unauthorized" in _one_line_without_token(exc, bad)

    server.fail_next("GET", r"/notes$", 500, f"boom {TOKEN}")  # even a server echoing the token back
    with pytest.raises(RunError) as exc:
        project(server).upsert_mr_note(5, "body")
    assert "500" in _one_line_without_token(exc, TOKEN) and "****" in str(exc.value)

    with pytest.raises(RunError) as exc:
        project(server).upsert_mr_note(99, "body")
    assert "404" in _one_line_without_token(exc, TOKEN)

    with pytest.raises(RunError) as exc:
        project(server).set_status("f" * 40, "running", "nb2kfp", "x")
    assert "404" in _one_line_without_token(exc, TOKEN)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    with pytest.raises(RunError) as exc:
        GitLabProject(f"http://127.0.0.1:{port}", "1", TOKEN, timeout=2).set_status("a" * 40, "running", "n", "d")
    assert "cannot reach" in _one_line_without_token(exc, TOKEN)


def test_from_env() -> None:
    assert GitLabProject.from_env({"CI_SERVER_URL": "https://gitlab.example.com", "CI_PROJECT_ID": "3"}) is None
    gl = GitLabProject.from_env(
        {"CI_API_V4_URL": "https://gitlab.example.com/api/v4", "CI_PROJECT_ID": "3", "GITLAB_TOKEN": TOKEN}
    )
    assert gl is not None and gl.url == "https://gitlab.example.com" and TOKEN not in repr(gl)
    with pytest.raises(RunError, match="CI_PROJECT_ID"):
        GitLabProject.from_env({"NB2KFP_GITLAB_TOKEN": TOKEN})


def test_mr_note_rendering(repo: dict[str, object]) -> None:
    work = Path(str(repo["work"]))
    pipeline = build(work / "pipeline.ipynb").pipeline
    old = build(work / "pipeline.ipynb", data=nbgit.show(str(repo["c1"]), "pipeline.ipynb", work)).pipeline
    entries = [
        NotebookReport(
            "z/other.ipynb",
            None,
            diagnostics=[Diagnostic("z/other.ipynb", "name 'x' is not defined", Severity.ERROR, "NB201", 4, 1)],
            status="failed",
        ),
        NotebookReport(
            "pipeline.ipynb",
            pipeline,
            planner.diff(old, pipeline),
            image="reg.example.com/ml/pipeline@sha256:" + "a" * 64,
            kfp_url="https://kfp.example.com/#/pipelines/details/p/version/v",
        ),
    ]
    note = render_mr_note(entries, "https://gitlab.example.com/ml/notebooks/-/pipelines/9")
    assert note == render_mr_note(list(reversed(entries)), "https://gitlab.example.com/ml/notebooks/-/pipelines/9")
    assert note.startswith(MARKER + "\n## nb2kfp: 2 notebook(s), 1 failed\n")
    assert note.index("`pipeline.ipynb`") < note.index("`z/other.ipynb`")
    assert '```mermaid\nflowchart TD\n  s_load["load"]' in note
    assert "| `prep` | changed | code | runs (changed: code) |" in note
    assert "| `report` | unchanged | - | served from cache |" in note
    assert "- image: `reg.example.com/ml/pipeline@sha256:" in note
    assert "- KFP pipeline version: https://kfp.example.com/" in note
    assert "z/other.ipynb: cell 4, line 1: error: name 'x' is not defined [NB201]" in note
    assert "\n\n\n" not in note


def test_plan_command_against_a_git_ref(repo: dict[str, object]) -> None:
    work = Path(str(repo["work"]))
    notebook = work / "pipeline.ipynb"
    lines: list[str] = []
    # the working tree equals HEAD (c2), which changed prep against c1
    assert plan_command.run(notebook, str(repo["c1"]), "text", lines.append) == 0
    text = "\n".join(lines)
    rows = [line.split(None, 3) for line in lines[0].splitlines()[1:5]]
    assert rows == [
        ["load", "unchanged", "-", "served from cache"],
        ["prep", "changed", "code", "runs (changed: code)"],
        ["train", "unchanged", "-", "runs (upstream re-runs: prep)"],
        ["report", "unchanged", "-", "served from cache"],
    ]
    assert text.endswith("2 of 4 step(s) run, 2 served from cache")

    lines.clear()
    write(notebook, cells("clean = [x * 4 for x in data]"))  # an uncommitted edit, against HEAD
    plan_command.run(notebook, "HEAD", "json", lines.append)
    data = json.loads(lines[0])
    assert data["base"] == "compiled"
    assert [(s["step"], s["cached"]) for s in data["steps"]] == [
        ("load", True),
        ("prep", False),
        ("train", False),
        ("report", True),
    ]

    lines.clear()
    fresh = write(work / "fresh.ipynb", cells())
    plan_command.run(fresh, "HEAD", "markdown", lines.append)
    assert lines[0].startswith(f"_{fresh} does not exist at HEAD: every step is new_")
    assert "| `load` | added | - | runs (new step) |" in lines[0]

    with pytest.raises(RunError, match="names no commit"):
        plan_command.run(notebook, "no-such-ref", "text", lines.append)


def test_two_includes_report_separately(server: GitLabDouble, repo: dict[str, object], tmp_path: Path) -> None:
    """`nb2kfp ci report` as two includes of the component run it (NB2KFP_REPORT_KEY = their job_prefix) on
    the same notebook: two commit statuses and two merge request notes, neither overwriting the other."""
    import sys

    work, sha = Path(str(repo["work"])), str(repo["c2"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "NB2KFP_", "GITLAB_"))}
    env |= {
        "NB2KFP_GITLAB_TOKEN": TOKEN,
        "CI_SERVER_URL": server.url,
        "CI_PROJECT_ID": str(server.project_id),
        "CI_COMMIT_SHA": sha,
        "CI_MERGE_REQUEST_IID": "5",
    }
    for key in ("", "vision-"):
        out = tmp_path / f"out{key}"
        command = [sys.executable, "-m", "nb2kfp", "ci", "report", "--notebooks", "*.ipynb", "--output-dir", str(out)]
        done = subprocess.run(command, cwd=work, env={**env, "NB2KFP_REPORT_KEY": key}, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    names = {s["name"] for s in server.statuses[sha]}
    assert names == {"nb2kfp: pipeline.ipynb", "nb2kfp vision: pipeline.ipynb"}
    marks = sorted(n["body"].splitlines()[0] for n in server.notes[5])
    assert marks == ["<!-- nb2kfp:report -->", "<!-- nb2kfp:report:vision- -->"]
