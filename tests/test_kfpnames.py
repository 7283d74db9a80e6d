"""KFP names and types (nb2kfp.kfpnames): the sanitizer, clashes, and the type tables the runtime copies."""

from __future__ import annotations

import typing

import pytest

from nb2kfp import kfpnames
from nb2kfp.ir import ParamType
from nb2kfp.runtime import step as runtime


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("train", "train"),
        ("load_data", "load-data"),
        ("Load__Data", "load-data"),
        ("_private_", "private"),
        ("a-_-b", "a-b"),
        ("sub__inner__x", "sub-inner-x"),
        ("_", "step"),
        ("__-__", "step"),
        ("schritt_ä", "schritt"),
    ],
)
def test_task_names_are_lowercase_letters_digits_and_single_dashes(name: str, task: str) -> None:
    assert kfpnames.task_name(name) == task


def test_pipeline_names_have_their_own_fallback_and_a_length_limit() -> None:
    assert kfpnames.pipeline_name("My Notebook (v2)") == "my-notebook-v2"
    assert kfpnames.pipeline_name("___") == "pipeline"
    assert kfpnames.pipeline_name("x" * 300) == "x" * kfpnames.MAX_PIPELINE_NAME


def test_clashes_name_the_first_step_and_each_later_one() -> None:
    assert kfpnames.clashes(["load_data", "train", "load-data", "Load_Data"]) == [
        ("load_data", "load-data", "load-data"),
        ("load_data", "Load_Data", "load-data"),
    ]
    assert kfpnames.clashes(["_", "step"]) == [("_", "step", "step")]
    assert kfpnames.clashes(["a", "b"]) == []


def test_every_ir_parameter_type_has_one_kfp_type_and_back() -> None:
    assert set(kfpnames.PARAMETER_TYPES) == set(typing.get_args(ParamType))
    assert {kfpnames.IR_TYPES[k]: k for k in kfpnames.IR_TYPES} == kfpnames.PARAMETER_TYPES
    assert set(kfpnames.PYTHON_TYPES) == set(kfpnames.IR_TYPES)


@pytest.mark.parametrize(
    ("value", "param_type", "ok"),
    [
        (1, "int", True),
        (1, "float", True),
        (1.5, "int", False),
        (True, "int", False),
        (True, "bool", True),
        ("x", "str", True),
        ([1], "list", True),
        ({"a": 1}, "dict", True),
        ({"a": 1}, "list", False),
    ],
)
def test_fits(value: object, param_type: str, ok: bool) -> None:
    assert kfpnames.fits(value, param_type) is ok


def test_an_int_parameter_feeds_a_float_input_but_not_the_other_way() -> None:
    assert kfpnames.accepts("float", "int")
    assert not kfpnames.accepts("int", "float")
    assert not kfpnames.accepts("str", "int")


def test_the_step_runtime_copies_agree() -> None:
    # the runtime is embedded in every spec and runs without nb2kfp: it keeps copies of these tables
    assert runtime._KFP_TYPES == kfpnames.PYTHON_TYPES
    assert set(runtime._CASTS) == set(kfpnames.PARAMETER_TYPES)
    for ir_type, kfp_type in kfpnames.PARAMETER_TYPES.items():
        assert runtime._CASTS[ir_type] is kfpnames.PYTHON_TYPES[kfp_type][-1]
