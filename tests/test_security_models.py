"""Security case 5 (issue 14): links in a model folder never carry files from outside it into a model image
(`nb2kfp model build` and `nb2kfp run --model-image`)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from clirun import Make
from nb2kfp.errors import RunError
from nb2kfp.serving import model_image as models


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$not-for-images:19000:0:99999:7:::\n")
    return secret


def test_a_link_that_leaves_the_model_folder_is_refused(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    (folder / "extra").symlink_to(outside)
    with pytest.raises(RunError) as info:
        models.assemble(folder, tmp_path, "m")
    assert "extra is a link that leads out of the model folder" in str(info.value)
    assert not (tmp_path / "model.tar").exists() or b"not-for-images" not in (tmp_path / "model.tar").read_bytes()


def test_a_linked_folder_that_leaves_is_refused_too(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w")
    (folder / "etc").symlink_to("/etc")
    with pytest.raises(RunError):
        models.model_files(folder)


def test_links_inside_the_folder_are_stored_as_links(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "v1").mkdir(parents=True)
    (folder / "v1" / "weights.bin").write_bytes(b"w" * 10)
    (folder / "latest").symlink_to("v1")
    (folder / "current.bin").symlink_to(folder / "v1" / "weights.bin")
    models.assemble(folder, tmp_path, "m")
    with tarfile.open(tmp_path / "model.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["models/latest"].issym() and members["models/latest"].linkname == "v1"
    assert members["models/current.bin"].issym() and members["models/current.bin"].linkname == "v1/weights.bin"
    assert members["models/v1/weights.bin"].isfile()


def test_names_are_normalised(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "cafe\u0301.bin").write_bytes(b"w")  # "café" with a combining accent (NFD, as macOS writes it)
    _, files, _ = models.model_files(folder)
    assert [name for name, _ in files] == ["models/caf\u00e9.bin"]


def test_run_model_image_refuses_a_link_out_before_pushing(tmp_path: Path, make_nb: Make, outside: Path) -> None:
    from nb2kfp.commands.run import _package_models
    from nb2kfp.frontend.builder import build

    nb = make_nb([(["step:train", "model:clf"], "clf = 1")])
    pipeline = build(nb).pipeline
    saved = tmp_path / "run" / "artifacts" / "x" / "train" / "clf"
    saved.mkdir(parents=True)
    (saved / "nb2kfp.json").write_text("{}")
    (saved / "data.pkl").symlink_to(outside)
    with pytest.raises(RunError) as info:
        _package_models(nb, tmp_path / "run", pipeline, "127.0.0.1:1/models", lambda line: None)
    assert "leads out of the model folder" in str(info.value)
