"""Property tests: random notebooks never crash lint/compile; every compiled spec loads with the KFP SDK.

`make fuzz` runs the same properties with many more examples (HYPOTHESIS_PROFILE=fuzz).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nb2kfp.backends import kfp_spec
from nb2kfp.errors import NotebookError
from nb2kfp.frontend.builder import build

settings.register_profile("ci", max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

NAMES = st.sampled_from(["a", "b", "c", "load", "train", "x_1", "Step", "é", "a-b"])
TAGS = st.one_of(
    st.sampled_from(
        [
            "imports",
            "functions",
            "pipeline-parameters",
            "parameters",
            "pipeline-metrics",
            "skip",
            "injected-parameters",
            "cache:enabled",
            "cache:disabled",
            "limit:cpu:2",
            "limit:memory:1Gi",
            "limit:nvidia.com/gpu:1",
            "label:team:ml",
            "annotation:a/b:c",
            "secret:s:k:ENV",
            "image:img:1",
            "hide-input",
            "report:enabled",
            "notebook:other.ipynb",
            "step:",
            "prev:",
            "limit:x:y",
        ]
    ),
    NAMES.map(lambda n: f"step:{n}"),
    NAMES.map(lambda n: f"prev:{n}"),
    st.text(max_size=12),
)
SNIPPETS = st.sampled_from(
    [
        "x = 1",
        "y = x + 1",
        "print(x, y)",
        "import math",
        "from os import *",
        "lst = []",
        "lst.append(x)",
        "del x",
        "def f():\n    return y",
        "class K:\n    v = 1",
        "acc = 0.5",
        "print(acc)",
        "n = 3\nname = 'q'",
        "x = (",
        "%matplotlib inline",
        "!pip install foo",
        "%%time\nz = 2",
        "%%unknown\nzz",
        "df['a'] = 1",
        "for i in range(3):\n    total += i",
        "lambda: undefined_name",
        "[w for w in words]",
        "if c:\n    x = 2",
        "global g",
        "async def h():\n    await q",
        "match p:\n    case [a, b]: pass",
        "yield 1",
        "return 5",
        "x: int = 'é' * 3",
        "\t\tbad_indent = 1",
        "print(" + "(" * 120 + ")" * 120,
        "s = '{{$}}'",
        "a = " + "+".join(["1"] * 300),
        "x = 1; y = 2; z = x + y",
        "try:\n    import foo\nexcept ImportError:\n    foo = None",
    ]
)
SOURCES = st.one_of(SNIPPETS, st.lists(SNIPPETS, max_size=4).map("\n".join), st.text(max_size=80))


@st.composite
def notebooks(draw: st.DrawFn) -> dict[str, Any]:
    cells = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.sampled_from(["code", "code", "code", "markdown", "raw"]))
        cell: dict[str, Any] = {
            "cell_type": kind,
            "metadata": {"tags": draw(st.lists(TAGS, max_size=3))},
            "source": draw(SOURCES),
        }
        if draw(st.booleans()):
            cell["source"] = cell["source"].splitlines(keepends=True)
        if kind == "code":
            cell.update(outputs=[], execution_count=None)
        cells.append(cell)
    meta: dict[str, Any] = {}
    if draw(st.booleans()):
        meta["kubeflow_notebook"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "pipeline_name": st.text(max_size=20),
                    "steps_defaults": st.lists(TAGS, max_size=3),
                    "enable_caching": st.booleans(),
                    "base_image": st.text(max_size=10),
                },
            )
        )
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def _check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.ipynb"
        path.write_bytes(data)
        try:
            result = build(path)
        except NotebookError as exc:
            assert exc.errors, "NotebookError without an error diagnostic"
            for d in exc.diagnostics:
                assert d.path == str(path) and d.message and d.code.startswith("NB")
            return
        text = kfp_spec.render(result.pipeline)
        out = Path(folder) / "fuzz.pipeline.yaml"
        out.write_text(text)
        from kfp import components

        components.load_component_from_file(str(out))


@given(notebooks())
def test_random_notebooks_give_diagnostics_or_loadable_specs(nb: dict[str, Any]) -> None:
    _check(json.dumps(nb).encode())


@given(notebooks(), st.integers(0, 400), st.binary(max_size=8))
def test_corrupted_files_give_diagnostics(nb: dict[str, Any], cut: int, junk: bytes) -> None:
    data = json.dumps(nb).encode()
    _check(data[: cut % (len(data) + 1)] + junk)


@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
        max_leaves=12,
    )
)
def test_any_json_document_gives_diagnostics(doc: object) -> None:
    _check(json.dumps(doc).encode())


LITERALS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.booleans(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(0, 9), max_size=2),
)


@st.composite
def valid_notebooks(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A random DAG of steps that only read what their ancestors, parameters or imports define."""
    cells: list[tuple[list[str], str]] = [(["imports"], "import math")]
    params = draw(st.dictionaries(st.from_regex(r"p_[a-z]{1,6}", fullmatch=True), LITERALS, max_size=4))
    if params:
        cells.append((["pipeline-parameters"], "\n".join(f"{k} = {v!r}" for k, v in params.items())))
    n = draw(st.integers(1, 7))
    ancestors: list[set[int]] = []
    defined: list[list[str]] = []
    numeric: set[str] = set()  # KFP metrics are numbers: only these may be metrics
    for i in range(n):
        prev = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        anc = set(prev).union(*(ancestors[p] for p in prev)) if prev else set()
        visible = [v for a in sorted(anc) for v in defined[a]] + list(params)
        lines = []
        names = [f"v{i}_{j}" for j in range(draw(st.integers(1, 3)))]
        for name in names:
            reads = draw(st.lists(st.sampled_from(visible), max_size=3)) if visible else []
            literal = draw(LITERALS)
            expr = " + ".join(f"len(repr({r}))" for r in reads) or repr(literal)
            if reads or (isinstance(literal, int | float) and not isinstance(literal, bool)):
                numeric.add(name)
            lines.append(f"{name} = {expr}")
        if draw(st.booleans()):
            lines.append(f"%time {names[0]}_t = math.sqrt(4)")
            names.append(f"{names[0]}_t")
        tags = [
            f"step:s{i}",
            *(f"prev:s{p}" for p in prev),
            *draw(st.lists(st.sampled_from(["cache:disabled", "limit:cpu:1", "label:k:v", "image:img:1"]), max_size=2)),
        ]
        cells.append((tags, "\n".join(lines)))
        if draw(st.booleans()):
            cells.append(([], f"print({names[-1]})"))
        ancestors.append(anc)
        defined.append(names)
    metrics = [names[0] for names in defined if names[0] in numeric][:3]
    if metrics:
        cells.append((["pipeline-metrics"], "\n".join(f"print({m})" for m in metrics)))
    from nbfactory import notebook

    return notebook(cells), n


@given(valid_notebooks())
def test_valid_notebooks_always_compile_to_loadable_specs(case: tuple[dict[str, Any], int]) -> None:
    nb, n_steps = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "valid.ipynb"
        path.write_text(json.dumps(nb))
        result = build(path)
        assert len(result.pipeline.steps) == n_steps
        assert not result.diagnostics, [d.format() for d in result.diagnostics]
        out = Path(folder) / "valid.pipeline.yaml"
        out.write_text(kfp_spec.render(result.pipeline))
        from kfp import components

        components.load_component_from_file(str(out))
