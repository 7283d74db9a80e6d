"""data-drift-check: how far a numeric column of ``current`` moved from ``reference`` (CSV or JSON files).

Run by the component as ``python3 -c <this file> REFERENCE CURRENT COLUMN METHOD THRESHOLD SCORE_OUT DRIFTED_OUT``.
Standard library only, so it runs in any Python image. (kfp.local's SubprocessRunner runs only commands that
mention kfp.dsl.executor_main; this script plays that role itself and needs no kfp.)

Methods: ``psi`` (population stability index over ten reference-quantile bins; > 0.2 is the usual "drifted")
and ``mean`` (|mean shift| in reference standard deviations). Files: CSV with a header row, a JSON list of
records, or a JSON object mapping column names to lists.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import sys


def read_column(path: str, column: str) -> list[float]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if text.lstrip().startswith(("[", "{")):
        data = json.loads(text)
        values = data[column] if isinstance(data, dict) else [row[column] for row in data]
    else:
        values = [row[column] for row in csv.DictReader(io.StringIO(text))]
    return [float(v) for v in values if v not in ("", None)]


def psi(reference: list[float], current: list[float], bins: int = 10) -> float:
    ordered = sorted(reference)
    edges = sorted({ordered[min(len(ordered) - 1, int(len(ordered) * i / bins))] for i in range(1, bins)})

    def shares(values: list[float]) -> list[float]:
        counts = [0] * (len(edges) + 1)
        for v in values:
            counts[sum(v >= e for e in edges)] += 1
        return [max(c / len(values), 1e-4) for c in counts]

    return sum((c - r) * math.log(c / r) for r, c in zip(shares(reference), shares(current), strict=True))


def mean_shift(reference: list[float], current: list[float]) -> float:
    spread = statistics.pstdev(reference) or 1.0
    return abs(statistics.fmean(current) - statistics.fmean(reference)) / spread


def main(argv: list[str]) -> int:
    reference, current, column, method, threshold, score_out, drifted_out = argv
    ref, cur = read_column(reference, column), read_column(current, column)
    if not ref or not cur:
        print(f"data-drift-check: column {column!r} has no values", file=sys.stderr)
        return 1
    if method not in ("psi", "mean"):
        print(f"data-drift-check: method must be psi or mean, not {method!r}", file=sys.stderr)
        return 1
    score = psi(ref, cur) if method == "psi" else mean_shift(ref, cur)
    drifted = score > float(threshold)
    for path, value in ((score_out, json.dumps(round(score, 6))), (drifted_out, json.dumps(drifted))):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(value)
    print(f"data-drift-check: {method} of {column!r} = {score:.4f} (threshold {threshold}): drifted={drifted}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
