"""How nb2kfp's step runtime (:mod:`nb2kfp.runtime.step`; its size: README, "Spec size") reaches each step of a
pipeline spec.

Once per spec, not once per step (200 steps would outgrow Kubernetes' ~1.5 MiB object limit): the source is the
default of the pipeline input ``nb2kfp-runtime``, wired into every notebook step, whose command is a short
bootstrap that runs it from the executor input. Steps in a step image ``nb2kfp build`` made run the copy the
image holds at :data:`IMAGE_RUNTIME` instead, and then the spec need not carry it at all.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from nb2kfp.ir import Step
from nb2kfp.runtime.step import RUNTIME_FILE

RUNTIME_PARAM = "nb2kfp-runtime"
IMAGE_RUNTIME = "/opt/nb2kfp/step.py"  # where `nb2kfp build` puts the runtime in step images
# Runs the runtime handed in as the nb2kfp-runtime input. It plays kfp.dsl.executor_main's role (kfp.local's
# SubprocessRunner looks for that name in the command).
BOOTSTRAP = (
    "# nb2kfp step: runs the nb2kfp runtime from the nb2kfp-runtime input (as kfp.dsl.executor_main would)\n"
    "import json, sys\n"
    "executor_input = json.loads(sys.argv[sys.argv.index('--executor-input') + 1])\n"
    f"source = executor_input['inputs']['parameterValues']['{RUNTIME_PARAM}']\n"
    f"exec(compile(source, {RUNTIME_FILE!r}, 'exec'), {{'__name__': '__main__'}})\n"
)


@lru_cache(maxsize=1)
def runtime_source() -> str:
    return resources.files("nb2kfp.runtime").joinpath("step.py").read_text(encoding="utf-8")


def carry(
    steps: dict[str, Step],
    runtime_image: str,
    components: dict[str, Any],
    executors: dict[str, Any],
    tasks: dict[str, Any],
    root: dict[str, Any],
) -> None:
    """``steps``: the notebook steps by task name. Those on ``runtime_image`` run the runtime inside it; the
    others get it once, as a pipeline input's default wired into each of them (spec documents changed in place)."""
    shared = [task for task, step in steps.items() if not runtime_image or step.image != runtime_image]
    for task in steps.keys() - set(shared):
        executors[f"exec-{task}"]["container"]["command"] = ["python3", IMAGE_RUNTIME]
    if not shared:
        return
    inputs = root.setdefault("inputDefinitions", {}).setdefault("parameters", {})
    inputs[RUNTIME_PARAM] = {"defaultValue": runtime_source(), "isOptional": True, "parameterType": "STRING"}
    for task in shared:
        params = components[f"comp-{task}"].setdefault("inputDefinitions", {}).setdefault("parameters", {})
        params[RUNTIME_PARAM] = {"parameterType": "STRING"}
        wired = tasks[task].setdefault("inputs", {}).setdefault("parameters", {})
        wired[RUNTIME_PARAM] = {"componentInputParameter": RUNTIME_PARAM}
