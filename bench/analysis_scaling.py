"""Lint time against cell size: analysis must stay linear (issue 14, case 11).

``python bench/analysis_scaling.py`` writes notebooks whose one step cell holds N assignment lines (and N
assignments followed by N ``if`` blocks), runs ``nb2kfp lint`` on each as a user would, and prints wall and CPU
seconds. It exits 1 when doubling N more than triples the CPU time (quadratic work quadruples it) or when the
200,000-line cell takes more than 20 CPU seconds.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_200K = 20.0
TIMEOUT = 60.0


def _notebook(path: Path, source: str) -> Path:
    cells = [
        {
            "cell_type": "code",
            "metadata": {"tags": ["step:a"]},
            "source": source,
            "outputs": [],
            "execution_count": None,
        },
        {"cell_type": "code", "metadata": {"tags": ["step:b", "prev:a"]}, "source": "print(v1)", "outputs": []},
    ]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def _lint(path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of ``nb2kfp lint path``; CPU is infinite when it runs over TIMEOUT."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "nb2kfp", "lint", str(path)], capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - started, float("inf")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    shapes = {
        "assignments": lambda n: "\n".join(f"v{i} = {i}" for i in range(n)),
        "assignments + ifs": lambda n: (
            "\n".join(f"v{i} = {i}" for i in range(n // 2))
            + "\n"
            + "\n".join(f"if v{i}:\n    w{i} = 1" for i in range(n // 2))
        ),
    }
    ok = True
    with tempfile.TemporaryDirectory(prefix="nb2kfp-bench-scaling-") as tmp:
        for shape, make in shapes.items():
            cpu: dict[int, float] = {}
            for n in (10_000, 20_000, 200_000):
                wall, cpu[n] = _lint(_notebook(Path(tmp) / f"n{n}.ipynb", make(n)))
                print(f"{shape:>18}: {n:>7,} lines: {wall:6.2f} s wall, {cpu[n]:6.2f} s CPU", flush=True)
            ratio = cpu[20_000] / max(cpu[10_000], 1e-3)
            print(f"{shape:>18}: CPU(20k) / CPU(10k) = {ratio:.2f} (linear ~2, quadratic ~4)")
            ok = ok and ratio < 3.0 and cpu[200_000] < LIMIT_200K
    print("linear" if ok else "NOT linear (or over the 200k-line limit)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
