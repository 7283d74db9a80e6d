"""``plan --against REF`` reads every file as of REF: the top notebook, the notebooks it includes, the settings.

A real git repository: a composed notebook (``notebook:sub.ipynb``) committed, then only one file edited.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import git, require
from nbfactory import Cell, write

require(shutil.which("git") is not None, "git is not installed")


def sub(stats: str = "total = sum(xs)") -> list[Cell]:
    return [
        (["pipeline-parameters"], "n = 4"),
        (["step:prep"], "xs = list(range(n))"),
        (["step:stats", "prev:prep"], stats),
    ]


TOP: list[Cell] = [
    (["pipeline-parameters"], "n = 6"),
    (["step:start"], "base = n * 10"),
    (["notebook:parts/sub.ipynb"], "# the statistics notebook"),
    (["step:report"], "score = total + base"),
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q")
    (work / "parts").mkdir()
    write(work / "parts" / "sub.ipynb", sub())
    write(work / "main.ipynb", TOP)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "first")
    return work


def plan(notebook: Path, ref: str) -> dict[str, object]:
    from nb2kfp.commands import plan as plan_command

    lines: list[str] = []
    assert plan_command.run(notebook, ref, "json", lines.append) == 0
    result: dict[str, object] = json.loads(lines[0])
    return result


def statuses(result: dict[str, object]) -> dict[str, tuple[str, bool]]:
    steps = result["steps"]
    assert isinstance(steps, list)
    return {s["step"]: (s["status"], s["cached"]) for s in steps}


def test_an_edit_to_an_included_notebook_shows_as_changed(repo: Path) -> None:
    assert set(statuses(plan(repo / "main.ipynb", "HEAD")).values()) == {("unchanged", True)}
    write(repo / "parts" / "sub.ipynb", sub("total = sum(xs) * 2"))  # only the included notebook changes
    result = plan(repo / "main.ipynb", "HEAD")
    assert result["base"] == "compiled"
    assert statuses(result) == {
        "start": ("unchanged", True),
        "sub__prep": ("unchanged", True),
        "sub__stats": ("changed", False),
        "report": ("unchanged", False),  # downstream of the changed step: runs again
    }
    git(repo, "commit", "-q", "-am", "second")  # committed: the same plan between the two commits
    assert statuses(plan(repo / "main.ipynb", "HEAD~1")) == statuses(result)
    assert set(statuses(plan(repo / "main.ipynb", "HEAD")).values()) == {("unchanged", True)}


def test_an_included_notebook_absent_at_ref_makes_the_base_invalid(repo: Path) -> None:
    git(repo, "rm", "-q", "--cached", "parts/sub.ipynb")
    git(repo, "commit", "-q", "-m", "untrack the sub notebook")  # still on disk, but not at HEAD
    result = plan(repo / "main.ipynb", "HEAD")
    assert result["base"] == "invalid"
    assert set(statuses(result).values()) == {("added", False)}


def test_settings_are_read_at_ref(repo: Path) -> None:
    (repo / "nb2kfp.toml").write_text('image = "registry.example.com/ml/base:2"\n', encoding="utf-8")  # not committed
    result = plan(repo / "main.ipynb", "HEAD")
    assert {status for status, _ in statuses(result).values()} == {"changed"}  # every step's image changed


def test_a_component_from_a_catalog_folder_is_read_at_ref(repo: Path) -> None:
    from nb2kfp.catalog import lookup

    (repo / "nb2kfp.toml").write_text('[catalog]\npaths = ["components"]\n', encoding="utf-8")
    (repo / "components" / "drift").mkdir(parents=True)
    component = repo / "components" / "drift" / "1.0.yaml"
    shutil.copy(lookup.bundled_dir() / "data-drift-check" / "0.1.0.yaml", component)
    calls: list[Cell] = [
        (["step:data"], "ref = 'r.csv'\ncur = 'c.csv'"),
        (["component:drift"], "reference = ref\ncurrent = cur\ncolumn = 'x'"),
    ]
    write(repo / "drift.ipynb", calls)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a component")
    assert set(statuses(plan(repo / "drift.ipynb", "HEAD")).values()) == {("unchanged", True)}
    component.write_text(component.read_text().replace("python:3.11-slim", "python:3.12-slim"))  # not committed
    assert statuses(plan(repo / "drift.ipynb", "HEAD")) == {"data": ("unchanged", True), "drift": ("changed", False)}
    (repo / "components" / "drift" / "2.0.yaml").write_text(component.read_text())  # a newer version, not committed
    component.write_text((lookup.bundled_dir() / "data-drift-check" / "0.1.0.yaml").read_text())
    assert statuses(plan(repo / "drift.ipynb", "HEAD")) == {"data": ("unchanged", True), "drift": ("changed", False)}
