"""The drift tests on their own: KS for numeric features, chi-squared for categorical ones, the corrections,
reading logged requests, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nb2kfp.monitor import drift
from nb2kfp.serving import reference

SCHEMA = {"features": [{"name": n, "kind": "numeric"} for n in "abcd"] + [{"name": "colour", "kind": "categorical"}]}


def frame(rng: np.random.Generator, n: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    shift = shift or {}
    data = {name: rng.normal(loc=shift.get(name, 0.0), size=n) for name in "abcd"}
    p = [0.2, 0.8] if "colour" in shift else [0.5, 0.5]
    return pd.DataFrame({**data, "colour": rng.choice(["red", "blue"], n, p=p)})


@pytest.mark.parametrize("correction", drift.CORRECTIONS)
def test_drift_on_exactly_the_shifted_features(correction: str) -> None:
    rng = np.random.default_rng(7)
    ref = frame(rng, 5000)
    same = drift.test(ref, frame(rng, 2000), SCHEMA, 0.05, correction, "img")
    assert not same.drifted and min(same.adjusted.values()) >= 0.05
    moved = drift.test(ref, frame(rng, 2000, {"b": 0.5, "colour": 1}), SCHEMA, 0.05, correction, "img")
    assert moved.drifted_features == ["b", "colour"]
    assert moved.kinds == {"a": "numeric", "b": "numeric", "c": "numeric", "d": "numeric", "colour": "categorical"}


def test_the_corrections_match_scipy() -> None:
    from scipy import stats

    p = [0.01, 0.04, 0.03, 0.2, 0.001]
    assert drift._adjust(p, "bh") == pytest.approx(list(stats.false_discovery_control(p, method="bh")))
    assert drift._adjust(p, "bonferroni") == pytest.approx([0.05, 0.2, 0.15, 1.0, 0.005])


def test_logged_requests_in_both_v2_shapes(tmp_path: Path) -> None:
    tensor = {"inputs": [{"name": "input-0", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [3, 4]]}]}
    named = {"inputs": [{"name": "x0", "data": [5], "shape": [1]}, {"name": "x1", "data": [6], "shape": [1]}]}
    lines = [
        {"request": tensor, "status": 200},
        {"request": tensor, "status": 400},  # refused: the model never saw it
        named,  # a bare V2 request
    ]
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    (tmp_path / "logs" / ".nb2kfp" / "cache").mkdir(parents=True)  # nb2kfp run in the logs folder: not requests
    (tmp_path / "logs" / ".nb2kfp" / "cache" / "k.json").write_text('{"key": 1}\n')
    got = drift.read_requests(str(tmp_path / "logs"), ["x0", "x1"])
    assert got.to_numpy().tolist() == [[1, 2], [3, 4], [5, 6]]
    (tmp_path / "bad.jsonl").write_text('{"request": {"inputs": []}}\n')
    with pytest.raises(drift.DriftError, match=r"bad\.jsonl, line 1: not a logged V2 inference request"):
        drift.read_requests(str(tmp_path / "bad.jsonl"), ["x0", "x1"])
    with pytest.raises(drift.DriftError, match="no such file or folder"):
        drift.read_requests(str(tmp_path / "none"), ["x0"])


def test_the_report_names_the_verdict_and_each_feature() -> None:
    rng = np.random.default_rng(3)
    sample = reference.make(frame(rng, 3000), "X")
    schema = json.loads(sample.files()[reference.SCHEMA])
    result = drift.test(sample.frame, frame(rng, 1000, {"a": 1.0}), schema, 0.05, "bonferroni", "r/m@sha256:1")
    page = result._repr_html_()
    assert "drift in 1 of 5 features: a" in page and page.count("<svg") == 5
    assert '<tr class="drift"><td>a</td><td>numeric</td><td>Kolmogorov-Smirnov</td>' in page
    assert "<td>colour</td><td>categorical</td><td>chi-squared</td>" in page
