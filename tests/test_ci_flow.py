"""``nb2kfp ci all`` compiles each notebook once per run and hands the IR from phase to phase.

Runs the real phases in-process (lint, compile, publish to the KFP API double, report without a GitLab token:
logged) and counts the front end's builds by wrapping :func:`nb2kfp.frontend.builder.build`.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLES
from doubles.kfp_server import KfpServer
from nbfactory import write

TOKEN = "kfp-test-token-ci-flow"


@pytest.fixture
def kfp(monkeypatch: pytest.MonkeyPatch) -> Iterator[KfpServer]:
    monkeypatch.setenv("NB2KFP_KFP_TOKEN", TOKEN)
    for name in (
        "NB2KFP_KFP_TOKEN_FILE",
        "NB2KFP_GITLAB_TOKEN",
        "GITLAB_TOKEN",
        "CI_MERGE_REQUEST_IID",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("CI_COMMIT_BEFORE_SHA", "0" * 40)  # a new branch: every notebook is built and published
    with KfpServer(token=TOKEN) as server:
        yield server


def test_ci_all_builds_each_notebook_ir_once(kfp: KfpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nb2kfp.commands import ci
    from nb2kfp.frontend import builder

    shutil.copy(EXAMPLES / "wordcount.ipynb", tmp_path / "wordcount.ipynb")
    write(tmp_path / "small.ipynb", [(["step:a"], "x = 1"), (["step:b", "prev:a"], "y = x + 1")])
    write(tmp_path / "broken.ipynb", [(["step:a"], "y = undefined_name + 1")])
    monkeypatch.chdir(tmp_path)
    builds: Counter[str] = Counter()
    real = builder.build

    def counting(path: str | Path, *args: Any, **kwargs: Any) -> builder.Result:
        builds[Path(path).name] += 1
        return real(path, *args, **kwargs)

    monkeypatch.setattr(builder, "build", counting)
    lines: list[str] = []
    code = ci.run("all", "*.ipynb", tmp_path / "out", None, kfp.url, lines.append)

    assert code == 1, "\n".join(lines)  # broken.ipynb fails lint and compile; the others go through
    assert builds == {"wordcount.ipynb": 1, "small.ipynb": 1, "broken.ipynb": 1}
    state = json.loads((tmp_path / "out" / "ci.json").read_text())["notebooks"]
    assert {nb: entry["status"] for nb, entry in state.items()} == {
        "broken.ipynb": "failed",
        "small.ipynb": "success",
        "wordcount.ipynb": "success",
    }
    assert state["wordcount.ipynb"]["kfp_url"] and state["small.ipynb"]["kfp_url"]
    assert kfp.versions_of("wordcount") and kfp.versions_of("small")
    assert any("```mermaid" in line for line in lines)  # the report phase rendered the DAGs from the same IR
