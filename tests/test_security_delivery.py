"""Issue 24: what the CI delivery (``nb2kfp ci``, the merge request note, the webhook's queue) takes from the
repository or the payload. Real git repositories in tmp_path; the CLI in a subprocess where the exit matters."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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


# ---------------------------------------------------------------- case 14: YAML alias bombs and deep documents


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """About 1 KB: the value of parameter ``p`` stands for width**levels values (9**9: 387 million), which the old
    reader expanded (into its error message: 49 s of CPU and 3 GB)."""
    lines = ["p:", "  - &a0 [x, x, x, x, x, x, x, x, x]"]
    for n in range(1, levels + 1):
        lines.append(f"  - &a{n} [{', '.join([f'*a{n - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_a_small_alias_bomb_params_file_fails_fast_with_one_located_line(tmp_path: Path) -> None:
    import time

    write(tmp_path / "nb.ipynb", [(["parameters"], "p = 1"), (["step:a"], "print(p)")])
    (tmp_path / "bomb.yaml").write_text(_alias_bomb())
    assert len(_alias_bomb()) < 1200
    started = time.monotonic()
    proc = _nb2kfp(tmp_path, "run", "nb.ipynb", "--local", "-f", "bomb.yaml")
    assert time.monotonic() - started < 30  # was 49 s of CPU and 3 GB before the error
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "-f bomb.yaml: line " in proc.stderr and "aliases expand to more than" in proc.stderr


def test_a_deep_yaml_document_is_one_located_line_not_a_traceback(tmp_path: Path) -> None:
    write(tmp_path / "nb.ipynb", [(["parameters"], "p = 1"), (["step:a"], "print(p)")])
    (tmp_path / "deep.yaml").write_text("p: " + "[" * 50_000 + "]" * 50_000 + "\n")
    proc = _nb2kfp(tmp_path, "run", "nb.ipynb", "--local", "-f", "deep.yaml")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "-f deep.yaml: line 1, column " in proc.stderr and "levels deep" in proc.stderr


@pytest.mark.parametrize(
    "text, problem",
    [
        (_alias_bomb(), "aliases expand to more than"),
        ("a: &a [*a]\n", "a recursive alias"),
        ("- " * 200 + "x\n", "levels deep"),
        ("[" * 50_000 + "]" * 50_000, "levels deep"),
        (
            "".join(f"k{n}: &k{n} 1\n" for n in range(1100))
            + "l: ["
            + ", ".join(f"*k{n}" for n in range(1100))
            + "]\n",
            "more than 1000 aliases",
        ),
        ("a: [\n", "line 2, column 1"),
    ],
)
def test_every_yaml_read_is_bounded(text: str, problem: str) -> None:
    from nb2kfp import yamlsafe

    with pytest.raises(yamlsafe.YamlError, match=problem):
        yamlsafe.load(text)


def test_yaml_within_the_bounds_loads_as_before() -> None:
    from nb2kfp import yamlsafe

    text = "base: &base {image: python, tags: [a, b]}\njobs:\n  - *base\n  - <<: *base\n    image: other\n"
    assert yamlsafe.load(text) == yaml.safe_load(text)
    assert yamlsafe.load_all("a: 1\n---\nb: 2\n") == [{"a": 1}, {"b": 2}]
    assert yamlsafe.load("") is None


def test_no_yaml_of_users_is_read_past_the_bounded_loader() -> None:
    """The one loader: no other module calls PyYAML's loaders."""
    src = Path(__file__).resolve().parents[1] / "src" / "nb2kfp"
    calls = re.compile(r"(?<!`)yaml\.(safe_load|load|safe_load_all|load_all|full_load|unsafe_load)\(")
    found = [str(p.relative_to(src)) for p in src.rglob("*.py") if calls.search(p.read_text(encoding="utf-8"))]
    assert found == ["yamlsafe.py"]


# ---------------------------------------------------------------- case 12: terminal escapes from outside text

FAKE_OK = "1.0\x1b[2K\r\x1b[32mok\x1b[0m: deployed"


class LabelRegistry:
    """An OCI registry on 127.0.0.1 serving one model image whose config labels hold ``labels``."""

    def __init__(self, labels: dict[str, str]) -> None:
        import hashlib
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        config = json.dumps({"config": {"Labels": labels}}).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_digest,
                    "size": len(config),
                },
                "layers": [],
            }
        ).encode()
        self.digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        files = {f"/v2/ml/clf/manifests/{self.digest}": manifest, f"/v2/ml/clf/blobs/{config_digest}": config}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = files.get(self.path, b"{}" if self.path == "/v2/" else None)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_registry_labels_cannot_drive_the_terminal(tmp_path: Path) -> None:
    """A model image's framework version label ``1.0 ESC[2K CR ESC[32m ok ...`` was printed raw in deploy's error: the
    terminal cleared the line and showed a green "ok: deployed"."""
    registry = LabelRegistry(
        {
            "io.nb2kfp.model": "true",
            "io.nb2kfp.model.name": "clf",
            "io.nb2kfp.model.file": "model.joblib",
            "io.nb2kfp.model.framework": "scikit-learn",
            "io.nb2kfp.model.framework-version": FAKE_OK,
        }
    )
    try:
        image = f"{registry.host}/ml/clf@{registry.digest}"
        proc = _nb2kfp(tmp_path, "model", "deploy", image, "--name", "clf", "-o", str(tmp_path / "k8s"))
    finally:
        registry.close()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr, repr(proc.stderr)
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "saved with scikit-learn 1.0\\x1b[2K\\r\\x1b[32mok\\x1b[0m: deployed" in proc.stderr


def test_the_cli_error_boundary_escapes_outside_text(tmp_path: Path) -> None:
    """Any message quoting outside text (here a parameter name read from a -f file) reaches the terminal escaped."""
    write(tmp_path / "nb.ipynb", [(["parameters"], "p = 1"), (["step:a"], "print(p)")])
    (tmp_path / "params.yaml").write_text('"x\\e[2K\\rok": 1\n')
    proc = _nb2kfp(tmp_path, "run", "nb.ipynb", "--local", "-f", "params.yaml")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr, repr(proc.stderr)
    assert "x\\x1b[2K\\rok: the pipeline has no such parameter" in proc.stderr
