"""The model card: what a model is, before anyone promotes it.

``card.json`` beside the weights in the model image, and ``card.html`` (the same, as a page) where ``model build`` /
``run --model-image`` write the manifests and where ``model deploy`` / ``promote`` write theirs. It says what trained
the model (notebook, commit, the run's parameters and metrics), its framework, its reference sample (schema, rows,
sha256) and the permutation importance of each feature on that sample. The card in the image names no run (a
value that changes every run would change the digest of the same weights); the page beside the manifests does.

Permutation importance (scikit-learn's ``permutation_importance``, 5 repeats, seed 0) needs labels, and the sample
has none: it scores the model against its own predictions on the sample (accuracy for a classifier, R² for a
regressor), so a feature's importance is how much the model's answers change when that feature is shuffled.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from nb2kfp.serving.meta import ModelMeta
from nb2kfp.serving.reference import Reference

FILE = "card.json"
PAGE = "card.html"
REPEATS = 5


def importance(model_file: Path, sample: Reference) -> list[dict[str, Any]]:
    """Each feature's permutation importance (mean and standard deviation of the score's drop), most important
    first; empty when the model cannot be scored here (not a scikit-learn estimator, other inputs)."""
    import joblib
    from sklearn.inspection import permutation_importance

    model = joblib.load(model_file)  # the model this run (or you, with model build) just made
    if not hasattr(model, "predict") or not hasattr(model, "score"):
        return []
    frame = sample.frame
    X = frame if hasattr(model, "feature_names_in_") else frame.to_numpy()
    try:
        found = permutation_importance(model, X, model.predict(X), n_repeats=REPEATS, random_state=0)
    except (ValueError, TypeError):
        return []
    rows = [
        {"feature": f.name, "mean": round(float(m), 6), "std": round(float(s), 6)}
        for f, m, s in zip(sample.features, found.importances_mean, found.importances_std, strict=True)
    ]
    return sorted(rows, key=lambda r: (-r["mean"], r["feature"]))


def make(meta: ModelMeta, source: Path, sample: Reference | None, details: dict[str, Any]) -> dict[str, Any]:
    """The card's content (``details``: the run's parameters and metrics, when a run made the model)."""
    card: dict[str, Any] = {
        "model": meta.name,
        "framework": f"{meta.framework} {meta.framework_version}".strip(),
        "file": meta.file,
        "inputs": meta.n_features or None,
        "notebook": meta.notebook or None,
        "commit": meta.commit or None,
        "parameters": details.get("parameters") or {},
        "metrics": details.get("metrics") or {},
    }
    if sample is not None:
        card["reference"] = sample.schema()
        model_file = source / meta.file if source.is_dir() else source
        scorable = meta.framework == "scikit-learn" and model_file.is_file()
        card["importance"] = importance(model_file, sample) if scorable else []
    return card


def file_bytes(card: dict[str, Any]) -> bytes:
    return (json.dumps(card, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def page(card: dict[str, Any], image: str = "", run: str = "") -> str:
    """The card as a self-contained HTML page."""

    def cell(value: object) -> str:
        return html.escape(str(value))

    facts = [("image", image), ("run", run)] + [
        (k, card.get(k)) for k in ("framework", "file", "inputs", "notebook", "commit")
    ]
    rows = "".join(f"<tr><th>{k}</th><td>{cell(v)}</td></tr>" for k, v in facts if v not in ("", None))
    pairs = [("parameters", card.get("parameters") or {}), ("metrics", card.get("metrics") or {})]
    tables = "".join(
        f"<h2>{title}</h2><table>"
        + "".join(f"<tr><th>{cell(k)}</th><td>{cell(v)}</td></tr>" for k, v in d.items())
        + "</table>"
        for title, d in pairs
        if d
    )
    reference = card.get("reference")
    if reference:
        kinds = {f["name"]: f for f in reference["features"]}
        scores = {r["feature"]: r for r in card.get("importance") or []}
        order = [r["feature"] for r in card.get("importance") or []] or list(kinds)
        top = max([abs(r["mean"]) for r in scores.values()] + [1e-12])
        lines = []
        for name in order:
            r = scores.get(name)
            bar = f'<span class="bar" style="width:{200 * max(r["mean"], 0) / top:.0f}px"></span>' if r else ""
            value = f"{r['mean']:.4f} ± {r['std']:.4f}" if r else "not computed"
            lines.append(
                f"<tr><td>{cell(name)}</td><td>{cell(kinds[name]['kind'])}</td><td>{cell(kinds[name]['dtype'])}</td>"
                f"<td>{value}</td><td>{bar}</td></tr>"
            )
        tables += (
            f"<h2>Reference sample</h2><p>{reference['sample_rows']} of {reference['rows']} rows (seed "
            f"{reference['seed']}), <code>{cell(reference['file'])}</code> sha256 <code>{cell(reference['sha256'])}"
            "</code></p><h2>Features</h2><table><tr><th>feature</th><th>kind</th><th>dtype</th>"
            "<th>permutation importance</th><th></th></tr>" + "".join(lines) + "</table>"
        )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Model card: '
        f"{cell(card['model'])}</title><style>body{{font-family:sans-serif;margin:2em}}th,td{{padding:3px 10px;"
        "text-align:left}.bar{display:inline-block;height:10px;background:#4c78a8}</style></head><body>"
        f"<h1>Model card: {cell(card['model'])}</h1><table>{rows}</table>{tables}</body></html>\n"
    )
