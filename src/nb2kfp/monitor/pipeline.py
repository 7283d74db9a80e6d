"""The monitoring pipeline of a model image: a tagged notebook nb2kfp writes, then compiles like any other.

One step, ``drift``: it reads the reference sample from the model image (pinned by digest), the logged requests,
tests each feature (:mod:`nb2kfp.monitor.drift`), writes ``drift-report.html`` and ``drift.json`` to its working
directory and shows the report (the step's HTML page in the KFP UI). Its metrics (``pipeline-metrics``):
``drift_detected`` (1 or 0), ``drifted_features`` and, per feature, ``p_<feature>`` (the corrected p-value).
The parameters ``requests``, ``alpha`` and ``correction`` can be changed per run; ``model_image`` is the image
it was made for.
"""

from __future__ import annotations

import json
import keyword
import re
from pathlib import Path
from typing import Any

from nb2kfp.monitor import drift

STEP = "drift"


def metric_names(features: list[str]) -> dict[str, str]:
    """feature -> its metric's variable, ``p_<feature>`` as a Python name (unique, not a keyword)."""
    found: dict[str, str] = {}
    for feature in features:
        base = "p_" + (re.sub(r"\W+", "_", feature.lower()).strip("_") or "feature")
        name, n = base, 2
        while name in found.values() or keyword.iskeyword(name) or name in ("drift_detected", "drifted_features"):
            name, n = f"{base}_{n}", n + 1
        found[feature] = name
    return found


def _cell(tags: list[str], source: str) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": re.sub(r"[^a-z0-9]", "-", (tags or ["code"])[0].lower()),
        "metadata": {"tags": tags},
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }


def notebook(
    name: str,
    model_image: str,
    features: list[str],
    requests: str,
    alpha: float,
    correction: str,
    step_image: str | None = None,
    registry_secret: str | None = None,
) -> dict[str, Any]:
    """The monitoring notebook (nbformat 4) of ``model_image``, whose reference sample has ``features``."""
    if correction not in drift.CORRECTIONS:
        from nb2kfp.errors import UsageError

        raise UsageError(f"--correction {correction!r}: choose {' or '.join(drift.CORRECTIONS)}")
    metrics = metric_names(features)
    parameters = (
        f"model_image = {json.dumps(model_image)}\n"
        f"requests = {json.dumps(requests)}\n"
        f"alpha = {alpha!r}\n"
        f"correction = {json.dumps(correction)}\n"
    )
    code = "result = drift.run(model_image, requests, alpha, correction)\n"
    code += "drift_detected = int(result.drifted)\ndrifted_features = len(result.drifted_features)\n"
    code += "".join(f"{var} = result.adjusted[{json.dumps(feature)}]\n" for feature, var in metrics.items())
    code += "result"
    tags = [f"step:{STEP}", "cache:disabled", "report:enabled", *([f"image:{step_image}"] if step_image else [])]
    if registry_secret:  # a Kubernetes secret with keys username and password: the registry of the model image
        tags += [f"secret:{registry_secret}:username:NB2KFP_REGISTRY_USER"]
        tags += [f"secret:{registry_secret}:password:NB2KFP_REGISTRY_PASSWORD"]
    cells = [
        _cell(["imports"], "from nb2kfp.monitor import drift"),
        _cell(["pipeline-parameters"], parameters),
        _cell(tags, code),
        _cell(["pipeline-metrics"], "drift_detected\ndrifted_features\n" + "".join(f"{v}\n" for v in metrics.values())),
    ]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "kubeflow_notebook": {
                "pipeline_name": f"monitor-{name}",
                "pipeline_description": f"Feature drift of {name}'s served requests against its reference sample",
            },
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def write(folder: Path, content: dict[str, Any]) -> Path:
    from nb2kfp.atomic import write_text

    path = folder / "monitor.ipynb"
    write_text(path, json.dumps(content, indent=1, sort_keys=True) + "\n")
    return path
