"""Settings are one schema (config.SCHEMA) read by one reader: every key checked where it is read, with the file
and table in the message; nothing reads the file again."""

from __future__ import annotations

from pathlib import Path

import pytest

from nb2kfp import config
from nb2kfp.errors import UsageError
from nb2kfp.serving import runtimes


def _write(folder: Path, kind: str, table: str, body: str) -> Path:
    (folder / ".git").mkdir(exist_ok=True)  # the settings search stops here
    if kind == "pyproject":
        header = f"[tool.nb2kfp.{table}]" if table else "[tool.nb2kfp]"
        path = folder / "pyproject.toml"
    else:
        header = f"[{table}]" if table else ""
        path = folder / "nb2kfp.toml"
    path.write_text(f"{header}\n{body}\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["pyproject", "nb2kfp.toml"])
@pytest.mark.parametrize("key", config.SCHEMA, ids=lambda k: f"{k.table or 'top'}.{k.name}")
def test_a_wrong_value_of_any_setting_is_a_located_error(tmp_path: Path, key: config.Key, kind: str) -> None:
    path = _write(tmp_path, kind, key.table, f'"{key.name}" = 12345')  # no setting takes a number
    where = (
        (f"[tool.nb2kfp.{key.table}]" if key.table else "[tool.nb2kfp]")
        if kind == "pyproject"
        else (f"[{key.table}]" if key.table else "nb2kfp.toml")
    )
    with pytest.raises(UsageError) as err:
        config.find_settings(tmp_path)
    assert str(err.value) == f"{path}: {where}: {key.name} must be {key.must_be}"


@pytest.mark.parametrize("table", config.TABLES)
def test_an_unknown_setting_in_any_table_is_an_error(tmp_path: Path, table: str) -> None:
    _write(tmp_path, "pyproject", table, 'imagee = "x"')
    with pytest.raises(UsageError, match=r"unknown setting.*imagee"):
        config.find_settings(tmp_path)


def test_a_misspelt_table_is_an_error_not_ignored(tmp_path: Path) -> None:
    _write(tmp_path, "pyproject", "polcy", "require_digest = true")  # was silently dropped: no policy applied
    with pytest.raises(UsageError, match=r"\[tool\.nb2kfp\]: unknown setting\(s\): polcy"):
        config.find_settings(tmp_path)


def test_serving_pins_come_from_the_settings_read_once(tmp_path: Path) -> None:
    _write(tmp_path, "pyproject", "serving", 'kserve_image = "registry.example.com/sklearnserver:v1"')
    settings = config.find_settings(tmp_path)
    assert settings.serving == (("kserve_image", "registry.example.com/sklearnserver:v1"),)
    assert runtimes.runtime("kserve", tmp_path).image == "registry.example.com/sklearnserver:v1"


def test_good_settings_of_every_table_read_back(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "nb2kfp.toml").write_text(
        'image = "python:3.12-slim"\nworkspace = "10Gi"\nartifact_key_secret = "keys:hmac"\n'
        '[policy]\nallowed_images = ["docker.io/library/python"]\nrequire_digest = true\n'
        '[catalog]\npaths = ["components"]\n'
        '[serving]\nmlserver_image = "registry.example.com/mlserver@sha256:' + "c" * 64 + '"\n',
        encoding="utf-8",
    )
    s = config.find_settings(tmp_path)
    assert (s.image, s.workspace, s.artifact_key_secret) == ("python:3.12-slim", "10Gi", ("keys", "hmac"))
    assert (s.allowed_images, s.require_digest) == (("docker.io/library/python",), True)
    assert s.catalog_paths == (str((tmp_path / "components").resolve()),)
    assert dict(s.serving)["mlserver_image"].endswith("c" * 64)
