"""papermill-runner: execute a notebook with parameters via papermill; the executed notebook is the output.

Run by the component as ``python3 -c <this file> NOTEBOOK_PATH PARAMETERS_JSON KERNEL OUTPUT``. The image
needs papermill and ipykernel (``pip install papermill ipykernel``); this script imports nothing else that
is not in the standard library. (kfp.local's SubprocessRunner runs only commands that mention
kfp.dsl.executor_main; this script plays that role itself and needs no kfp.)
"""

from __future__ import annotations

import json
import os
import sys


def _executor_output(executor_input: str, output: str) -> None:
    """Declare the executed notebook as the `executed` artifact in KFP's executor output file (kfp.local
    collects container components' artifacts only from there; a cluster's launcher reads it as well)."""
    outputs = json.loads(executor_input).get("outputs", {})
    artifact = outputs.get("artifacts", {}).get("executed", {}).get("artifacts", [{}])[0]
    target = outputs.get("outputFile")
    if not target or not artifact.get("uri"):
        return
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    entry = {"name": artifact.get("name", "executed"), "uri": artifact["uri"], "metadata": {"source": output}}
    with open(target, "w", encoding="utf-8") as fh:
        json.dump({"artifacts": {"executed": {"artifacts": [entry]}}}, fh)


def main(argv: list[str]) -> int:
    notebook, parameters, kernel, output, executor_input = argv
    try:
        import papermill
    except ImportError:
        print("papermill-runner: the image has no papermill (pip install papermill ipykernel)", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    papermill.execute_notebook(notebook, output, parameters=json.loads(parameters or "{}"), kernel_name=kernel or None)
    _executor_output(executor_input, output)
    print(f"papermill-runner: executed {notebook} -> {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
