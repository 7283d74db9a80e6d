"""`nb2kfp init`: adds what is missing, keeps what is there, shows a diff, and is idempotent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from conftest import EXAMPLES
from nb2kfp.config import find_settings


def init(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2kfp", "init", str(folder), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )


def test_init_adds_settings_hooks_ci_and_example_without_clobbering(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mine"  # keep this comment\n')
    (tmp_path / ".pre-commit-config.yaml").write_text(
        "repos:\n- repo: https://github.com/kynan/nbstripout\n  rev: 0.7.1\n  hooks:\n  - id: nbstripout\n"
        "ci:\n  autofix_prs: false\n"
    )
    (tmp_path / ".gitlab-ci.yml").write_text("stages: [test]\ninclude:\n  - local: ci/other.yml\n")
    proc = init(tmp_path, "--yes", "--ci-component", "gitlab.example.com/ml/nb2kfp/nb2kfp@1.0")
    assert proc.returncode == 0, proc.stderr
    assert "+[tool.nb2kfp]" in proc.stdout  # the diff was shown
    assert "# keep this comment" in (tmp_path / "pyproject.toml").read_text()
    assert find_settings(tmp_path).image == "python:3.11-slim"
    hooks = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text())
    assert [h["id"] for r in hooks["repos"] for h in r["hooks"]] == ["nbstripout", "nb2kfp-lint", "nb2kfp-compile"]
    assert hooks["ci"] == {"autofix_prs": False}
    ci = yaml.safe_load((tmp_path / ".gitlab-ci.yml").read_text())
    assert ci["include"] == [{"local": "ci/other.yml"}, {"component": "gitlab.example.com/ml/nb2kfp/nb2kfp@1.0"}]
    example = tmp_path / "notebooks" / "example_pipeline.ipynb"
    assert example.read_bytes() == (EXAMPLES / "wordcount.ipynb").read_bytes()
    lint = subprocess.run([sys.executable, "-m", "nb2kfp", "lint", str(example)], capture_output=True, text=True)
    assert lint.returncode == 0
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = init(tmp_path, "--yes", "--ci-component", "gitlab.example.com/ml/nb2kfp/nb2kfp@1.0")
    assert again.returncode == 0 and "nothing to change" in again.stdout
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_init_asks_and_dry_run_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "some.ipynb").write_text((EXAMPLES / "wordcount.ipynb").read_text())
    dry = init(tmp_path, "--dry-run")
    assert dry.returncode == 0 and "nb2kfp.toml" in dry.stdout and "example_pipeline" not in dry.stdout
    no_tty = init(tmp_path)
    assert no_tty.returncode == 1 and "--yes" in no_tty.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some.ipynb"]


def test_init_refuses_what_it_cannot_edit_safely(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("include: 'ci/other.yml'\n")
    proc = init(tmp_path, "--yes", "--ci-component", "x.example.com/g/p/c@1")
    assert proc.returncode == 2 and "make it a list" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / ".gitlab-ci.yml").unlink()
    (tmp_path / "pyproject.toml").write_text("[project\nbroken")
    proc = init(tmp_path, "--yes")
    assert proc.returncode == 2 and "not valid TOML" in proc.stderr


def test_init_refuses_a_file_linked_out_of_the_repository(tmp_path: Path) -> None:
    """Issue 24, case 8: a cloned repository's `.gitignore` linked to a private key was read, shown, and rewritten
    as a 0644 file of the repository holding the key."""
    repo, secret = tmp_path / "repo", tmp_path / "home" / "id_ed25519"
    repo.mkdir()
    secret.parent.mkdir()
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    secret.chmod(0o600)
    (repo / ".gitignore").symlink_to(secret)
    proc = init(repo, "--yes")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"{repo / '.gitignore'}: a link out of the repository; nb2kfp init reads and writes only inside it: make it a "
        "file (or folder) of the repository, or add nb2kfp by hand (see README)"
    ]
    assert "secret" not in proc.stdout + proc.stderr
    assert (repo / ".gitignore").is_symlink() and secret.read_text().endswith("secret\n")
    assert sorted(p.name for p in repo.iterdir()) == [".gitignore"]  # nothing else written either


def test_init_writes_no_example_through_a_folder_linked_out_of_the_repository(tmp_path: Path) -> None:
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    repo.mkdir()
    elsewhere.mkdir()
    (repo / "notebooks").symlink_to(elsewhere, target_is_directory=True)
    proc = init(repo, "--yes")
    assert proc.returncode != 0 and "notebooks: a link out of the repository" in proc.stderr
    assert "Traceback" not in proc.stderr and list(elsewhere.iterdir()) == []


def test_init_keeps_modes_and_links_inside_the_repository(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mine"\n')
    (tmp_path / "pyproject.toml").chmod(0o600)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "ignore").write_text("*.pyc\n")
    (tmp_path / ".gitignore").symlink_to(Path("config") / "ignore")
    proc = init(tmp_path, "--yes")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "pyproject.toml").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / ".gitignore").is_symlink() and ".nb2kfp/" in (tmp_path / "config" / "ignore").read_text()
