"""Feature drift of served requests against a model's reference sample. Runs inside the monitoring step.

Imports nothing from nb2kfp (the monitoring image holds this file alone, beside numpy, pandas, pyarrow, scipy and
requests): it reads the reference sample from the model image in its registry, the logged requests from JSON lines,
and tests each feature as alibi-detect's TabularDrift does, with scipy.stats directly: two-sample
Kolmogorov-Smirnov for numeric features, chi-squared on the category counts for categorical ones, then a
multiple-testing correction (Bonferroni, or Benjamini-Hochberg's false discovery rate) over the features.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA, SCHEMA = "reference.parquet", "reference.json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CORRECTIONS = ("bonferroni", "bh")


class DriftError(Exception):
    """Bad input to the drift check: one line for the step's log."""


@dataclass
class Result:
    model_image: str
    alpha: float
    correction: str
    reference_rows: int
    current_rows: int
    kinds: dict[str, str]  # feature -> numeric | categorical
    statistics: dict[str, float]  # KS D, or chi-squared
    p_values: dict[str, float]  # as tested
    adjusted: dict[str, float]  # after the correction
    drifted_features: list[str] = field(default_factory=list)
    frames: tuple[Any, Any] | None = field(default=None, repr=False, compare=False)  # (reference, requests)

    def _repr_html_(self) -> str:  # what the step shows: its report page in the KFP UI
        return report_html(self)

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_image": self.model_image,
            "alpha": self.alpha,
            "correction": self.correction,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted": self.drifted,
            "drifted_features": self.drifted_features,
            "features": {
                name: {
                    "kind": self.kinds[name],
                    "statistic": self.statistics[name],
                    "p_value": self.p_values[name],
                    "adjusted_p_value": self.adjusted[name],
                    "drifted": name in self.drifted_features,
                }
                for name in self.kinds
            },
        }


# --- the reference sample, from the model image in its registry --------------------------------------------------


def _credentials() -> tuple[str, str] | None:
    user = os.environ.get("NB2KFP_REGISTRY_USER") or os.environ.get("CI_REGISTRY_USER")
    password = os.environ.get("NB2KFP_REGISTRY_PASSWORD") or os.environ.get("CI_REGISTRY_PASSWORD")
    path = os.environ.get("NB2KFP_REGISTRY_PASSWORD_FILE")
    if not password and path:
        password = Path(path).read_text(encoding="utf-8").strip()
    return (user, password) if user and password else None


def _split(image: str) -> tuple[str, str, str]:
    """(host, repository path, digest or tag) of REGISTRY/PATH@sha256:... or REGISTRY/PATH:TAG."""
    name, _, digest = image.removeprefix("oci://").partition("@")
    host, _, path = name.partition("/")
    if not digest:
        path, _, digest = path.rpartition(":") if ":" in path else (path, "", "latest")
    if not host or not path:
        raise DriftError(f"model image {image!r}: give REGISTRY/REPOSITORY@sha256:...")
    return host, path, digest


def _get(session: Any, url: str, auth: tuple[str, str] | None, **headers: str) -> Any:
    """GET with the registry's auth: Basic, or a Bearer token from the realm its 401 names."""
    answer = session.get(url, headers=headers, auth=auth, timeout=60)
    challenge = answer.headers.get("WWW-Authenticate", "")
    if answer.status_code == 401 and challenge.lower().startswith("bearer "):
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        token = session.get(realm, params=params, auth=auth, timeout=60).json()
        bearer = token.get("token") or token.get("access_token", "")
        answer = session.get(url, headers={**headers, "Authorization": f"Bearer {bearer}"}, timeout=60)
    if answer.status_code in (401, 403):
        raise DriftError(f"registry refused access to {url.split('/v2/')[0]} (set NB2KFP_REGISTRY_USER/_PASSWORD)")
    if answer.status_code != 200:
        raise DriftError(f"registry answered {answer.status_code} for {url}")
    return answer


def fetch_reference(image: str) -> tuple[Any, dict[str, Any]]:
    """The reference sample (a DataFrame) and its schema from the model image's /models."""
    import pyarrow.parquet as pq
    import requests

    host, path, reference = _split(image)
    loopback = host.split(":")[0] in ("127.0.0.1", "localhost", "::1")
    base = f"{'http' if loopback else 'https'}://{host}/v2/{path}"
    auth = _credentials()
    with requests.Session() as session:
        manifest = _get(session, f"{base}/manifests/{reference}", auth, Accept=MANIFEST)
        if reference.startswith("sha256:") and hashlib.sha256(manifest.content).hexdigest() != reference[7:]:
            raise DriftError(f"{image}: the registry answered another manifest than its digest")
        layer = json.loads(manifest.content)["layers"][-1]["digest"]
        blob = _get(session, f"{base}/blobs/{layer}", auth).content
    if "sha256:" + hashlib.sha256(blob).hexdigest() != layer:
        raise DriftError(f"{image}: the registry answered the model layer with other bytes than its digest")
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if member.isreg() and name in (f"models/{DATA}", f"models/{SCHEMA}"):
                handle = tar.extractfile(member)
                found[name.removeprefix("models/")] = handle.read() if handle else b""
    if set(found) != {DATA, SCHEMA}:
        raise DriftError(f"{image}: the model image holds no reference sample (rebuild it with nb2kfp >= this one)")
    return pq.read_table(io.BytesIO(found[DATA])).to_pandas(), json.loads(found[SCHEMA])


# --- the logged requests -------------------------------------------------------------------------------------------


def _files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():  # hidden files and folders are not logs (a .nb2kfp/ of a run started in the folder)
        found = (p for p in path.rglob("*") if not any(x.startswith(".") for x in p.relative_to(path).parts))
        return sorted(p for p in found if p.is_file() and p.suffix in (".jsonl", ".json", ".ndjson"))
    if path.is_file():
        return [path]
    raise DriftError(f"requests {source}: no such file or folder")


def _rows(request: dict[str, Any], names: list[str]) -> dict[str, list[Any]]:
    """Columns of one V2 inference request: one tensor of shape [n, k] (k = the features, in order), or one
    input per feature, named as the feature."""
    import numpy as np

    inputs = request.get("inputs") or []
    by_name = {str(i.get("name")): i for i in inputs if isinstance(i, dict)}
    if set(names) <= set(by_name):
        return {n: list(np.asarray(by_name[n]["data"]).reshape(-1)) for n in names}
    if len(inputs) == 1:
        tensor = inputs[0]
        data = np.asarray(tensor["data"], dtype=object if tensor.get("datatype") == "BYTES" else float)
        data = data.reshape(-1, len(names))
        return {n: list(data[:, i]) for i, n in enumerate(names)}
    raise DriftError(f"a request has inputs {sorted(by_name)}, not one tensor nor one input per feature {names}")


def read_requests(source: str, names: list[str]) -> Any:
    """The features of every logged request (JSON lines: {"request": V2 request, ...} or bare V2 requests)."""
    import pandas as pd

    columns: dict[str, list[Any]] = {n: [] for n in names}
    for path in _files(source):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                request = entry.get("request", entry) if isinstance(entry, dict) else {}
                if isinstance(entry, dict) and entry.get("status", 200) != 200:
                    continue  # a request the server refused carries no data the model saw
                for name, values in _rows(request, names).items():
                    columns[name].extend(values)
            except (ValueError, KeyError, TypeError, DriftError) as exc:
                raise DriftError(f"{path}, line {number}: not a logged V2 inference request ({exc})") from None
    frame = pd.DataFrame(columns)
    if frame.empty:
        raise DriftError(f"requests {source}: no logged inference requests")
    return frame


# --- the tests ---------------------------------------------------------------------------------------------------


def _adjust(p_values: list[float], correction: str) -> list[float]:
    m = len(p_values)
    if correction == "bonferroni":
        return [min(1.0, p * m) for p in p_values]
    order = sorted(range(m), key=lambda i: p_values[i])  # Benjamini-Hochberg, step-up
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


def test(reference: Any, current: Any, schema: dict[str, Any], alpha: float, correction: str, image: str) -> Result:
    import numpy as np
    from scipy import stats

    if correction not in CORRECTIONS:
        raise DriftError(f"correction {correction!r}: choose {' or '.join(CORRECTIONS)}")
    if not 0 < alpha < 1:
        raise DriftError(f"alpha {alpha}: give a level between 0 and 1, e.g. 0.05")
    kinds = {str(f["name"]): str(f["kind"]) for f in schema["features"]}
    statistics, p_values = {}, {}
    for name, kind in kinds.items():
        ref, cur = reference[name], current[name]
        if kind == "numeric":
            found = stats.ks_2samp(ref.astype(float).to_numpy(), cur.astype(float).to_numpy())
            statistics[name], p_values[name] = float(found.statistic), float(found.pvalue)
            continue
        ref, cur = ref.astype(str), cur.astype(str)
        categories = sorted(set(ref) | set(cur))
        table = np.array([[int((ref == c).sum()) for c in categories], [int((cur == c).sum()) for c in categories]])
        if len(categories) < 2:
            statistics[name], p_values[name] = 0.0, 1.0
            continue
        chi2, p, _, _ = stats.chi2_contingency(table)
        statistics[name], p_values[name] = float(chi2), float(p)
    names = list(kinds)
    adjusted = dict(zip(names, _adjust([p_values[n] for n in names], correction), strict=True))
    drifted = [n for n in names if adjusted[n] < alpha]
    counts = (len(reference), len(current))
    frames = (reference, current)
    return Result(image, alpha, correction, *counts, kinds, statistics, p_values, adjusted, drifted, frames)


def run(
    model_image: str, requests: str, alpha: float = 0.05, correction: str = "bonferroni", folder: str = "."
) -> Result:
    """Test the requests logged at ``requests`` against ``model_image``'s reference sample; write the report
    (``drift-report.html``) and the figures (``drift.json``) to ``folder``."""
    reference, schema = fetch_reference(model_image)
    names = [str(f["name"]) for f in schema["features"]]
    result = test(reference, read_requests(requests, names), schema, alpha, correction, model_image)
    Path(folder, "drift-report.html").write_text(report_html(result), encoding="utf-8")
    Path(folder, "drift.json").write_text(json.dumps(result.as_dict(), indent=2, sort_keys=True) + "\n")
    verdict = f"drift in {', '.join(result.drifted_features)}" if result.drifted else "no drift"
    print(f"{verdict} ({result.current_rows} requests, {len(names)} features, {correction}, level {alpha})")
    return result


# --- the report --------------------------------------------------------------------------------------------------


def _histogram(ref: Any, cur: Any, kind: str) -> str:
    """A small inline SVG: the reference's and the requests' distributions, side by side per bin."""
    import numpy as np

    if kind == "numeric":
        values = np.concatenate([ref.astype(float).to_numpy(), cur.astype(float).to_numpy()])
        edges = np.histogram_bin_edges(values, bins=20)
        a = np.histogram(ref.astype(float), edges)[0] / max(len(ref), 1)
        b = np.histogram(cur.astype(float), edges)[0] / max(len(cur), 1)
    else:
        categories = sorted(set(ref.astype(str)) | set(cur.astype(str)))[:20]
        a = np.array([(ref.astype(str) == c).mean() for c in categories])
        b = np.array([(cur.astype(str) == c).mean() for c in categories])
    top = max(float(a.max(initial=0)), float(b.max(initial=0)), 1e-9)
    width = 12
    bars = []
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        for j, (share, colour) in enumerate(((x, "#4c78a8"), (y, "#f58518"))):
            h = 60 * float(share) / top
            bars.append(f'<rect x="{i * width * 2 + j * width}" y="{60 - h:.1f}" width="{width - 1}" '
                        f'height="{h:.1f}" fill="{colour}"/>')  # fmt: skip
    return f'<svg width="{len(a) * width * 2}" height="60" role="img">{"".join(bars)}</svg>'


def report_html(result: Result) -> str:
    """A self-contained HTML page: the verdict, and per feature its test, p-values and distributions."""
    reference, current = result.frames or ({}, {})
    verdict = (
        f"drift in {len(result.drifted_features)} of {len(result.kinds)} features: "
        + ", ".join(html.escape(n) for n in result.drifted_features)
        if result.drifted
        else f"no drift in {len(result.kinds)} features"
    )
    rows = []
    for name, kind in result.kinds.items():
        test_name = "Kolmogorov-Smirnov" if kind == "numeric" else "chi-squared"
        shown = _histogram(reference[name], current[name], kind) if result.frames else ""
        mark = "drift" if name in result.drifted_features else "ok"
        rows.append(
            f'<tr class="{mark}"><td>{html.escape(name)}</td><td>{kind}</td><td>{test_name}</td>'
            f"<td>{result.statistics[name]:.4g}</td><td>{result.p_values[name]:.3g}</td>"
            f"<td>{result.adjusted[name]:.3g}</td><td>{mark}</td><td>{shown}</td></tr>"
        )
    data = base64.b64encode(json.dumps(result.as_dict(), sort_keys=True).encode()).decode()
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Drift report</title><style>'
        "body{font-family:sans-serif;margin:2em}td,th{padding:4px 10px;text-align:left}"
        "tr.drift{background:#fde2e1}tr.ok{background:#e6f4ea}</style></head><body>"
        f"<h1>Drift report</h1><p><b>{verdict}</b></p>"
        f"<p>Model image <code>{html.escape(result.model_image)}</code>; reference sample "
        f"{result.reference_rows} rows, requests {result.current_rows} rows; level {result.alpha}, "
        f"{'Bonferroni' if result.correction == 'bonferroni' else 'Benjamini-Hochberg'} correction over "
        f"{len(result.kinds)} features. Bars: reference (blue), requests (orange).</p>"
        "<table><tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>"
        f"<th>adjusted</th><th>verdict</th><th>distribution</th></tr>{''.join(rows)}</table>"
        f'<script type="application/json" id="drift" data-base64="{data}"></script></body></html>\n'
    )
