"""The model card: what trained the model, its reference sample, and each feature's permutation importance."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from nb2kfp.serving import card, reference
from nb2kfp.serving.meta import ModelMeta


def test_the_card_ranks_the_features_the_model_uses(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"noise": rng.normal(size=600), "signal": rng.normal(size=600), "colour": rng.integers(0, 3, 600)})
    y = (X["signal"] > 0).astype(int)
    joblib.dump(DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y), tmp_path / "model.joblib")
    meta = ModelMeta("clf", "scikit-learn", "1.9.1", "model.joblib", 3, "train.ipynb", "abc123")
    sample = reference.make(X, "X")
    details = {"run": "train-1", "parameters": {"depth": 2}, "metrics": {"accuracy": 0.97}}
    content = card.make(meta, tmp_path, sample, details)
    assert content["importance"][0]["feature"] == "signal"
    assert content["importance"][0]["mean"] > 0.3 and all(r["mean"] < 0.05 for r in content["importance"][1:])
    assert content["reference"]["sha256"] == sample.sha256 and content["commit"] == "abc123"
    assert "run" not in content  # the card in the image names no run: the same weights keep their digest
    assert card.file_bytes(content) == card.file_bytes(card.make(meta, tmp_path, sample, details))  # deterministic
    assert json.loads(card.file_bytes(content))["metrics"] == {"accuracy": 0.97}
    page = card.page(content, "r/clf@sha256:1", "train-1")
    assert "<h1>Model card: clf</h1>" in page and "<th>run</th><td>train-1</td>" in page
    assert page.index("<td>signal</td>") < page.index("<td>noise</td>") and "permutation importance" in page


def test_a_model_without_a_sample_or_sklearn_still_has_a_card(tmp_path: Path) -> None:
    (tmp_path / "model.bst").write_bytes(b"x")
    content = card.make(ModelMeta("m", "xgboost", "2.1.3", "model.bst"), tmp_path, None, {})
    assert content["framework"] == "xgboost 2.1.3" and "importance" not in content
    assert "<h1>Model card: m</h1>" in card.page(content)
