"""Credentials in cells or outputs fail lint, located and named, and the secret is never echoed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clirun import Make
from nb2kfp.security.secrets import scan

# Built at run time so that this file itself holds no credential-shaped literal.
GITLAB = "glpat-" + "Zx8kQ2vN7pLmR4tY9wBc"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
KEY = "-----BEGIN RSA " + "PRIVATE KEY-----"


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        (f"token = '{GITLAB}'", "a GitLab token"),
        (f"aws_key = '{AWS}'", "an AWS access key id"),
        (f"pem = '''{KEY}\nMIIE...'''", "a private key"),
        ("db = 'postgresql://admin:" + "S3cr3tPassw0rd@db:5432/x'", "credentials in a URL"),
        ("password = '" + "q8#Lm2!vZr9@Tx4'", "a hard-coded password"),
        ('API_KEY: str = "' + 'f3a9c1e8b7d24c6a9e0f"', "a hard-coded api_key"),
    ],
)
def test_found(text: str, kind: str) -> None:
    assert [k for k, _ in scan(text)] == [kind]


@pytest.mark.parametrize(
    "text",
    [
        "password = 'changeme'",
        "token = '<your-token>'",
        "api_key = os.environ['API_KEY']",
        "secret = '${SECRET}'",
        "password = 'aaaaaaaaaaaa'",
        "tokens = tokenizer(text)",
        "url = 'https://example.com/path'",
    ],
)
def test_not_found(text: str) -> None:
    assert list(scan(text)) == []


def test_lint_fails_names_cell_and_never_echoes(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], f"x = 1\ntoken = '{GITLAB}'"), (["step:b", "prev:a"], "print(x)")])
    data = json.loads(nb.read_text())
    data["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": [f"key {AWS}\n"]}]
    nb.write_text(json.dumps(data))
    for command in (["lint"], ["lint", "--format", "json"], ["compile"]):
        proc = subprocess.run([sys.executable, "-m", "nb2kfp", *command, str(nb)], capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1
        assert GITLAB not in out and AWS not in out and "Zx8k" not in out
    proc = subprocess.run([sys.executable, "-m", "nb2kfp", "lint", str(nb)], capture_output=True, text=True)
    assert "cell 1, line 2: error: this looks like a GitLab token" in proc.stdout
    assert "cell 2: error: the cell's output shows an AWS access key id" in proc.stdout
    assert not nb.with_name("nb.pipeline.yaml").exists()
