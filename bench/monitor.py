"""Time to a drift verdict on 10,000 logged requests: ``python bench/monitor.py [MODEL_IMAGE]``.

Without an image: the drift step's own work, in this process (read 10,000 JSON lines as ``--log-requests``
writes them, one row each, 4 numeric + 1 categorical feature; test them against a 5,000-row reference sample).
With a model image (whose reference has 4 numeric features, e.g. the e2e test's iris model; needs the registry's
credentials in the environment): the whole ``nb2kfp monitor IMAGE --requests ...`` command, compile and kfp.local
run included. Prints one JSON object.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from nb2kfp.monitor import drift
from nb2kfp.serving import reference

N = 10_000


def _log(folder: Path, rows: np.ndarray, categories: list[str] | None) -> None:
    with (folder / "requests-clf.jsonl").open("w") as fh:
        for i, row in enumerate(rows.tolist()):
            if categories is None:
                inputs = [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]
            else:
                inputs = [{"name": f"x{j}", "shape": [1], "datatype": "FP64", "data": [v]} for j, v in enumerate(row)]
                inputs.append({"name": "colour", "shape": [1], "datatype": "BYTES", "data": [categories[i]]})
            fh.write(json.dumps({"model": "clf", "status": 200, "request": {"inputs": inputs}}) + "\n")


def in_process(folder: Path) -> dict[str, float]:
    rng = np.random.default_rng(0)
    train = pd.DataFrame(rng.normal(size=(20_000, 4)), columns=[f"x{j}" for j in range(4)])
    train["colour"] = rng.choice(["red", "green", "blue"], len(train))
    sample = reference.make(train, "X")
    schema = json.loads(sample.files()[reference.SCHEMA])
    _log(folder, rng.normal(size=(N, 4)), list(rng.choice(["red", "green", "blue"], N)))
    t0 = time.perf_counter()
    import scipy.stats  # noqa: F401 - its import, timed on its own (seconds on a loaded machine)

    started = time.perf_counter()
    current = drift.read_requests(str(folder), [f["name"] for f in schema["features"]])
    read = time.perf_counter()
    result = drift.test(sample.frame, current, schema, 0.05, "bonferroni", "bench")
    tested = time.perf_counter()
    drift.report_html(result)
    done = time.perf_counter()
    return {
        "requests": len(current),
        "import_scipy_s": round(started - t0, 3),
        "read_s": round(read - started, 3),
        "test_s": round(tested - read, 3),
        "report_s": round(done - tested, 3),
        "verdict_s": round(done - started, 3),
        "drifted": float(result.drifted),
    }


def command(folder: Path, image: str) -> dict[str, float]:
    _log(folder, np.random.default_rng(1).normal(size=(N, 4)), None)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nb2kfp", "monitor", image, "--requests", str(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return {"requests": N, "command_s": round(time.perf_counter() - started, 2)}


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        figures = in_process(Path(tmp))
        if len(sys.argv) > 1:
            (Path(tmp) / "cmd").mkdir()
            figures |= command(Path(tmp) / "cmd", sys.argv[1])
    print(json.dumps(figures))
