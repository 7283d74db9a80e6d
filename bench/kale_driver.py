"""Run a pipeline YAML compiled by Kale with kfp.local, inside Kale's venv: ``python kale_driver.py SPEC ROOT [CACHE]``.

With CACHE (a folder), kfp.local's own task cache is on (``enable_caching=True, cache_root=CACHE``): Kale's
incremental re-run, as fair a peer as kfp.local offers it.

Exit code 0 when every task succeeded. Standalone (stdlib and kfp only): it runs with Kale's interpreter.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print("usage: kale_driver.py SPEC.yaml ROOT [CACHE]", file=sys.stderr)
        return 2
    spec, root = Path(argv[1]), Path(argv[2])
    cache = {"enable_caching": True, "cache_root": argv[3]} if len(argv) == 4 else {}
    from kfp import components, local

    root.mkdir(parents=True, exist_ok=True)
    (root / "workspace").mkdir(exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root / "artifacts"),
        workspace_root=str(root / "workspace"),
        raise_on_error=True,
        **cache,  # type: ignore[arg-type]
    )
    pipeline = components.load_component_from_file(str(spec))
    try:
        pipeline()
    except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE"
        print(f"kale_driver: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
