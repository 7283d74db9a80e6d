"""Security case 12 (issue 14): the artifact trust boundary. With a key (a Kubernetes secret on a cluster, a fresh
one per `nb2kfp run --local`), a step unpickles only values this pipeline run wrote: anything else in the
pipeline root (a forged or replayed file) is refused before it can run code."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from clirun import Make
from conftest import require, run_local
from nb2kfp.backends import kfp_spec
from nb2kfp.config import find_settings
from nb2kfp.errors import UsageError
from nb2kfp.frontend.builder import build
from nb2kfp.local_run import cache as local_cache
from nb2kfp.runtime import step


class _Payload:
    """What an attacker puts in the pipeline root: unpickling it runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(step.ARTIFACT_KEY_ENV, "k" * 64)


def test_a_signed_value_round_trips(tmp_path: Path, key: None) -> None:
    meta = step.save_value("s", {1, 2, 3}, str(tmp_path / "a"), {})
    assert meta["format"] == "pickle" and len(meta["hmac"]) == 64
    assert step.load_value("s", str(tmp_path / "a")) == {1, 2, 3}


def test_a_replaced_pickle_is_refused_before_it_runs(tmp_path: Path, key: None) -> None:
    folder = tmp_path / "a"
    step.save_value("s", {1, 2, 3}, str(folder), {})
    marker = tmp_path / "pwned"
    (folder / "data.pickle").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(step.StepFailed, match="not written by this pipeline run"):
        step.load_value("s", str(folder))
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["pickle", "joblib", "something-else"])
def test_a_forged_unsigned_value_is_refused(tmp_path: Path, key: None, fmt: str) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    marker = tmp_path / "pwned"
    for name in ("data.pickle", "data.joblib"):
        (folder / name).write_bytes(pickle.dumps(_Payload(marker)))
    (folder / "nb2kfp.json").write_text(json.dumps({"format": fmt, "variable": "s"}))
    with pytest.raises(step.StepFailed):
        step.load_value("s", str(folder))
    assert not marker.exists()


def test_a_value_signed_for_another_artifact_is_refused(tmp_path: Path, key: None) -> None:
    step.save_value("s", {1, 2, 3}, str(tmp_path / "earlier-run" / "a"), {})
    shutil.copytree(tmp_path / "earlier-run" / "a", tmp_path / "this-run" / "a")
    with pytest.raises(step.StepFailed):
        step.load_value("s", str(tmp_path / "this-run" / "a"))


def test_safe_formats_need_no_signature(tmp_path: Path, key: None) -> None:
    folder = tmp_path / "a"
    folder.mkdir()
    (folder / "data.json").write_text("[1, 2]")
    (folder / "nb2kfp.json").write_text(json.dumps({"format": "json", "variable": "s"}))
    assert step.load_value("s", str(folder)) == [1, 2]


def test_a_local_run_signs_and_checks_pickled_values(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "s = {1, 2, 3}"), (["step:b", "prev:a"], "assert s == {1, 2, 3}\nprint(len(s))")])
    proc = run_local(nb)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = Path(json.loads(proc.stdout)["run_dir"])
    metas = [json.loads(p.read_text()) for p in run_dir.rglob("nb2kfp.json")]
    assert any(m.get("format") == "pickle" and len(m.get("hmac", "")) == 64 for m in metas), metas
    assert step.ARTIFACT_KEY_ENV not in (run_dir / "run.log").read_text()


def test_artifact_key_secret_gives_every_step_the_key(make_nb: Make, tmp_path: Path) -> None:
    (tmp_path / "nb2kfp.toml").write_text('artifact_key_secret = "pipeline-keys:artifact-hmac"\n')
    nb = make_nb([(["step:a"], "s = {1}"), (["step:b", "prev:a"], "print(s)")])
    pipeline = build(nb, find_settings(nb.parent)).pipeline
    assert all(any(e.env == step.ARTIFACT_KEY_ENV for e in s.secrets) for s in pipeline.steps)
    platform = list(yaml.safe_load_all(kfp_spec.render(pipeline)))[-1]  # the Kubernetes platform spec
    text = json.dumps(platform)
    assert text.count(f'"envVar": "{step.ARTIFACT_KEY_ENV}"') == 2 and "pipeline-keys" in text


def _serve_fifo(fifo: Path, contents: list[bytes], deadline: float) -> None:
    """Hands each reader that opens ``fifo`` the next of ``contents``: what the checker reads, then what the loader
    reads (the attack of issue 24, case 4)."""
    for data in contents:
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader has it open
                break
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.005)
        try:
            os.set_blocking(fd, True)
            os.write(fd, data)
        except OSError:  # the reader closed it without reading (refused, as it should)
            pass
        finally:
            os.close(fd)
        time.sleep(0.3)  # the reader sees the end of this content and closes before the next one


def test_a_fifo_cannot_hand_the_loader_other_bytes_than_the_signed_ones(tmp_path: Path, key: None) -> None:
    folder = tmp_path / "a"
    step.save_value("s", {1, 2, 3}, str(folder), {})
    signed = (folder / "data.pickle").read_bytes()
    marker = tmp_path / "pwned"
    (folder / "data.pickle").unlink()
    os.mkfifo(folder / "data.pickle")
    writer = threading.Thread(
        target=_serve_fifo,
        args=(folder / "data.pickle", [signed, pickle.dumps(_Payload(marker))], time.monotonic() + 3),
        daemon=True,
    )
    writer.start()
    with pytest.raises(step.StepFailed, match=r"data\.pickle is not a regular file"):
        step.load_value("s", str(folder))
    writer.join(5)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_value_file_that_is_not_a_regular_file_is_refused(tmp_path: Path, key: None, kind: str) -> None:
    import numpy as np

    folder = tmp_path / "a"
    assert step.save_value("v", np.arange(3), str(folder), {})["format"] == "npy"
    data = folder / "data.npy"
    elsewhere = tmp_path / "elsewhere.npy"
    data.rename(elsewhere)
    if kind == "symlink":
        data.symlink_to(elsewhere)
        with pytest.raises(step.StepFailed, match=r"data\.npy is a symbolic link"):
            step.load_value("v", str(folder))
        return
    os.mkfifo(data)
    fd = os.open(data, os.O_RDWR | os.O_NONBLOCK)  # a writer is there and the content waits in the pipe
    try:
        os.write(fd, elsewhere.read_bytes())
        with pytest.raises(step.StepFailed, match=r"data\.npy is not a regular file"):
            step.load_value("v", str(folder))
    finally:
        os.close(fd)


def test_the_cache_key_and_its_folder_are_made_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o002)  # a setgid team folder's usual umask
    try:
        key = local_cache.artifact_key(tmp_path / ".nb2kfp" / "cache")
    finally:
        os.umask(old)
    assert len(key) == 64
    assert stat.S_IMODE((tmp_path / ".nb2kfp" / "cache").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / ".nb2kfp" / "cache" / "artifact.key").stat().st_mode) == 0o600
    assert local_cache.artifact_key(tmp_path / ".nb2kfp" / "cache") == key


def _other_owner(path: Path) -> None:
    require(os.geteuid() == 0, "giving a file to another user needs root")
    os.chown(path, 65534, -1, follow_symlinks=False)


@pytest.mark.parametrize(
    ("attack", "refused"),
    [
        (lambda root: root.chmod(0o775), "cache: writable by group or others (mode 0775)"),
        (lambda root: (root / "artifact.key").chmod(0o640), "artifact.key: readable or writable by group or others"),
        (lambda root: _other_owner(root), "cache: owned by uid 65534, not by you"),
        (lambda root: _other_owner(root / "artifact.key"), "artifact.key: owned by uid 65534, not by you"),
        (lambda root: _replace_by_link(root / "artifact.key"), "artifact.key: the cache's key must be a file of yours"),
        (lambda root: _replace_by_link(root), "cache: the step cache must be a folder of yours, not a link"),
    ],
)
def test_a_cache_key_others_could_have_replaced_is_refused(
    tmp_path: Path, attack: Callable[[Path], None], refused: str
) -> None:
    root = tmp_path / ".nb2kfp" / "cache"
    local_cache.artifact_key(root)
    attack(root)
    with pytest.raises(UsageError, match=re.escape(refused)) as raised:
        local_cache.artifact_key(root)
    assert "\n" not in str(raised.value) and "nb2kfp runs clean --cache" in str(raised.value)


def _replace_by_link(path: Path) -> None:
    """A group member's own key (or cache) in place of the user's, by a link."""
    theirs = path.with_name(path.name + ".theirs")
    path.rename(theirs)
    path.symlink_to(theirs)


def test_a_local_run_refuses_a_group_writable_cache_in_one_line(make_nb: Make) -> None:
    nb = make_nb([(["step:a"], "s = {1}"), (["step:b", "prev:a"], "print(s)")])
    cache = nb.parent / ".nb2kfp" / "cache"
    cache.mkdir(parents=True)
    cache.chmod(0o775)
    proc = run_local(nb)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "cache" in line]
    assert lines == [  # the project's cache, named whole: a run may start from another folder
        f"{cache}: writable by group or others (mode 0775): others could sign artifacts; remove it "
        "(`nb2kfp runs clean --cache`) and run again: a new private cache is made"
    ]
    assert "Traceback" not in proc.stderr
