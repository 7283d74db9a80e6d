"""The real-world corpus (tests/corpus/): the tagging the harness does, and a bounded subset run end to end.

``make corpus`` runs every notebook; here a few quick ones run in all three taggings against papermill and must
still pass wherever tests/corpus/baseline.json says they passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from corpus_harness import (
    VARIANTS,
    Outcome,
    _workdir,
    by_source,
    comparable,
    load_baseline,
    notebooks,
    regressions,
    run_corpus,
    tag,
)

SUBSET = ["corner/sigmas", "corner/custom", "formulaic/quickstart", "xgboost/boost_from_prediction"]


def _nb(*cells: tuple[str, str]) -> dict[str, Any]:
    return {
        "cells": [
            {"cell_type": kind, "metadata": {}, "source": src, **({"outputs": []} if kind == "code" else {})}
            for kind, src in cells
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 4,
    }


def _tags(nb: dict[str, Any]) -> list[list[str]]:
    return [c["metadata"].get("tags", []) for c in nb["cells"]]


def test_chain_makes_every_non_empty_code_cell_a_step() -> None:
    nb = _nb(("code", "import math"), ("markdown", "# Title"), ("code", "x = 1"), ("code", "  \n"), ("code", "y = x"))
    assert _tags(tag(nb, "chain")) == [["step:c1"], [], ["step:c3"], [], ["step:c5"]]


def test_headings_start_a_step_at_each_heading_and_keep_foreign_tags() -> None:
    nb = _nb(
        ("code", "import math"),
        ("code", "a = 1"),
        ("markdown", "Some text\n\n## Fit"),
        ("markdown", "more text"),
        ("code", ""),
        ("code", "b = a"),
        ("code", "c = b"),
        ("markdown", "Results\n======="),
        ("code", "d = c"),
    )
    nb["cells"][5]["metadata"]["tags"] = ["hide-input"]
    tagged = _tags(tag(nb, "headings"))
    assert tagged == [["step:s1"], [], [], [], [], ["hide-input", "step:s6"], [], [], ["step:s9"]]


def test_only_values_equal_in_both_papermill_runs_are_compared() -> None:
    first = {"n": ["int", "3"], "t": ["float", "1.5"], "nan": ["float", "nan"], "s": ["str", "a"], "gone": ["int", "1"]}
    second = {"n": ["int", "3"], "t": ["float", "2.5"], "nan": ["float", "nan"], "s": ["str", "a"]}
    assert comparable(first, second) == {"n": ["int", "3"], "nan": ["float", "nan"], "s": ["str", "a"]}


def test_the_summary_gives_each_sources_rates_per_variant() -> None:
    outcomes = [
        Outcome("xgboost/a", "chain", comparable=4, equal=3, category="value mismatch"),
        Outcome("xgboost/b", "chain", comparable=2, equal=2),
        Outcome("mlbook/c", "chain", comparable=0),
        Outcome("xgboost/a", "headings", comparable=4, equal=4),
    ]
    assert by_source(outcomes, ["chain", "headings"]) == [
        "    mlbook     chain 0/0 -, 1/1; headings 0/0 -, 0/0",
        "    xgboost    chain 5/6 83.3%, 1/2; headings 4/4 100.0%, 1/1",
    ]


def test_a_run_folder_has_the_notebooks_neighbours_and_their_folders_but_no_notebook(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "figures").mkdir(parents=True)
    (source / "figures" / ".gitkeep").write_text("")
    (source / "data.csv").write_text("a\n1\n")
    for name in ("nb.ipynb", "other.ipynb"):
        (source / name).write_text("{}")
    work = _workdir(source / "nb.ipynb", tmp_path / "runs", "x/chain")
    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == ["data.csv", "figures", "figures/.gitkeep"]


@pytest.mark.slow
def test_corpus_subset_does_not_regress(tmp_path: Path) -> None:
    baseline = load_baseline()
    selected = {k: v for k, v in notebooks().items() if k in SUBSET}
    assert sorted(selected) == sorted(SUBSET)
    assert all("pass" in baseline.get(k, {}).values() for k in SUBSET), "the subset must be notebooks that pass"
    outcomes, unusable = run_corpus(selected, list(VARIANTS), tmp_path, jobs=2, say=lambda _: None)
    assert not unusable
    assert len(outcomes) == len(SUBSET) * len(VARIANTS)
    lost = regressions(outcomes, baseline)
    assert not lost, "\n".join(lost)
