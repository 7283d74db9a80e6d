"""The reference sample of a model's training data: found by the front end, packed with the model, described.

Front end: ``model:clf`` records the X of ``clf.fit(X, y)`` (or the variable a ``reference:`` tag names); a
``reference:`` variable the step neither sets nor receives is a located error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build
from nb2kfp.ir import Pipeline
from nbfactory import write

IMPORTS = (["imports"], "from sklearn.tree import DecisionTreeClassifier")


def pipeline_of(tmp_path: Path, cells: list[tuple[list[str], str]]) -> Pipeline:
    return build(write(tmp_path / "nb.ipynb", [IMPORTS, *cells])).pipeline


@pytest.mark.parametrize(
    "code",
    [
        "clf = DecisionTreeClassifier()\nclf.fit(X, y)",
        "clf = DecisionTreeClassifier().fit(X, y)",
        "clf = DecisionTreeClassifier()\nclf.set_params(max_depth=2).fit(X=X, y=y)",
    ],
)
def test_the_x_given_to_fit_is_the_reference(tmp_path: Path, code: str) -> None:
    step = pipeline_of(
        tmp_path,
        [(["step:data"], "X, y = [[0.0], [1.0]], [0, 1]"), (["step:train", "model:clf"], code)],
    ).step("train")
    assert step.references == (("clf", "X"),)
    assert "X" in step.outputs and "clf" in step.outputs


def test_a_reference_tag_names_the_data(tmp_path: Path) -> None:
    code = "X, y = [[0.0], [1.0]], [0, 1]\nclf = DecisionTreeClassifier().fit(X * 2, y)"
    tags = ["step:train", "model:clf", "reference:X"]
    assert pipeline_of(tmp_path, [([*tags], code)]).step("train").references == (("clf", "X"),)
    assert pipeline_of(tmp_path, [(tags[:2], code)]).step("train").references == ()  # not a plain variable


@pytest.mark.parametrize(
    ("tags", "fragment"),
    [
        (["step:train", "model:clf", "reference:Z"], "reference:Z: step 'train' neither sets nor receives 'Z'"),
        (["step:train", "reference:X"], "reference:X: step 'train' has no model:VARIABLE tag"),
        (["reference:X"], "prev:, model: and reference: tags need a step:NAME tag"),
    ],
)
def test_a_bad_reference_tag_is_a_located_error(tmp_path: Path, tags: list[str], fragment: str) -> None:
    cells = [(["step:data"], "X, y = [[0.0], [1.0]], [0, 1]"), (tags, "clf = DecisionTreeClassifier().fit(X, y)")]
    with pytest.raises(NotebookError) as info:
        pipeline_of(tmp_path, cells)
    (found,) = [d for d in info.value.diagnostics if fragment in d.message]
    assert found.cell == 3 and found.format().startswith(f"{tmp_path / 'nb.ipynb'}: cell 3")


def test_the_sample_is_capped_seeded_and_typed() -> None:
    import numpy as np
    import pandas as pd

    from nb2kfp.serving import reference

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"size": rng.normal(size=12_000), "colour": rng.choice(["red", "blue"], 12_000)})
    first, again = reference.make(frame, "X"), reference.make(frame.copy(), "X")
    assert first.parquet == again.parquet and first.sha256 == again.sha256  # same data, same bytes
    assert len(first.frame) == reference.MAX_ROWS and first.rows == 12_000
    assert [(f.name, f.kind) for f in first.features] == [("size", "numeric"), ("colour", "categorical")]
    schema = first.schema()
    assert schema["sample_rows"] == 5000 and schema["sha256"] == first.sha256
    labels = first.labels()
    assert labels["io.nb2kfp.reference.features"] == "2" and labels["io.nb2kfp.reference.categorical"] == "1"
    back, features = reference.read(first.parquet, first.files()[reference.SCHEMA])
    assert back.equals(first.frame) and features == first.features
    other = frame.copy()
    other.loc[0, "size"] += 1.0
    assert reference.make(other.iloc[:100], "X").sha256 != reference.make(frame.iloc[:100], "X").sha256
    arrays = reference.make(np.arange(6.0).reshape(3, 2), "X")
    assert [f.name for f in arrays.features] == ["x0", "x1"] and arrays.rows == 3


def test_a_pickled_value_is_never_loaded_as_a_reference(tmp_path: Path) -> None:
    from nb2kfp.errors import RunError
    from nb2kfp.serving import reference

    (tmp_path / "nb2kfp.json").write_text('{"format": "pickle"}')
    (tmp_path / "data.pickle").write_bytes(b"not loaded")
    with pytest.raises(RunError, match="saved as pickle: a reference sample is a DataFrame"):
        reference.from_artifact(tmp_path, "model:clf's reference")


def test_a_reference_file_for_model_build(tmp_path: Path) -> None:
    import pandas as pd

    from nb2kfp.errors import UsageError
    from nb2kfp.serving import reference

    pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]}).to_csv(tmp_path / "train.csv", index=False)
    assert [f.kind for f in reference.from_file(tmp_path / "train.csv").features] == ["numeric", "categorical"]
    with pytest.raises(UsageError, match=r"give a \.parquet, \.csv, \.feather or \.npy file"):
        reference.from_file(tmp_path / "train.txt")
    with pytest.raises(UsageError, match="cannot read it"):
        reference.from_file(tmp_path / "missing.csv")
