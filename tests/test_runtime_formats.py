"""The step runtime's value formats (runtime/step.py FORMATS): each format on its own, a round trip that keeps
types, dtypes and indexes, the fallbacks to pickle, and the messages for values that cannot cross steps.
Values go through save_value and load_value exactly as a step and the next step use them."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import subprocess
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from nb2kfp.runtime import step


def round_trip(value: object, folder: Path, shared: dict[str, Any] | None = None) -> tuple[str, object]:
    meta = step.save_value("v", value, str(folder), shared or {}, "from step 'a' (nb.ipynb, cell 3)")
    files = sorted(p.name for p in folder.iterdir())
    assert files == sorted(["nb2kfp.json", step._FORMATS[meta["format"]].file])  # nothing else left behind
    assert json.loads((folder / "nb2kfp.json").read_text()) == meta
    return meta["format"], step.load_value("v", str(folder))


def test_the_table_has_one_entry_per_format_and_pickle_last() -> None:
    names = [f.name for f in step.FORMATS]
    assert len(set(names)) == len(names) and len({f.file for f in step.FORMATS}) == len(names)
    assert step.FORMATS[-1].name == "pickle" and step.FORMATS[-1].detect(object())
    assert {f.name for f in step.FORMATS if f.runs_code} == {"pickle", "joblib"}  # the ones signed


def test_the_runtime_imports_only_the_standard_library_up_front() -> None:
    tree = ast.parse(Path(step.__file__).read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
    assert modules <= set(sys.stdlib_module_names) | {"__future__"}, modules


# -- pandas -------------------------------------------------------------------------------------------------------
def test_a_plain_data_frame_goes_by_arrow_with_its_dtypes_and_index(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "i8": np.array([1, 2, 3], dtype="int8"),
            "f": [0.5, np.nan, 2.0],
            "when": pd.to_datetime(["2024-01-01", "2024-02-01", None]).tz_localize("Europe/Paris"),
            "text": pd.array(["x", None, "z"], dtype="string"),
            "flag": pd.array([True, None, False], dtype="boolean"),
        },
        index=pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-03"], name="day"),
    )
    fmt, back = round_trip(df, tmp_path / "a")
    assert fmt == "feather"
    pd.testing.assert_frame_equal(back, df)


def test_a_period_index_goes_by_pickle_and_stays_a_period_index(tmp_path: Path) -> None:
    df = pd.DataFrame({"sales": [1.0, 2.0, 3.0]}, index=pd.period_range("2024-01", periods=3, freq="M"))
    fmt, back = round_trip(df, tmp_path / "a")
    assert fmt == "pickle"
    assert isinstance(back, pd.DataFrame) and isinstance(back.index, pd.PeriodIndex)
    pd.testing.assert_frame_equal(back, df)


@pytest.mark.parametrize(
    "df",
    [
        pd.DataFrame({0: [1, 2]}),  # an int column label would come back as the text '0'
        pd.DataFrame({"x": [[1], [2, 3]]}),  # lists in a column
        pd.DataFrame({"x": [1, 2]}, index=pd.Index(["a", "b"]).astype("category")),
        pd.DataFrame({"p": pd.arrays.IntervalArray.from_breaks([0, 1, 2])}),
        pd.DataFrame({"c": pd.Categorical(["a", "b", "a"], categories=["b", "a"], ordered=True)}),
        pd.DataFrame({"x": [1, 2]}, index=pd.date_range("2024-01-01", periods=2, freq="B")),  # Arrow drops freq
        pd.DataFrame({"x": [1, 2]}, index=pd.date_range("2024-01-01", periods=2, freq="h", tz="UTC")),
        pd.DataFrame({"s": pd.array(["a", None], dtype="string[pyarrow]")}),  # Arrow gives string[python] back
        pd.DataFrame({"s": pd.array(["a", None], dtype=pd.StringDtype("python", na_value=np.nan))}),
    ],
    ids=["int-label", "lists", "categorical-index", "intervals", "categories", "freq", "tz-freq", "pyarrow-str", "str"],
)
def test_frames_arrow_would_change_go_by_pickle(tmp_path: Path, df: pd.DataFrame) -> None:
    fmt, back = round_trip(df, tmp_path / "a")
    assert fmt == "pickle"
    pd.testing.assert_frame_equal(back, df)


def test_without_pyarrow_a_frame_falls_back_to_pickle_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow.feather", None)  # import fails as in an image without pyarrow
    df = pd.DataFrame({"x": [1, 2]})
    fmt, back = round_trip(df, tmp_path / "a")
    assert fmt == "pickle"
    pd.testing.assert_frame_equal(back, df)
    assert "[nb2kfp] v: Arrow unavailable (ModuleNotFoundError), using pickle" in capsys.readouterr().err


def test_a_series_goes_by_pickle_with_its_name_and_dtype(tmp_path: Path) -> None:
    s = pd.Series([1, 2], dtype="Int16", name="n")
    fmt, back = round_trip(s, tmp_path / "a")
    assert fmt == "pickle"
    pd.testing.assert_series_equal(back, s)


# -- numpy ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "array",
    [
        np.arange(6, dtype="int8").reshape(2, 3),
        np.array([1.5, np.nan], dtype="float32"),
        np.array(["2024-01-01"], dtype="datetime64[D]"),
        np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
        np.asfortranarray(np.ones((2, 2), dtype=complex)),
    ],
    ids=["int8-2d", "float32", "datetime64", "structured", "complex-fortran"],
)
def test_arrays_go_by_npy_with_their_dtype_and_shape(tmp_path: Path, array: np.ndarray[Any, Any]) -> None:
    fmt, back = round_trip(array, tmp_path / "a")
    assert fmt == "npy"
    assert isinstance(back, np.ndarray) and back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_object_arrays_and_numpy_scalars_go_by_pickle(tmp_path: Path) -> None:
    fmt, back = round_trip(np.array([1, "a", None], dtype=object), tmp_path / "a")
    assert fmt == "pickle" and list(back) == [1, "a", None]  # type: ignore[call-overload]
    fmt, back = round_trip(np.int64(7), tmp_path / "b")
    assert fmt == "pickle" and type(back) is np.int64 and back == 7
    records = np.array([(1, {"k": [2]})], dtype=[("a", "i4"), ("b", "O")])  # a structured dtype holding objects
    fmt, back = round_trip(records, tmp_path / "d")
    assert fmt == "pickle" and back.dtype == records.dtype and back[0]["b"] == {"k": [2]}  # type: ignore[attr-defined,index]
    masked = np.ma.masked_array([1, 2, 3], mask=[False, True, False])
    fmt, back = round_trip(masked, tmp_path / "c")
    assert fmt == "pickle" and list(np.ma.getmaskarray(back)) == [False, True, False]  # type: ignore[call-overload]


# -- scikit-learn ------------------------------------------------------------------------------------------------------
def test_an_estimator_goes_by_joblib_with_its_framework(tmp_path: Path) -> None:
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]], [1.0, 2.0, 3.0])
    meta = step.save_value("model", model, str(tmp_path / "a"), {})
    assert meta["format"] == "joblib" and meta["framework"] == "scikit-learn" and meta["n_features"] == "2"
    back = step.load_value("model", str(tmp_path / "a"))
    assert isinstance(back, LinearRegression) and list(back.predict([[1.0, 1.0]])) == list(model.predict([[1.0, 1.0]]))


@pytest.fixture
def notebook() -> Any:
    """The notebook's namespace, a module ``__main__``, as a step runs it."""
    with pytest.MonkeyPatch.context() as patch:
        module = types.ModuleType("__main__")
        patch.setitem(sys.modules, "__main__", module)
        yield module


def test_an_estimator_holding_notebook_code_goes_by_cloudpickle_to_a_process_without_it(
    tmp_path: Path, notebook: Any
) -> None:
    from sklearn.preprocessing import FunctionTransformer

    exec("def double(x):\n    return x * 2\n", notebook.__dict__)  # defined in the notebook
    model = FunctionTransformer(notebook.double)
    meta = step.save_value("model", model, str(tmp_path / "a"), {})
    assert meta["format"] == "pickle"
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["data.pickle", "nb2kfp.json"]  # no joblib left
    assert load_elsewhere(tmp_path / "a", "value.func(21)") == "42"


def test_without_joblib_an_estimator_goes_by_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sklearn.linear_model import LinearRegression

    monkeypatch.setitem(sys.modules, "joblib", None)
    fmt, back = round_trip(LinearRegression(), tmp_path / "a")
    assert fmt == "pickle" and isinstance(back, LinearRegression)


# -- plain Python values ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [0, -(2**70), 1.25, "text", None, True, [1, "a", None], {"b": {"a": [1.0, False]}}])
def test_json_values_go_by_json_and_keep_their_type(tmp_path: Path, value: object) -> None:
    fmt, back = round_trip(value, tmp_path / "a")
    assert fmt == "json"
    assert back == value and type(back) is type(value)
    assert json.dumps(back) == json.dumps(value)  # key order and bool/int kept


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), (1, 2), {1: "a"}, {"a": (1,)}, b"bytes", {1, 2}, 1 + 2j, range(3)],
    ids=["nan", "inf", "tuple", "int-keys", "nested-tuple", "bytes", "set", "complex", "range"],
)
def test_values_json_would_change_go_by_pickle_unchanged(tmp_path: Path, value: object) -> None:
    fmt, back = round_trip(value, tmp_path / "a")
    assert fmt == "pickle"
    assert type(back) is type(value)
    assert repr(back) == repr(value)  # nan == nan is False; their reprs agree


def test_functions_from_the_notebook_see_the_loading_steps_globals_and_bring_what_it_lacks(
    tmp_path: Path, notebook: Any
) -> None:
    exec("def helper(x):\n    return x + 1\ndef scale(x):\n    return helper(x) * 10\n", notebook.__dict__)
    module = notebook
    shared = {"helper": module.helper}  # from the functions cell: the next step defines it too
    step.save_value("f", module.scale, str(tmp_path / "a"), shared)
    assert load_elsewhere(tmp_path / "a", "value(1)", "def helper(x):\n    return x + 100\n") == "1010"
    step.save_value("f", module.scale, str(tmp_path / "b"), {})  # not shared: helper travels with it
    assert load_elsewhere(tmp_path / "b", "value(1)") == "20"
    # as in a kernel, a function reads the globals of the step that calls it: a helper that step has (defined there,
    # or received as the notebook's latest value) wins over the one saved with the function
    assert load_elsewhere(tmp_path / "b", "value(1)", "def helper(x):\n    return x + 100\n") == "1010"


def load_elsewhere(folder: Path, expression: str, functions: str = "") -> str:
    """Load the value in a new process (as the next step does), after running ``functions`` in its __main__."""
    code = (
        f"{functions}\nfrom nb2kfp.runtime import step\nvalue = step.load_value('v', {str(folder)!r})\n"
        f"print({expression})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_ctypes_function_type_crosses_steps(tmp_path: Path) -> None:
    """hist's Transform notebook: `ftype = ctypes.CFUNCTYPE(c_double, c_double)` in one step, `ftype(math.log)` in a
    later one. cloudpickle copied the class by value and the copy failed to load ("cannot set '__doc__' attribute of
    immutable type"); it goes as the CFUNCTYPE call that made it."""
    import ctypes

    ftype = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double)
    assert round_trip(ftype, tmp_path / "a") == ("pickle", ftype)  # ctypes' cache: the very same type
    assert load_elsewhere(tmp_path / "a", "value(math.exp)(0.0)", "import math") == "1.0"
    errno = ctypes.CFUNCTYPE(ctypes.c_int, use_errno=True)
    assert round_trip(errno, tmp_path / "b")[1] is errno
    py = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_int)
    back: Any = round_trip(py, tmp_path / "c")[1]  # PYFUNCTYPE makes a new type each call
    assert (back._restype_, back._argtypes_, back._flags_) == (ctypes.py_object, (ctypes.c_int,), py._flags_)


# -- what cannot cross steps, and what cannot be loaded ---------------------------------------------------------------
def _generator() -> Any:
    yield 1


@pytest.mark.parametrize(
    ("value", "advice"),
    [
        (_generator(), "turn it into a list (list(...))"),
        (threading.Lock(), "create it in the step that uses it (steps run in separate processes)"),
        (open(os.devnull, "w"), "hand over the file's path and open it in the step that uses it"),  # noqa: SIM115
    ],
    ids=["generator", "lock", "file"],
)
def test_a_value_nothing_can_save_is_refused_with_advice_and_where_it_was_set(
    tmp_path: Path, value: object, advice: str
) -> None:
    with pytest.raises(step.StepFailed) as failed:
        step.save_value("v", value, str(tmp_path / "a"), {}, "from step 'a' (nb.ipynb, cell 3)")
    message = str(failed.value)
    assert message.startswith(f"cannot hand variable 'v' ({step._type_name(value)}) from step 'a' (nb.ipynb, cell 3)")
    assert f"): {advice}" in message
    assert not (tmp_path / "a" / "nb2kfp.json").exists()  # no artifact a later step would trust


def test_a_missing_value_says_why(tmp_path: Path) -> None:
    step._save_missing("v", str(tmp_path / "a"), "step 'a' stopped by sys.exit() before setting it")
    with pytest.raises(step.StepFailed, match=re.escape("variable 'v' has no value: step 'a' stopped by sys.exit()")):
        step.load_value("v", str(tmp_path / "a"))


@pytest.mark.parametrize("fmt", ["hdf5", "parquet", ["a"], 3])  # parquet: nothing writes it
def test_an_unknown_format_is_refused_by_name(tmp_path: Path, fmt: object) -> None:
    (tmp_path / "nb2kfp.json").write_text(json.dumps({"format": fmt, "variable": "v"}))
    with pytest.raises(step.StepFailed, match=r"cannot load 'v': unknown value format .* in its nb2kfp.json"):
        step.load_value("v", str(tmp_path))


def test_an_npy_file_holding_objects_is_not_unpickled(tmp_path: Path) -> None:
    step.save_value("v", np.arange(3), str(tmp_path), {})
    np.save(tmp_path / "data.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        step.load_value("v", str(tmp_path))


def test_a_text_file_open_for_reading_arrives_as_what_was_left_to_read(tmp_path: Path) -> None:
    """As the README says: cloudpickle saves a text file open for reading as its remaining content."""
    source = tmp_path / "lines.txt"
    source.write_text("first\nsecond\n")
    with open(source, encoding="utf-8") as fh:
        fh.readline()
        fmt, back = round_trip(fh, tmp_path / "a")
    assert fmt == "pickle" and isinstance(back, io.StringIO) and back.read() == "second\n"


@pytest.mark.parametrize("fmt", [f.name for f in step.FORMATS])
def test_with_an_artifact_key_exactly_the_formats_that_run_code_are_signed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    from sklearn.linear_model import LinearRegression

    monkeypatch.setenv(step.ARTIFACT_KEY_ENV, "k" * 64)
    value = {
        "feather": pd.DataFrame({"x": [1]}),
        "npy": np.arange(2),
        "joblib": LinearRegression(),
        "json": [1],
        "pickle": {1},
    }[fmt]
    meta = step.save_value("v", value, str(tmp_path / "a"), {})
    assert meta["format"] == fmt and ("hmac" in meta) == step._FORMATS[fmt].runs_code
    data = tmp_path / "a" / step._FORMATS[fmt].file
    if step._FORMATS[fmt].runs_code:  # rewritten by someone else: refused before it is loaded
        data.write_bytes(data.read_bytes() + b"\0")
        with pytest.raises(step.StepFailed, match="not written by this pipeline run"):
            step.load_value("v", str(tmp_path / "a"))


# -- every format: the value arrives with its type and attributes, and as writable as it left -----------------------
def _fitted_model() -> Any:
    from sklearn.linear_model import LinearRegression

    return LinearRegression().fit([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]], [1.0, 2.0, 3.0])


def _write_frame(df: Any) -> None:
    df.iloc[0, 2] = 90  # issue 29: "assignment destination is read-only" on a frame from an earlier step
    df.loc[0, "when"] = pd.Timestamp("2030-01-01", tz="UTC")
    df.loc[1, "flag"] = False
    df["a"] += 1
    assert df.iloc[0, 2] == 90 and df.loc[0, "a"] == 2


def _write_record_array(rec: Any) -> None:
    rec.a[0] = 9  # a field as an attribute, and a record as a numpy.record
    rec[1].b = 8.5
    assert rec[0].a == 9 and rec.b[1] == 8.5 and isinstance(rec[0], np.record)


def _write_masked(m: Any) -> None:
    m[1] = 5  # unmasks it, as in the kernel
    m.mask[2] = True
    assert list(np.ma.getmaskarray(m)) == [False, False, True]


def _matrix_checks(m: Any) -> None:
    m[0, 0] = 9
    assert (m * m).shape == (2, 2) and isinstance(m[0], np.matrix)  # matrix product, 2-d rows


def _fill(value: Any, key: Any, item: Any) -> None:
    value[key] = item


# (format, value, a write a notebook does to it, the attributes that must come back equal)
ROUND_TRIPS: list[tuple[str, Callable[[], Any], Callable[[Any], None], tuple[str, ...]]] = [
    (
        "feather",
        lambda: pd.DataFrame(
            {
                "a": [1, 2, 3],
                "b": [1.5, 2.5, 3.5],
                "c": np.array([4, 5, 6], dtype="int32"),
                "when": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]).tz_localize("UTC"),
                "flag": pd.array([True, None, False], dtype="boolean"),
            }
        ),
        _write_frame,
        ("dtypes",),
    ),
    ("feather", lambda: pd.DataFrame({"x": np.arange(200_000.0)}), lambda df: _fill(df, "x", 0.0), ()),  # chunks
    ("npy", lambda: np.arange(12.0).reshape(3, 4), lambda a: _fill(a, (0, 0), 7.0), ("dtype", "shape")),
    (
        "npy",
        lambda: np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"), ("b", "f8")]),
        lambda a: _fill(a, "a", 5),
        ("dtype", "shape"),
    ),
    ("joblib", _fitted_model, lambda m: _fill(m.coef_, 0, 5.0), ("n_features_in_",)),
    ("json", lambda: {"k": [1, 2]}, lambda d: d["k"].append(3), ()),
    ("pickle", lambda: pd.Series([1.0, 2.0], name="s"), lambda s: _fill(s.iloc, 0, 9.0), ("name", "dtype")),
    (
        "pickle",
        lambda: np.array([(1, 2.0), (3, 4.0)], dtype=[("a", "i4"), ("b", "f8")]).view(np.recarray),
        _write_record_array,
        ("dtype", "shape"),
    ),
    (
        "pickle",
        lambda: np.ma.masked_array([1, 2, 3], mask=[False, True, False], fill_value=7),
        _write_masked,
        ("dtype", "fill_value"),
    ),
    ("pickle", lambda: np.matrix([[1, 2], [3, 4]]), _matrix_checks, ("dtype", "shape")),
    ("pickle", lambda: {"frame": pd.DataFrame({"x": [1, 2]})}, lambda d: _fill(d["frame"].iloc, (0, 0), 5), ()),
]


def test_the_round_trips_cover_every_format() -> None:
    assert {fmt for fmt, *_ in ROUND_TRIPS} == {f.name for f in step.FORMATS}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("copy_on_write", [False, True], ids=["pandas-2", "copy-on-write"])
@pytest.mark.parametrize(
    ("fmt", "make", "write", "attributes"),
    ROUND_TRIPS,
    ids=[f"{fmt}-{i}" for i, (fmt, *_) in enumerate(ROUND_TRIPS)],
)
def test_a_value_arrives_with_its_type_and_as_writable_as_it_left(
    tmp_path: Path,
    copy_on_write: bool,
    fmt: str,
    make: Callable[[], Any],
    write: Callable[[Any], None],
    attributes: tuple[str, ...],
) -> None:
    """pandas 3 copies on write by default; pandas 2 can be asked to (the venv has one of them)."""
    with pd.option_context("mode.copy_on_write", copy_on_write):
        value = make()
        got, back = round_trip(value, tmp_path / "a")
        assert got == fmt and type(back) is type(value)
        for name in attributes:
            assert repr(getattr(back, name)) == repr(getattr(value, name)), name
        write(back)
        write(make())  # the same write works on a value the step made itself


def test_a_record_array_made_where_numpy_rec_was_never_imported_loads_elsewhere(tmp_path: Path) -> None:
    """Issue 29: ``data.view(np.recarray)`` in a step that imports only numpy, used in the next step."""
    save = (
        "import sys\nimport numpy as np\nfrom nb2kfp.runtime import step\n"
        "assert 'numpy.rec' not in sys.modules\n"
        "data = np.array([(1, 2.0), (3, 4.0)], dtype=[('a', 'i4'), ('b', 'f8')])\n"
        f"step.save_value('v', data.view(np.recarray), {str(tmp_path / 'a')!r}, {{}})\n"
    )
    proc = subprocess.run([sys.executable, "-c", save], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert load_elsewhere(tmp_path / "a", "(type(value).__name__, value[1].a, value.b[0], value[0])") == (
        "('recarray', np.int32(3), np.float64(2.0), np.record((1, 2.0), dtype=[('a', '<i4'), ('b', '<f8')]))"
    )
