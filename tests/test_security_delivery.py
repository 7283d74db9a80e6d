"""Issue 24: what the CI delivery (``nb2kfp ci``, the merge request note, the webhook's queue) takes from the
repository or the payload. Real git repositories in tmp_path; the CLI in a subprocess where the exit matters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nb2kfp.errors import Diagnostic
from nbfactory import write

GIT = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev"]
GOOD = [(["step:a"], "x = 1"), (["step:b", "prev:a"], "print(x)")]
QUICK_ACTIONS = "a\n/approve\n/merge\n/x.ipynb"


def _repo(root: Path, files: dict[str, list[tuple[list[str], str]]]) -> Path:
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    for name, cells in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write(root / name, cells)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "c"], cwd=root, check=True)
    return root


def _nb2kfp(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", "NB2KFP_", "GITLAB_"))}
    command = [sys.executable, "-m", "nb2kfp", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


# ---------------------------------------------------------------- case 3: quick actions in the merge request note


def test_no_value_in_the_merge_request_note_starts_a_line() -> None:
    """A notebook path (and any other outside value) with line breaks became lines of the note starting with ``/``:
    GitLab runs those as quick actions with the bot's rights."""
    from nb2kfp.delivery.report import NotebookReport, render_mr_note

    finding = Diagnostic(QUICK_ACTIONS, "bad\n/close", code="NB031", cell=1)
    report = NotebookReport(
        notebook=QUICK_ACTIONS,
        pipeline=None,
        diagnostics=[finding],
        image="registry.example.com/img@sha256:ab\r\n/merge",
        kfp_url="https://kfp.example.com/x\n/approve",
        status="failed",
    )
    note = render_mr_note([report], "https://gitlab.example.com/p/-/pipelines/1\n/unapprove")
    assert [line for line in note.splitlines() if line.lstrip().startswith("/")] == [], note
    assert "`a\\n/approve\\n/merge\\n/x.ipynb`" in note  # shown, escaped, on the notebook's own line


def test_ci_refuses_a_notebook_path_with_control_characters(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo", {"good.ipynb": GOOD, QUICK_ACTIONS: GOOD})
    proc = _nb2kfp(repo, "ci", "lint", "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "a\\n/approve\\n/merge\\n/x.ipynb: a notebook path with control characters" in proc.stderr
    assert "/approve\n" not in proc.stdout + proc.stderr


# ---------------------------------------------------------------- case 13: links out of the repository


def test_ci_refuses_a_tracked_link_to_another_projects_notebook(tmp_path: Path) -> None:
    """``leak.ipynb -> ../other-project/private.ipynb``, tracked: ``serve`` compiled (and published) another
    project's notebook as this one's."""
    (tmp_path / "other-project").mkdir()
    write(tmp_path / "other-project" / "private.ipynb", [(["step:secret"], "key = 'private'")])
    repo = _repo(tmp_path / "repo", {"good.ipynb": GOOD, "parts/inner.ipynb": GOOD})
    (repo / "leak.ipynb").symlink_to("../other-project/private.ipynb")
    (repo / "inside.ipynb").symlink_to("parts/inner.ipynb")  # a link that stays inside is fine
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "links"], cwd=repo, check=True)
    out = tmp_path / "out"
    proc = _nb2kfp(repo, "ci", "compile", "--output-dir", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "leak.ipynb: a link to a notebook outside" in proc.stderr
    assert not (out / "specs" / "leak.pipeline.yaml").exists()
    (repo / "leak.ipynb").unlink()
    proc = _nb2kfp(repo, "ci", "compile", "--output-dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "specs" / "inside.pipeline.yaml").is_file()
