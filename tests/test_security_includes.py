"""Security case 6 (issue 14): ``notebook:`` includes stay inside the repository (or, outside a repository, inside
the top notebook's folder tree); a link that leads out is refused too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build
from nbfactory import write

SUB = [(["step:inner"], "y = 1")]


def including(path: Path, ref: str) -> Path:
    return write(path, [([f"notebook:{ref}"], ""), (["step:after"], "print(y)")])


def codes(path: Path) -> list[str]:
    with pytest.raises(NotebookError) as info:
        build(path)
    return [d.code for d in info.value.errors]


def test_an_include_outside_the_repository_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "nbs").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    write(tmp_path / "other_project.ipynb", SUB)
    assert "NB084" in codes(including(repo / "nbs" / "main.ipynb", "../../other_project.ipynb"))
    assert "NB084" in codes(including(repo / "nbs" / "abs.ipynb", str(tmp_path / "other_project.ipynb")))


def test_an_include_elsewhere_in_the_repository_is_fine(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "nbs").mkdir(parents=True)
    (repo / "shared").mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    write(repo / "shared" / "sub.ipynb", SUB)
    pipeline = build(including(repo / "nbs" / "main.ipynb", "../shared/sub.ipynb")).pipeline
    assert len(pipeline.steps) == 2


def test_outside_a_repository_includes_stay_under_the_top_notebook_folder(tmp_path: Path) -> None:
    (tmp_path / "top" / "parts").mkdir(parents=True)
    write(tmp_path / "top" / "parts" / "sub.ipynb", SUB)
    write(tmp_path / "elsewhere.ipynb", SUB)
    assert len(build(including(tmp_path / "top" / "main.ipynb", "parts/sub.ipynb")).pipeline.steps) == 2
    assert "NB084" in codes(including(tmp_path / "top" / "bad.ipynb", "../elsewhere.ipynb"))


def test_a_link_that_leads_out_is_refused(tmp_path: Path) -> None:
    (tmp_path / "top").mkdir()
    write(tmp_path / "elsewhere.ipynb", SUB)
    (tmp_path / "top" / "link.ipynb").symlink_to(tmp_path / "elsewhere.ipynb")
    assert "NB084" in codes(including(tmp_path / "top" / "main.ipynb", "link.ipynb"))


def test_a_nested_include_is_confined_by_the_top_notebook(tmp_path: Path) -> None:
    """An included notebook in a subfolder cannot reach above the top notebook's folder either."""
    (tmp_path / "top" / "parts").mkdir(parents=True)
    write(tmp_path / "elsewhere.ipynb", SUB)
    write(tmp_path / "top" / "parts" / "mid.ipynb", [(["notebook:../../elsewhere.ipynb"], ""), (["step:m"], "z = y")])
    assert "NB083" in codes(including(tmp_path / "top" / "main.ipynb", "parts/mid.ipynb"))
