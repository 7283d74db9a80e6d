"""[tool.nb2kfp.policy] at publish time: allowed KFP endpoints and digest-pinned images (KFP API double;
see tests/doubles/kfp_server.py for what it does not cover)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLES
from doubles.kfp_server import KfpServer

DIGEST = "sha256:" + "ab" * 32


def publish(folder: Path, host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nb2kfp", "publish", "wordcount.ipynb", "--host", host, "--commit", "c0ffee"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_endpoint_not_allowed_is_refused_before_any_upload(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "wordcount.ipynb", tmp_path)
    (tmp_path / "nb2kfp.toml").write_text('[policy]\nallowed_endpoints = ["https://kfp.example.com"]\n')
    with KfpServer() as kfp:
        proc = publish(tmp_path, kfp.url)
        assert proc.returncode == 1 and "is not an allowed KFP endpoint" in proc.stderr
        assert "nb2kfp.toml" in proc.stderr and "Traceback" not in proc.stderr
        assert not kfp.pipelines


def test_require_digest_refuses_unpinned_images_and_accepts_pinned_ones(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "wordcount.ipynb", tmp_path)
    (tmp_path / "nb2kfp.toml").write_text("[policy]\nrequire_digest = true\n")
    with KfpServer() as kfp:
        proc = publish(tmp_path, kfp.url)
        assert proc.returncode == 1 and "images not pinned by digest: python:3.11-slim" in proc.stderr
        assert not kfp.pipelines
        (tmp_path / "nb2kfp.toml").write_text(
            f'image = "registry.example.com/base@{DIGEST}"\n[policy]\nrequire_digest = true\n'
        )
        proc = publish(tmp_path, kfp.url)
        assert proc.returncode == 0, proc.stderr
        assert [p["display_name"] for p in kfp.pipelines.values()] == ["wordcount"]
