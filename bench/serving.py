"""Serving timings: ``python bench/serving.py`` (needs the services of .ci/services.sh: source their env file).

Trains two versions of a model:clf notebook with ``run --model-image``, then measures ``model serve --local``:
the MLServer image (build time when it is not there yet, its size), the time from ``model serve`` to the first
prediction, and a swap (stop v1, serve v2 until its first prediction). Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from nbfactory import write

CELLS = [
    (["imports"], "from sklearn.datasets import load_iris\nfrom sklearn.tree import DecisionTreeClassifier"),
    (["pipeline-parameters"], "offset = 0"),
    (
        ["step:train", "model:clf"],
        "X, y = load_iris(return_X_y=True)\nclf = DecisionTreeClassifier(random_state=0).fit(X, (y + offset) % 3)",
    ),
]


def nb2kfp(cwd: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "nb2kfp", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return proc.stdout


def serve(cwd: Path, ref: str) -> tuple[subprocess.Popen[str], float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nb2kfp", "model", "serve", ref, "--local"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if not proc.stdout.readline().startswith("http://127.0.0.1:"):
        raise SystemExit(proc.communicate()[1])
    return proc, time.monotonic() - started


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    return proc.communicate(timeout=60)[1]


def main() -> None:
    import docker

    os.environ.setdefault("NB2KFP_REGISTRY_USER", os.environ["NB2KFP_TEST_REGISTRY_USER"])
    os.environ.setdefault("NB2KFP_REGISTRY_PASSWORD_FILE", os.environ["NB2KFP_TEST_REGISTRY_PASSWORD_FILE"])
    prefix = f"{os.environ['NB2KFP_TEST_REGISTRY']}/bench{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="nb2kfp-bench-serving-") as tmp:
        cwd = Path(tmp)
        (cwd / "nb2kfp.toml").write_text(f'image = "{os.environ["NB2KFP_TEST_BASE_IMAGE"]}"\n')
        write(cwd / "train.ipynb", CELLS)
        refs = []
        for offset in (0, 1):
            out = nb2kfp(cwd, "run", "train.ipynb", "-p", f"offset={offset}", "--model-image", prefix)
            refs.append(next(x for x in out.splitlines() if x.startswith("model clf: ")).split(": ")[1])
        first, to_first = serve(cwd, refs[0])
        t0 = time.monotonic()  # the swap: v1 stopped and cleaned up, v2 served until its first prediction
        log = stop(first)
        second, to_second = serve(cwd, refs[1])
        swap = time.monotonic() - t0
        stop(second)
    line = next(x for x in log.splitlines() if x.startswith("serving image "))
    tag = line.split()[2]
    size = docker.from_env().images.get(tag).attrs["Size"]
    print(
        json.dumps(
            {
                "serving_image": line,
                "serving_image_mb": round(size / 1e6),
                "serve_to_first_prediction_s": round(to_first, 1),
                "swap_s": round(swap, 1),
                "second_serve_to_first_prediction_s": round(to_second, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
