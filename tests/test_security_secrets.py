"""Security case 7 (issue 14): credential shapes the scanner missed, credentials in tags and notebook metadata, and
tags that are never echoed when they look like a credential."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clirun import Make
from nb2kfp.security.secrets import scan

# Built at run time so that this file itself holds no credential-shaped literal.
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYzq8Tk3vLm2Qa"
GITLAB = "glpat-" + "Zx8kQ2vN7pLmR4tY9wBc"
PGP = "-----BEGIN PGP " + "PRIVATE KEY BLOCK-----"
RANDOM = "q8L" + "m2vZr9Tx4Kd7Wn5"


@pytest.mark.parametrize(
    "text",
    [
        f'os.environ["AWS_SECRET_ACCESS_KEY"] = "{AWS_SECRET}"',
        f"os.environ['DB_PASSWORD'] = '{RANDOM}'",
        f'os.environ.setdefault("API_TOKEN", "{RANDOM}")',
        f"%env AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f"%env DB_PASSWORD {RANDOM}",
        f'conf = {{"password": "{RANDOM}"}}',
        f"conf = {{'db': {{'api_key': '{RANDOM}'}}}}",
        f"key = '''{PGP}\nlQOYBF...'''",
    ],
)
def test_the_shapes_that_were_missed_are_found(text: str) -> None:
    assert list(scan(text)), text


@pytest.mark.parametrize(
    "text",
    ['os.environ["AWS_SECRET_ACCESS_KEY"] = os.environ["X"]', "%env PASSWORD=changeme", '{"password": "<secret>"}'],
)
def test_placeholders_still_pass(text: str) -> None:
    assert list(scan(text)) == []


def _lint(nb: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nb2kfp", "lint", str(nb)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "tag",
    [f"image:registry.example.com/x:{GITLAB}", f"label:team:{GITLAB}", f"annotation:note:{GITLAB}"],
)
def test_credentials_in_tags_fail_lint_and_are_not_echoed(make_nb: Make, tag: str) -> None:
    nb = make_nb([(["step:a", tag], "x = 1")])
    proc = _lint(nb)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "cell 1" in out and "GitLab token" in out, out
    assert GITLAB not in out and "Zx8k" not in out


def test_credentials_in_notebook_metadata_fail_lint(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1")], metadata={"kubeflow_notebook": {"pipeline_description": f"use {GITLAB}"}})
    proc = _lint(nb)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "metadata" in out and "GitLab token" in out, out
    assert GITLAB not in out


@pytest.mark.parametrize("tag", [GITLAB, f"{RANDOM}{RANDOM}", f"stpe:{GITLAB}"])
def test_an_unknown_tag_that_looks_like_a_credential_is_not_echoed(make_nb: Make, tag: str) -> None:
    nb = make_nb([(["step:a", tag], "x = 1")])
    for command in (["lint"], ["lint", "--format", "json"], ["compile"]):
        proc = subprocess.run([sys.executable, "-m", "nb2kfp", *command, str(nb)], capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1 and "unknown tag" in out, out
        assert tag not in out and RANDOM not in out and "Zx8k" not in out


def test_an_ordinary_unknown_tag_is_still_shown(make_nb: Make) -> None:
    nb = make_nb([(["step:a", "stpe:b"], "x = 1")])
    assert "unknown tag 'stpe:b'" in _lint(nb).stdout


def test_secrets_in_steps_defaults_are_not_echoed(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "x = 1")], metadata={"kubeflow_notebook": {"steps_defaults": [GITLAB]}})
    out = _lint(nb).stdout
    assert GITLAB not in out and "Zx8k" not in out
    assert json.loads(nb.read_text())  # the notebook itself is untouched
