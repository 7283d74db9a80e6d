"""The component as a platform team adopts it from its own project: released on a semantic-version tag, its job
image built by the project's own `job-image` job (job-image/build.sh, the real Docker engine, the offline job base,
pushed with auth to the test registry), included by version (`@MAJOR.MINOR`) twice in one pipeline, and in a
project without a container registry. The component project is a bare repository that git's `insteadOf` serves as
https://gitlab.example.com/nb2kfp/nb2kfp.git; gitlab-ci-local runs the pipelines (shell executor).

Not covered here: GitLab's catalog itself (gitlab-ci-local resolves `@0.1` from the tags, as the catalog does), a
runner pulling the job image (jobs run in this shell; the image is run separately with `docker run`), the dind
service of the real `job-image` job (the engine here stands in for it), and GitLab's rejection of unknown inputs.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from conftest import EXAMPLES, ROOT, require

pytestmark = pytest.mark.slow
GLCI = os.environ.get("NB2KFP_GITLAB_CI_LOCAL") or shutil.which("gitlab-ci-local") or ""
GIT = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
SERVER = "gitlab.example.com"
JOB_BASE = os.environ.get("NB2KFP_TEST_JOB_BASE_IMAGE", "")


@dataclass(frozen=True)
class Released:
    project: Path  # a checkout of the component project at the release tag
    gitconfig: Path  # git's insteadOf: https://gitlab.example.com/ -> the folder of bare repositories
    version: str


def _git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def glci(repo: Path, released: Released, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    require(bool(GLCI) and Path(GLCI).exists(), "gitlab-ci-local is not installed (.ci/services.sh installs it)")
    require(shutil.which("rsync") is not None, "gitlab-ci-local needs rsync")
    command = [GLCI, "--force-shell-executor"]
    for key, value in variables.items():
        command += ["--variable", f"{key}={value}"]
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GIT_CONFIG_GLOBAL": str(released.gitconfig),
        "GCL_IGNORE_PREDEFINED_VARS": ",".join(k for k in variables if k.startswith("CI_")),
    }
    return subprocess.run([*command, *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> Released:
    """This checkout (tracked and new files) as the component project, tagged with a fresh 0.1.N."""
    root = tmp_path_factory.mktemp("gitlab")
    project = root / "checkout"
    files = _git(ROOT, "ls-files", "--cached", "--others", "--exclude-standard", "-z").split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, project / name)
    version = f"0.1.{random.randrange(1, 10**6)}"  # a tag and an image tag no earlier run has used
    subprocess.run(["git", "init", "-q", "-b", "main", str(project)], check=True)
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", f"release {version}")
    _git(project, "tag", version)
    _git(project, "remote", "add", "origin", f"https://{SERVER}/nb2kfp/nb2kfp.git")
    served = root / "srv"
    (served / "nb2kfp").mkdir(parents=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(served / "nb2kfp" / "nb2kfp.git")], check=True)
    gitconfig = root / "gitconfig"
    # gitlab-ci-local fetches components from https://HOST:443/PATH.git (ls-remote for the tags, then a clone)
    gitconfig.write_text(f'[url "file://{served}/"]\n\tinsteadOf = https://{SERVER}:443/\n')
    return Released(project, gitconfig, version)


def consumer(root: Path, released: Released, includes: list[dict[str, object]]) -> Path:
    """A project on the same GitLab with notebooks in a/ and b/, including the component by version."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    for folder, example in (("a", "wordcount.ipynb"), ("b", "magics_functions.ipynb")):
        (root / folder).mkdir()
        shutil.copy(EXAMPLES / example, root / folder / example)
    minor = released.version.rsplit(".", 1)[0]
    include = [{"component": f"{SERVER}/nb2kfp/nb2kfp/nb2kfp@{minor}", "inputs": i} for i in includes]
    (root / ".gitlab-ci.yml").write_text(yaml.safe_dump({"include": include}, sort_keys=False))
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "notebooks")
    _git(root, "remote", "add", "origin", f"https://{SERVER}/ml/notebooks.git")
    return root


def jobs(proc: subprocess.CompletedProcess[str]) -> set[str]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("name "))
    return {line.split()[0] for line in lines[start + 1 :] if line.strip()}


def test_release_jobs_run_on_semantic_version_tags_only(released: Released) -> None:
    on_tag = jobs(glci(released.project, released, "--list", CI_COMMIT_TAG=released.version))
    assert {"job-image", "release"} <= on_tag
    for tag in (f"v{released.version}", "nightly"):
        assert not {"job-image", "release"} & jobs(glci(released.project, released, "--list", CI_COMMIT_TAG=tag))
    assert not {"job-image", "release"} & jobs(glci(released.project, released, "--list"))


def test_project_without_a_container_registry_gets_no_build_job(released: Released, tmp_path: Path) -> None:
    repo = consumer(tmp_path / "repo", released, [{"notebooks": "a/*.ipynb"}])
    # GitLab leaves CI_REGISTRY_IMAGE out when the project's container registry is disabled
    without = jobs(glci(repo, released, "--list", CI_REGISTRY_IMAGE=""))
    assert "nb2kfp-lint" in without and "nb2kfp-build" not in without
    assert "nb2kfp-build" in jobs(glci(repo, released, "--list", CI_REGISTRY_IMAGE="registry.example.com/ml/nb"))
    named = consumer(tmp_path / "named", released, [{"notebooks": "a/*.ipynb", "registry": "registry.example.com/x"}])
    assert "nb2kfp-build" in jobs(glci(named, released, "--list", CI_REGISTRY_IMAGE=""))


def test_an_image_without_git_stops_with_one_line(tmp_path: Path) -> None:
    body = (ROOT / "templates" / "nb2kfp.yml").read_text().split("\n---\n")[1]
    base = yaml.safe_load(body)[".$[[ inputs.job_prefix ]]nb2kfp"]
    check = base["before_script"][0]
    empty = tmp_path / "bin"
    empty.mkdir()
    sh = shutil.which("sh") or "/bin/sh"
    proc = subprocess.run(
        [sh, "-c", check], env={"PATH": str(empty), "CI_JOB_IMAGE": "python:3.11-slim"}, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "nb2kfp: the job image python:3.11-slim has no git: use one with git, or leave the image input out for the "
        "nb2kfp job image"
    ]
    assert subprocess.run([sh, "-c", check], capture_output=True).returncode == 0  # git found: nothing said


@pytest.fixture(scope="module")
def job_image(released: Released, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The project's own `job-image` job, run on the release tag: the image in the test registry, and the docker
    config folder holding the login for it."""
    names = ["NB2KFP_TEST_REGISTRY", "NB2KFP_TEST_REGISTRY_USER", "NB2KFP_TEST_REGISTRY_PASSWORD_FILE"]
    require(all(os.environ.get(n) for n in names), "no test registry: run .ci/services.sh and source its env file")
    require(shutil.which("docker") is not None, "no docker CLI")
    require(bool(JOB_BASE), "no job base image: .ci/services.sh makes it (NB2KFP_TEST_JOB_BASE_IMAGE)")
    require(subprocess.run(["docker", "image", "inspect", JOB_BASE], capture_output=True).returncode == 0, JOB_BASE)
    tmp = tmp_path_factory.mktemp("job-image")
    wheels = tmp / "wheels"  # fetched here once, so the image build needs no package index
    requirements = released.project / "job-image" / "requirements.txt"
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "-r", str(requirements)]
    subprocess.run([*pip, "--wheel-dir", str(wheels)], check=True, capture_output=True, timeout=900)
    registry = os.environ["NB2KFP_TEST_REGISTRY"]
    password = Path(os.environ["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"]).read_text().strip()
    (tmp / "docker").mkdir()
    saved = os.environ.get("DOCKER_CONFIG")
    os.environ["DOCKER_CONFIG"] = str(tmp / "docker")  # docker login writes here, not in ~/.docker
    try:
        proc = glci(
            released.project,
            released,
            "job-image",
            CI_COMMIT_TAG=released.version,
            CI_REGISTRY=registry,
            CI_REGISTRY_IMAGE=f"{registry}/nb2kfp/nb2kfp",
            CI_REGISTRY_USER=os.environ["NB2KFP_TEST_REGISTRY_USER"],
            CI_REGISTRY_PASSWORD=password,
            NB2KFP_JOB_IMAGE_BASE=JOB_BASE,
            NB2KFP_JOB_IMAGE_WHEELS=str(wheels),
        )
    finally:
        if saved is None:
            del os.environ["DOCKER_CONFIG"]
        else:
            os.environ["DOCKER_CONFIG"] = saved
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert password not in proc.stdout + proc.stderr
    image = f"{registry}/nb2kfp/nb2kfp/job:{released.version}"
    digest = next(line for line in proc.stdout.splitlines() if f"{registry}/nb2kfp/nb2kfp/job@sha256:" in line)
    assert digest.split("@")[1].strip().startswith("sha256:")
    return image, tmp / "docker"


def test_included_twice_by_version_and_runs_in_the_released_job_image(
    released: Released, job_image: tuple[str, Path], tmp_path: Path
) -> None:
    image, docker_config = job_image
    repo = consumer(
        tmp_path / "repo",
        released,
        [{"notebooks": "a/*.ipynb"}, {"job_prefix": "b-", "notebooks": "b/*.ipynb", "stage": "build"}],
    )
    registry = os.environ["NB2KFP_TEST_REGISTRY"]
    preview = glci(repo, released, "--preview", CI_REGISTRY=registry)
    assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]
    merged = {k: v for k, v in yaml.safe_load(preview.stdout.split("\n---\n")[-1]).items() if "nb2kfp" in k}
    assert {"nb2kfp-lint", "b-nb2kfp-lint", "nb2kfp-report", "b-nb2kfp-report"} <= set(merged)
    # one hidden base job per include (a shared `.nb2kfp` would give both includes the second one's variables)
    assert merged["nb2kfp-lint"]["variables"]["NB2KFP_NOTEBOOKS"] == "a/*.ipynb"
    assert merged["b-nb2kfp-report"]["variables"]["NB2KFP_NOTEBOOKS"] == "b/*.ipynb"
    assert merged["b-nb2kfp-report"]["stage"] == "build" and merged["nb2kfp-report"]["stage"] == "test"
    lint = merged["b-nb2kfp-lint"]
    # the image default: the job image of the release that `@0.1` resolved to, in the component project's registry
    assert lint["variables"]["NB2KFP_JOB_IMAGE"] == f"$CI_REGISTRY/nb2kfp/nb2kfp/job:{released.version}"
    assert lint["image"] in ("$NB2KFP_JOB_IMAGE", {"name": "$NB2KFP_JOB_IMAGE"})
    assert image == f"{registry}/nb2kfp/nb2kfp/job:{released.version}"

    proc = glci(
        repo, released, "nb2kfp-lint", "nb2kfp-compile", "b-nb2kfp-lint", "b-nb2kfp-compile", CI_REGISTRY_IMAGE=""
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    out = repo / ".gitlab-ci-local" / "artifacts"
    assert (out / "nb2kfp-compile" / "nb2kfp-out" / "specs" / "a" / "wordcount.pipeline.yaml").is_file()
    assert (out / "b-nb2kfp-compile" / "b-nb2kfp-out" / "specs" / "b" / "magics_functions.pipeline.yaml").is_file()
    assert not (out / "nb2kfp-compile" / "nb2kfp-out" / "specs" / "b").exists()

    # the released image itself, pulled from the registry, runs a job's commands: git and nb2kfp are in it
    docker = ["docker", "--config", str(docker_config)]
    subprocess.run([*docker, "image", "rm", "-f", image], capture_output=True)
    ran = subprocess.run(
        [*docker, "run", "--rm", "--network", "none", "-v", f"{repo}:/repo", "-w", "/repo", image, "sh", "-c",
         'git --version && nb2kfp ci compile --notebooks "a/*.ipynb" --output-dir /tmp/out'],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "compile: a/wordcount.ipynb -> /tmp/out/specs/a/wordcount.pipeline.yaml" in ran.stdout
    subprocess.run([*docker, "image", "rm", "-f", image], capture_output=True)
