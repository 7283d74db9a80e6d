"""The GitLab CI/CD component (templates/nb2kfp.yml) and `nb2kfp ci`, run by gitlab-ci-local (shell executor)
on temporary git repositories, and linted offline against GitLab's CI schema.

gitlab-ci-local does not cover: GitLab's rejection of unknown inputs, the merge request widget itself (we check
the Code Quality report it reads), protected variables, and real runners/images (jobs run in this shell).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import EXAMPLES, ROOT, require
from nbfactory import write

pytestmark = pytest.mark.slow
GLCI = os.environ.get("NB2KFP_GITLAB_CI_LOCAL") or shutil.which("gitlab-ci-local") or ""
GIT = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]


def make_repo(root: Path, inputs: dict[str, object], notebooks: dict[str, Path | list[Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    (root / "templates").mkdir()
    shutil.copy(ROOT / "templates" / "nb2kfp.yml", root / "templates" / "nb2kfp.yml")
    include = {"component": "$CI_SERVER_FQDN/$CI_PROJECT_PATH/nb2kfp@$CI_COMMIT_SHA", "inputs": inputs}
    (root / ".gitlab-ci.yml").write_text(yaml.safe_dump({"include": [include]}, sort_keys=False))
    for name, source in notebooks.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            shutil.copy(source, target)
        else:
            write(target, source)
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-qm", "notebooks"], cwd=root, check=True)
    return root


def pipeline(
    repo: Path, *jobs: str, variables: dict[str, str] | None = None, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    require(bool(GLCI) and Path(GLCI).exists(), "gitlab-ci-local is not installed (.ci/services.sh installs it)")
    require(shutil.which("rsync") is not None, "gitlab-ci-local needs rsync")
    command = [GLCI, "--force-shell-executor"]
    for key, value in (variables or {}).items():
        command += ["--variable", f"{key}={value}"]
    for key in unset:
        command += ["--unset-variable", key]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([*command, *jobs], cwd=repo, env=env, capture_output=True, text=True, timeout=600)


def artifact(repo: Path, job: str, path: str) -> Path:
    return repo / ".gitlab-ci-local" / "artifacts" / job / "nb2kfp-out" / path


def test_component_and_project_pipeline_pass_gitlab_schema(tmp_path: Path) -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    require(checker.exists(), "check-jsonschema is not installed")
    spec, jobs = (ROOT / "templates" / "nb2kfp.yml").read_text().split("\n---\n")
    (tmp_path / "spec.yml").write_text(spec)
    (tmp_path / "jobs.yml").write_text(jobs)
    proc = subprocess.run(
        [
            str(checker),
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(tmp_path / "spec.yml"),
            str(tmp_path / "jobs.yml"),
            str(ROOT / ".gitlab-ci.yml"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    inputs = yaml.safe_load(spec)["spec"]["inputs"]
    expected = {"job_prefix", "stage", "notebooks", "image", "install", "registry", "kfp_endpoint", "publish"}
    assert expected <= set(inputs)
    assert all(i.get("description") for i in inputs.values())
    header = yaml.safe_load(spec)["spec"]
    assert set(header) == {"inputs", "component"}  # GitLab refuses other header keys (`description` included)
    release = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())["release"]
    assert release["release"]["tag_name"] == "$CI_COMMIT_TAG" and release["needs"] == ["job-image"]


def test_pipeline_lints_and_compiles_into_artifacts(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {"notebooks": "notebooks/**/*.ipynb", "registry": ""},
        {
            "notebooks/wordcount.ipynb": EXAMPLES / "wordcount.ipynb",
            "notebooks/ml/iris_diamond.ipynb": EXAMPLES / "iris_diamond.ipynb",
        },
    )
    proc = pipeline(repo, "nb2kfp-lint", "nb2kfp-compile")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert json.loads(artifact(repo, "nb2kfp-lint", "gl-code-quality-report.json").read_text()) == []
    from kfp import components

    for spec in ("specs/notebooks/wordcount.pipeline.yaml", "specs/notebooks/ml/iris_diamond.pipeline.yaml"):
        components.load_component_from_file(str(artifact(repo, "nb2kfp-compile", spec)))
    state = json.loads(artifact(repo, "nb2kfp-compile", "ci.json").read_text())
    assert sorted(state["notebooks"]) == ["notebooks/ml/iris_diamond.ipynb", "notebooks/wordcount.ipynb"]


def test_lint_errors_fail_the_pipeline_with_a_code_quality_entry(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo",
        {"registry": ""},
        {
            "good.ipynb": EXAMPLES / "wordcount.ipynb",
            "bad.ipynb": [(["step:a"], "x = 1"), (["step:b", "prev:a"], "print(x)\nprint(undefined_name)")],
        },
    )
    proc = pipeline(repo, "nb2kfp-lint", "nb2kfp-compile")
    assert proc.returncode != 0
    assert "bad.ipynb: cell 2, line 2: error: name 'undefined_name' is not defined" in proc.stdout
    report = json.loads(artifact(repo, "nb2kfp-lint", "gl-code-quality-report.json").read_text())
    [entry] = report
    assert entry["check_name"] == "NB020" and entry["severity"] == "major"
    assert entry["location"]["path"] == "bad.ipynb"
    line = entry["location"]["lines"]["begin"]
    assert "undefined_name" in (repo / "bad.ipynb").read_text().splitlines()[line - 1]
    assert not artifact(repo, "nb2kfp-compile", "ci.json").exists()  # compile needs lint: it never ran


def test_inputs_are_typed(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"build": "maybe"}, {"a.ipynb": EXAMPLES / "wordcount.ipynb"})
    proc = pipeline(repo, "--list")
    assert "`build` input: provided value is not a boolean" in proc.stdout + proc.stderr


def test_changed_notebooks_follow_gitlab_variables(tmp_path: Path) -> None:
    repo = make_repo(
        tmp_path / "repo", {}, {"a.ipynb": EXAMPLES / "wordcount.ipynb", "b.ipynb": EXAMPLES / "magics_functions.ipynb"}
    )
    first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    data = json.loads((repo / "b.ipynb").read_text())
    data["cells"][3]["source"] = ["n_samples = 10\n", "noise = 0.1\n", "seed = 1\n"]
    (repo / "b.ipynb").write_text(json.dumps(data))
    subprocess.run([*GIT, "commit", "-qam", "change b"], cwd=repo, check=True)

    def changed(**env: str) -> dict[str, bool]:
        full = {k: v for k, v in os.environ.items() if not k.startswith("CI_")}
        proc = subprocess.run(
            [sys.executable, "-m", "nb2kfp", "ci", "lint", "--output-dir", "out"],
            cwd=repo,
            env={**full, **env},
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        state = json.loads((repo / "out" / "ci.json").read_text())["notebooks"]
        return {k: v["changed"] for k, v in state.items()}

    assert changed(CI_COMMIT_BEFORE_SHA=first) == {"a.ipynb": False, "b.ipynb": True}
    assert changed(CI_MERGE_REQUEST_DIFF_BASE_SHA=first) == {"a.ipynb": False, "b.ipynb": True}
    assert changed(CI_COMMIT_BEFORE_SHA="0" * 40) == {"a.ipynb": True, "b.ipynb": True}
    assert changed() == {"a.ipynb": True, "b.ipynb": True}


def test_jobs_report_to_gitlab_and_publish_to_kfp(tmp_path: Path) -> None:
    """The component's jobs under gitlab-ci-local talk to the GitLab and KFP doubles (see their docstrings for
    what they do not cover): an MR pipeline posts commit statuses and one MR note, updated in place on the next
    run; a default-branch pipeline publishes a pipeline version; tokens never reach the job log."""
    from doubles.gitlab_server import GitLabDouble, User
    from doubles.kfp_server import KfpServer

    gitlab_token, kfp_token = "glpat-" + "Tq7mV2xK9pL4wR8nZ3cB", "kfp-" + "s3cr3t-token-77"
    with KfpServer(token=kfp_token) as kfp:
        repo = make_repo(
            tmp_path / "repo",
            {"kfp_endpoint": kfp.url, "build": False},
            {"wordcount.ipynb": EXAMPLES / "wordcount.ipynb"},
        )
        bare = tmp_path / "bare.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
        with GitLabDouble(bare) as gitlab:
            gitlab.add_token(gitlab_token, User(7, "nb2kfp-bot"))
            gitlab.add_merge_request(1, "main")
            common = {
                "CI_API_V4_URL": f"{gitlab.url}/api/v4",
                "CI_SERVER_URL": gitlab.url,
                "CI_PROJECT_ID": str(gitlab.project_id),
                "NB2KFP_GITLAB_TOKEN": gitlab_token,
                "NB2KFP_KFP_TOKEN": kfp_token,
                "CI_COMMIT_SHA": sha,
            }
            mr = {**common, "CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "1"}
            for _ in range(2):
                proc = pipeline(repo, variables=mr, unset=("CI_COMMIT_BRANCH",))  # unset in MR pipelines
                assert proc.returncode == 0, proc.stdout[-3000:]
                assert gitlab_token not in proc.stdout and kfp_token not in proc.stdout
            [note] = gitlab.notes[1]
            assert "<!-- nb2kfp:report -->" in note["body"] and "```mermaid" in note["body"]
            assert {s["name"]: s["status"] for s in gitlab.statuses[sha]}["nb2kfp: wordcount.ipynb"] == "success"
            assert not kfp.pipelines  # merge request pipelines do not publish

            branch = {**common, "CI_PIPELINE_SOURCE": "push", "CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"}
            proc = pipeline(repo, variables=branch)
            assert proc.returncode == 0, proc.stdout[-3000:]
            assert kfp_token not in proc.stdout
            assert [p["display_name"] for p in kfp.pipelines.values()] == ["wordcount"]
            assert any(v["display_name"].startswith(sha[:12]) for v in kfp.versions.values())
