"""What a step image carries from the notebook's folder (frontend/imagefiles.py), what it installs
(requirements.py), and what lint says where a file or module will not be in a pod (NB102, NB103)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nb2kfp import requirements
from nb2kfp.errors import FilesError, UsageError
from nb2kfp.frontend import imagefiles
from nb2kfp.frontend.builder import build
from nbfactory import write


def compiled(folder: Path, cells: list[tuple[list[str], str]], name: str = "nb.ipynb") -> tuple[Path, object]:
    nb = write(folder / name, cells)
    return nb, build(nb).pipeline


def carried(folder: Path, cells: list[tuple[list[str], str]]) -> imagefiles.Carried:
    nb, pipeline = compiled(folder, cells)
    return imagefiles.collect(nb, pipeline)  # type: ignore[arg-type]


READS = [
    (["imports"], "import helpers\nfrom tools.scale import double"),
    (["step:load"], "text = open('data.csv').read()\nrows = helpers.count(text)"),
    (["step:out", "prev:load"], "open('out.txt', 'w').write(str(rows))\nback = open('out.txt').read()"),
]


def project(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text("x\n1\n2\n")
    (tmp_path / "helpers.py").write_text("import yaml\nimport util2\n\ndef count(t):\n    return len(t.split())\n")
    (tmp_path / "util2.py").write_text("X = 1\n")
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    (tmp_path / "tools" / "scale.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "tools" / "__pycache__").mkdir()
    (tmp_path / "tools" / "__pycache__" / "scale.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "unrelated.bin").write_bytes(b"\1" * 100)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("[core]\n")
    return tmp_path


def test_the_image_carries_what_the_steps_read_and_the_local_modules_they_import(tmp_path: Path) -> None:
    found = carried(project(tmp_path), READS)
    assert [name for name, _ in found.files] == [
        "data.csv",
        "helpers.py",
        "tools/__init__.py",
        "tools/scale.py",
        "util2.py",  # imported by helpers.py: local modules are followed
    ]  # not out.txt (a step writes it), unrelated.bin, .git or __pycache__
    assert found.local_modules == ("helpers", "tools", "util2")
    assert found.imports == ("yaml",)  # what the local modules import reaches the image's requirements


def test_the_include_file_adds_and_keeps_out_with_gitignore_patterns(tmp_path: Path) -> None:
    folder = project(tmp_path)
    (folder / "conf").mkdir()
    (folder / "conf" / "a.yaml").write_text("a: 1\n")
    (folder / "conf" / "b.yaml").write_text("b: 1\n")
    (folder / "conf" / "deep").mkdir()
    (folder / "conf" / "deep" / "c.yaml").write_text("c: 1\n")
    (folder / imagefiles.INCLUDE_FILE).write_text("# extra files\nconf/\n!conf/b.yaml\n!data.csv\n*.bin\n")
    names = [name for name, _ in carried(folder, READS).files]
    assert "conf/a.yaml" in names and "conf/deep/c.yaml" in names and "unrelated.bin" in names
    assert "conf/b.yaml" not in names and "data.csv" not in names  # a '!' line wins over a step's read
    assert imagefiles.INCLUDE_FILE not in names


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.csv", "a/b/x.csv", False, True),  # no slash: at any depth
        ("/x.csv", "a/x.csv", False, None),  # a leading slash anchors it to the notebook's folder
        ("data/", "data/sub/x.csv", False, True),  # a folder: what is in it
        ("data/", "data", False, None),  # a trailing slash: folders only
        ("a/**/z.txt", "a/b/c/z.txt", False, True),
        ("a/**/z.txt", "a/z.txt", False, True),
        ("x?.[ct]sv", "x1.tsv", False, True),
        ("\\!bang", "!bang", False, True),
    ],
)
def test_patterns_read_as_in_gitignore(pattern: str, path: str, is_dir: bool, expected: bool | None) -> None:
    assert imagefiles.decision(imagefiles.parse_rules(pattern, "f"), path, is_dir=is_dir) is expected


def test_an_include_pattern_that_leaves_the_folder_is_a_located_error(tmp_path: Path) -> None:
    (tmp_path / imagefiles.INCLUDE_FILE).write_text("data.csv\n../secrets/key.pem\n")
    with pytest.raises(UsageError, match=r"\.nb2kfpinclude: line 2: '\.\./secrets/key\.pem': '\.\.' leaves"):
        carried(tmp_path, READS)


def test_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "data.csv").write_text("x\n")
    folder = tmp_path / "nb"
    folder.mkdir()
    (folder / "data.csv").symlink_to(outside / "data.csv")
    with pytest.raises(FilesError, match=r"data\.csv: a link to .*elsewhere/data\.csv, outside the notebook's folder"):
        carried(folder, [(["step:a"], "t = open('data.csv').read()")])
    (folder / "inside.csv").write_text("y\n")
    (folder / "data.csv").unlink()
    (folder / "data.csv").symlink_to("inside.csv")  # a link inside the folder: its file is copied
    found = carried(folder, [(["step:a"], "t = open('data.csv').read()")])
    assert [(n, p.read_text()) for n, p in found.files] == [("data.csv", "y\n")]


def test_a_file_with_a_credential_is_refused_without_showing_it(tmp_path: Path) -> None:
    token = "glpat-" + "Zx8" * 8
    (tmp_path / "settings.py").write_text(f"URL = 'https://x'\nTOKEN = '{token}'\n")
    with pytest.raises(FilesError) as caught:
        carried(tmp_path, [(["step:a"], "import settings\nu = settings.URL")])
    assert "settings.py: line 2: a GitLab token" in str(caught.value) and token not in str(caught.value)


def test_data_too_big_for_an_image_points_to_a_workspace_or_object_storage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "big.parquet").write_bytes(os.urandom(1_500_000))
    cells = [(["step:a"], "import pandas as pd\ndf = pd.read_parquet('big.parquet')")]
    monkeypatch.setenv(imagefiles.LIMIT_ENV, "1")
    with pytest.raises(FilesError) as caught:
        carried(tmp_path, cells)
    message = str(caught.value)
    assert "come to 2 MB, over the 1 MB an image should hold (largest: big.parquet 2 MB)" in message
    assert "workspace" in message and "object storage" in message and "NB2KFP_IMAGE_FILES_MB" in message
    monkeypatch.setenv(imagefiles.LIMIT_ENV, "2")
    assert carried(tmp_path, cells).size == 1_500_000


def test_the_files_digest_follows_contents_not_times(tmp_path: Path) -> None:
    folder = project(tmp_path)
    first = carried(folder, READS).digest()
    os.utime(folder / "data.csv", (1, 1))
    assert carried(folder, READS).digest() == first  # an unchanged folder: the same image tag
    (folder / "data.csv").write_text("x\n1\n3\n")
    assert carried(folder, READS).digest() != first


def test_requirements_are_the_imports_mapped_here_plus_the_file_beside_the_notebook(tmp_path: Path) -> None:
    import yaml

    nb = tmp_path / "nb.ipynb"
    found = requirements.resolve(nb, ("yaml", "helpers", "json", "nb2kfp_no_such_module"), ("helpers",))
    assert f"PyYAML=={yaml.__version__}" in found.lines  # the version installed here
    assert found.unmapped == ("nb2kfp_no_such_module",)  # named, left out (lint: NB103)
    assert not any(line.lower().startswith("helpers") for line in found.lines)  # a local module is files
    (tmp_path / "requirements.txt").write_text("pyyaml>=6\nrequests==2.0\n")
    found = requirements.resolve(nb, ("yaml",))
    assert "pyyaml>=6" in found.lines and "requests==2.0" in found.lines  # the file beside it: as written
    assert not any(line.startswith("PyYAML==") for line in found.lines)  # its pin wins


def test_a_repository_wide_requirements_file_only_pins_what_the_notebook_uses(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "requirements.txt").write_text("pyyaml==6.0.1\ntorch==2.4.0\n")
    (tmp_path / "team").mkdir()
    found = requirements.resolve(tmp_path / "team" / "nb.ipynb", ("yaml",))
    assert "pyyaml==6.0.1" in found.lines
    assert not any("torch" in line for line in found.lines)  # another notebook's package (kale#872)
    (tmp_path / "team" / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["rich==13.0"]\n')
    assert "rich==13.0" in requirements.resolve(tmp_path / "team" / "nb.ipynb", ("yaml",)).lines


def test_lint_warns_where_a_file_will_not_be_in_the_pod_and_names_unmappable_modules(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("x\n")
    (tmp_path / "helpers.py").write_text("")
    cells = [
        (["imports"], "import helpers\nimport nb2kfp_no_such_module"),
        (["step:a"], "t = open('data.csv').read()"),
        (["step:b", "image:python:3.12-slim"], "u = open('data.csv').read()\nw = open('../up.csv').read()"),
    ]
    (tmp_path / "up.csv").write_text("")
    folder = tmp_path / "nb"
    folder.mkdir()
    for name in ("data.csv", "helpers.py"):
        (folder / name).write_text((tmp_path / name).read_text())
    nb = write(folder / "nb.ipynb", cells)
    found = [d.format() for d in build(nb).diagnostics if d.code in ("NB102", "NB103")]
    assert len(found) == 3, found
    assert "cell 3, line 1: warning: step 'b' reads 'data.csv'" in found[0]  # step a runs the built image: no warning
    assert "runs an image of its own (image: tag)" in found[0]
    assert "reads '../up.csv'" in found[1] and "outside the notebook's folder" in found[1]
    assert "cell 1, line 2: warning: imports 'nb2kfp_no_such_module'" in found[2] and "[NB103]" in found[2]


def test_a_librarys_extras_installed_here_come_along_and_others_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hist's plots import mplhep only when called (make corpus-docker: hist/Stack failed in its pod only): an
    optional extra whose packages are all installed here is what the notebook's run here used."""
    site = tmp_path / "site"
    for name, version, requires in (
        ("nb2kfp_fakehist", "1.0", ['nb2kfp-fakeplot>=2; extra == "plot"', 'nb2kfp-absent; extra == "fit"']),
        ("nb2kfp_fakeplot", "2.5", []),
    ):
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        lines = ["Metadata-Version: 2.1", f"Name: {name.replace('_', '-')}", f"Version: {version}"]
        lines += [f"Requires-Dist: {r}" for r in requires]
        (info / "METADATA").write_text("\n".join(lines) + "\n")
        (info / "top_level.txt").write_text(name + "\n")
        (site / name).mkdir()
        (site / name / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    found = requirements.resolve(tmp_path / "nb.ipynb", ("nb2kfp_fakehist",))
    assert "nb2kfp-fakehist==1.0" in found.lines
    assert "nb2kfp-fakeplot==2.5" in found.lines  # the plot extra: all installed here
    assert not any("absent" in line for line in found.lines)  # the fit extra: not installed here, not wanted
