"""The Argo Workflow size estimator (nb2kfp.backends.argo_size) against what KFP's backend does with a spec.

No cluster runs here: the model's copies cite KFP's and Argo's sources (docs/kfp-backend.md). These tests hold the
estimator to its own claims: it is fast, grows with the steps, its gzip figure is what gzip makes of the texts it
models, and it tells today's problem (a long parameter every step receives) from the artifact-delivered runtime.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLES
from nb2kfp.backends import argo_size, kfp_spec
from nb2kfp.frontend.builder import build
from nbfactory import write

VERSIONS = argo_size.KFP_VERSIONS
RUNTIME = "runtime"  # the long parameter's name in the synthetic specs
ARTIFACT = {"artifactType": {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}}


def chain_notebook(tmp_path: Path, steps: int) -> Path:
    cells = [(["step:s0"], "x0 = 1")] + [
        ([f"step:s{i}", f"prev:s{i - 1}"], f"x{i} = x{i - 1} + 1") for i in range(1, steps)
    ]
    return write(tmp_path / f"chain{steps}.ipynb", cells)


def compiled(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    return kfp_spec.build_documents(build(path).pipeline)


def source_text(size: int) -> str:
    """Python-like text of ``size`` characters that compresses like real source (not a repeated line)."""
    rng = random.Random(size)
    words = ["def", "return", "self", "value", "for", "in", "if", "else", "json", "path", "name", "step", "None"]
    lines = []
    total = 0
    while total < size:
        line = " " * rng.choice((0, 4, 8)) + " ".join(rng.choice(words) for _ in range(rng.randint(2, 9)))
        line += f"({rng.randint(0, 999)!r}, {'abcdefgh'[rng.randint(0, 7)]!r})"
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)[:size]


def synthetic(steps: int, runtime: str, delivery: str) -> dict[str, Any]:
    """A chain of ``steps`` container steps, each with its own ~1 KB step spec. ``delivery``: "parameter" (the
    runtime is a pipeline input default every step receives: today's spec) or "artifact" (a first task outputs
    it as an artifact every step takes as an input) or "none"."""
    components: dict[str, Any] = {}
    executors: dict[str, Any] = {}
    tasks: dict[str, Any] = {}
    root: dict[str, Any] = {"dag": {"tasks": tasks}}
    if delivery == "parameter":
        root["inputDefinitions"] = {
            "parameters": {RUNTIME: {"defaultValue": runtime, "isOptional": True, "parameterType": "STRING"}}
        }
    if delivery == "artifact":
        components["comp-runtime"] = {
            "executorLabel": "exec-runtime",
            "outputDefinitions": {"artifacts": {RUNTIME: ARTIFACT}},
        }
        executors["exec-runtime"] = {"container": {"image": "python:3.11-slim", "command": ["sh", "-c", "true"]}}
        tasks["runtime"] = {"componentRef": {"name": "comp-runtime"}, "taskInfo": {"name": "runtime"}}
    for i in range(steps):
        name = f"step-{i}"
        comp: dict[str, Any] = {"executorLabel": f"exec-{name}", "outputDefinitions": {"artifacts": {"out": ARTIFACT}}}
        task: dict[str, Any] = {
            "cachingOptions": {"enableCache": True},
            "componentRef": {"name": f"comp-{name}"},
            "taskInfo": {"name": name},
        }
        inputs: dict[str, Any] = {}
        defs: dict[str, Any] = {}
        deps = []
        if i:
            deps.append(f"step-{i - 1}")
            defs.setdefault("artifacts", {})["in"] = ARTIFACT
            producer = {"outputArtifactKey": "out", "producerTask": f"step-{i - 1}"}
            inputs.setdefault("artifacts", {})["in"] = {"taskOutputArtifact": producer}
        if delivery == "parameter":
            defs.setdefault("parameters", {})[RUNTIME] = {"parameterType": "STRING"}
            inputs.setdefault("parameters", {})[RUNTIME] = {"componentInputParameter": RUNTIME}
        if delivery == "artifact":
            deps.append("runtime")
            defs.setdefault("artifacts", {})[RUNTIME] = ARTIFACT
            producer = {"outputArtifactKey": RUNTIME, "producerTask": "runtime"}
            inputs.setdefault("artifacts", {})[RUNTIME] = {"taskOutputArtifact": producer}
        if defs:
            comp["inputDefinitions"] = defs
        if inputs:
            task["inputs"] = inputs
        if deps:
            task["dependentTasks"] = sorted(deps)
        components[f"comp-{name}"] = comp
        step_spec = json.dumps({"step": name, "cells": [[1, source_text(900 + 7 * i)]]}, indent=1)
        executors[f"exec-{name}"] = {
            "container": {
                "image": "python:3.11-slim",
                "command": ["python3", "-c", "import json, sys; exec(...)"],
                "args": ["--executor-input", "{{$}}", "--spec", step_spec],
            }
        }
        tasks[name] = task
    return {
        "components": components,
        "deploymentSpec": {"executors": executors},
        "pipelineInfo": {"name": "chain"},
        "root": root,
        "schemaVersion": "2.1.0",
        "sdkVersion": "test",
    }


def expanded_nodes(spec: dict[str, Any], platform: dict[str, Any] | None, version: str) -> bytes:
    """status.nodes as the model writes it, every long value in place, nodes in random ID order as Argo's
    sorted map of hashed IDs has them: the text the estimator's gzip figure stands for."""
    model = argo_size._Model(spec, platform, version)
    model.status_nodes()

    def expand(text: str) -> str:
        def piece(m: Any) -> str:
            value = model.pieces.values[int(m.group(1))]
            for _ in range(int(math.log2(len(m.group(2)) + 1))):
                value = argo_size._go(value)[1:-1]
            return value

        return argo_size._MARK.sub(piece, text)

    nodes = []
    for skeleton, payload in model.layout:
        text = model.skeletons[skeleton]
        if payload >= 0:
            text = text[:-1] + "," + expand("".join(model.payloads[payload][1])) + "}"
        nodes.append(text)
    random.Random(0).shuffle(nodes)
    return ("{" + ",".join(f'"{model.wf}-{i:010d}":{n}' for i, n in enumerate(nodes)) + "}").encode()


@pytest.mark.parametrize("version", VERSIONS)
def test_the_gzip_figure_is_what_gzip_makes_of_the_modelled_nodes(version: str) -> None:
    """The estimator compresses each distinct text once and counts its copies (they sit far apart in a map of
    hashed IDs), and past a budget extrapolates from a sample; gzip of the whole expanded status.nodes, shuffled,
    stays within 12% of that figure."""
    specs = [
        synthetic(12, source_text(50_000), "parameter"),
        synthetic(12, "", "artifact"),
        synthetic(80, "", "artifact"),
    ]
    for spec in specs:
        found = argo_size.estimate(spec, None, version)
        text = expanded_nodes(spec, None, version)
        assert abs(len(text) + len('"nodes":') - found.parts["status.nodes"]) <= 2 * found.nodes
        real = 4 * math.ceil(len(gzip.compress(text, 6)) / 3)
        assert abs(found.nodes_compressed - real) <= 0.12 * real, (found.nodes_compressed, real)


@pytest.mark.parametrize("version", VERSIONS)
def test_size_grows_with_the_steps(version: str) -> None:
    for delivery in ("parameter", "artifact", "none"):
        sizes = [argo_size.estimate(synthetic(n, source_text(50_000), delivery), None, version) for n in (1, 5, 20, 60)]
        assert all(a.raw_total < b.raw_total for a, b in itertools.pairwise(sizes))
        assert all(a.nodes < b.nodes for a, b in itertools.pairwise(sizes))
        assert all(a.nodes_compressed < b.nodes_compressed for a, b in itertools.pairwise(sizes))


@pytest.mark.parametrize("version", VERSIONS)
def test_a_50_kb_parameter_every_step_receives_is_over_the_limit_and_an_artifact_is_far_under(version: str) -> None:
    """Today's problem: the driver copies every parameter value into each task's pod-spec-patch, which Argo keeps
    in three nodes per task (six on 2.17, whose default install wraps every template in a retry node). With 40
    steps that is over 1 MiB even gzipped; the same runtime delivered as an artifact stays far under."""
    runtime = source_text(50_000)
    steps = 40
    today = argo_size.estimate(synthetic(steps, runtime, "parameter"), None, version)
    by_artifact = argo_size.estimate(synthetic(steps, runtime, "artifact"), None, version)
    assert not argo_size.fits(today) and today.compressed
    assert argo_size.fits(by_artifact) and by_artifact.nodes_compressed < argo_size.LIMIT / 8
    assert not argo_size.retryable(today) and argo_size.retryable(
        argo_size.estimate(synthetic(10, runtime, "artifact"), None, version)
    )
    per_task = 6 if version == "2.17" else 3
    spec_copies = 2  # components-root's default and the root driver's runtime-config
    root_driver = 2 * (2 if version == "2.17" else 1)
    assert today.copies == {RUNTIME: steps * per_task + spec_copies + root_driver}
    assert by_artifact.copies == {}


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.ipynb")))
def test_examples_are_estimated_on_every_version(name: str) -> None:
    spec, platform = compiled(EXAMPLES / name)
    found = {v: argo_size.estimate(spec, platform, v) for v in VERSIONS}
    for estimate in found.values():
        assert estimate.nodes >= 3 * len(spec["root"]["dag"]["tasks"])
        assert estimate.parts["spec.arguments"] > sum(len(json.dumps(c)) for c in spec["components"].values())
    assert found["2.17"].nodes == 2 * found["2.16"].nodes  # every template execution wrapped in a retry node
    assert found["2.14"].raw_total <= found["2.17"].raw_total


def test_an_unknown_kfp_version_is_refused() -> None:
    with pytest.raises(ValueError, match=r"2\.14, 2\.15, 2\.16, 2\.17"):
        argo_size.estimate(synthetic(1, "", "none"), None, "2.13")
