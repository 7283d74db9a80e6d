"""The spec writer: whatever the data, YAML reads back exactly what was written, and the bytes are stable."""

from __future__ import annotations

import os
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nb2kfp.backends import yaml_text

TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "",
            "yes",
            "No",
            "null",
            "~",
            "1.0",
            "0x1A",
            "2026-11-24",
            "12:30",
            "-c",
            "{{$}}",
            "a: b",
            "# not a comment",
            "  leading",
            "trailing  ",
            "\ttab",
            "x\n",
            "\n\nx",
            "x\n\n\n",
            " \n x",
            "line1\nline2",
            "€\u2028\x85\ufeff",
            "'quote\"",
            "---",
            "...",
            "- item",
            "&anchor",
            "*alias",
            "!tag",
            "%directive",
            "@at",
            "`tick",
            "|",
            ">",
            "key:",
            "?",
        ]
    ),
    st.lists(
        st.sampled_from(["def f():", "    return 1", "", "  # c", "x = '{{$}}'", "\tindented", "é"]),
        min_size=1,
        max_size=6,
    ).map("\n".join),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=True), TEXT
)
DOCS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=5000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 400, deadline=None)
@given(st.dictionaries(TEXT, DOCS, max_size=5))
def test_round_trip(doc: dict[str, Any]) -> None:
    text = yaml_text.dump(doc)
    assert yaml.safe_load(text) == (doc or None)
    assert yaml_text.dump(doc) == text


def test_strings_stay_strings_for_yaml_1_1_and_1_2() -> None:
    for text in ["1e3", "0o17", "1.0", "12:30", "2026-11-24", "yes", "y", "null", "~", ".5", "+1", "0x1F"]:
        assert yaml_text._scalar(text).startswith('"'), text
    for text in ["2.1.0", "exec-train", "python:3.11-slim", "registry:5000/ml/x@sha256:ab", "system.Artifact"]:
        assert yaml_text._scalar(text) == text


def test_layout_is_kfp_like() -> None:
    doc = {"b": {"args": ["--executor-input", "{{$}}"], "code": "x = 1\nprint(x)\n"}, "a": [{"k": "v", "j": 1.0}]}
    assert yaml_text.dump(doc) == (
        'a:\n- j: 1.0\n  k: v\nb:\n  args:\n  - --executor-input\n  - "{{$}}"\n  code: |\n    x = 1\n    print(x)\n'
    ).replace("- --executor-input", '- "--executor-input"')
