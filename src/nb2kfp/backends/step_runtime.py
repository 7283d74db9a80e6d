"""How nb2kfp's step runtime (:mod:`nb2kfp.runtime.step`; its size: README, "Spec size") reaches each step of a
pipeline spec.

Steps in a step image ``nb2kfp build`` made run the copy the image holds at :data:`IMAGE_RUNTIME`. Any other
notebook step gets it as an input artifact from one task per run, :data:`TASK`, whose command holds the runtime
once (zlib, base64) and writes it to its output artifact: each step's executor input then holds that
artifact's URI, never the code. Why not a pipeline parameter (the design until 0.1): the KFP v2 driver copies a
task's whole executor input, every parameter value, into the pod-spec-patch of its launcher, and Argo keeps that
in the Workflow's status for every node: a 50 KB parameter wired into each step made a pipeline of a dozen steps
cross Argo's 1 MiB Workflow limit (docs/kfp-backend.md), and anyone who could start a run could set it and run
their own code in every step. The step's bootstrap checks the runtime's SHA-256 before it runs it, so an
artifact replaced in the object store is refused.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from functools import lru_cache
from importlib import resources
from typing import Any

from nb2kfp import kfpnames
from nb2kfp.ir import Step
from nb2kfp.runtime.step import RUNTIME_FILE

TASK = kfpnames.RUNTIME_TASK  # the task that hands the runtime to the steps (a reserved task name)
OUTPUT = "runtime"  # its output artifact
INPUT = "nb2kfp-runtime"  # the input artifact of each step that receives it (never a Python name)
IMAGE_RUNTIME = "/opt/nb2kfp/step.py"  # where `nb2kfp build` puts the runtime in step images
RUNTIME_ARGS = ["--runtime", f"{{{{$.inputs.artifacts['{INPUT}'].path}}}}"]


@lru_cache(maxsize=1)
def runtime_source() -> str:
    return resources.files("nb2kfp.runtime").joinpath("step.py").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def bootstrap() -> str:
    """The command of a step that receives the runtime: reads it from its input artifact, checks its hash and runs
    it. It plays kfp.dsl.executor_main's role (kfp.local's SubprocessRunner looks for that name in the command).
    Short: every copy of a step's command that KFP and Argo keep holds it."""
    digest = hashlib.sha256(runtime_source().encode("utf-8")).hexdigest()
    return (
        "# nb2kfp step (kfp.dsl.executor_main's role): runs the runtime from its artifact\n"
        "import sys\nfrom hashlib import sha256\n"
        "s = open(sys.argv[sys.argv.index('--runtime') + 1], 'rb').read()\n"
        f"if sha256(s).hexdigest() != '{digest}':\n"
        "    sys.exit('nb2kfp: not the step runtime this pipeline was compiled with')\n"
        f"exec(compile(s, {RUNTIME_FILE!r}, 'exec'), {{'__name__': '__main__'}})\n"
    )


@lru_cache(maxsize=1)
def writer() -> str:
    """The command of :data:`TASK`: writes the runtime (compressed below) to its output artifact's path, and the
    executor output naming that artifact (kfp.local reads outputs only from there; KFP's launcher reads it too).
    Its comment names kfp.dsl.executor_main, as the bootstrap's does, for kfp.local's check of the command."""
    blob = base64.b64encode(zlib.compress(runtime_source().encode("utf-8"), 9)).decode("ascii")
    return (
        "# nb2kfp: hands the nb2kfp step runtime (below, zlib + base64) to the steps as an artifact\n"
        "# (a Python step like those kfp.dsl.executor_main runs: kfp.local's SubprocessRunner runs only those)\n"
        "import base64, json, os, sys, zlib\n"
        "path, outputs = sys.argv[1], json.loads(sys.argv[2])['outputs']\n"
        "os.makedirs(os.path.dirname(path) or '.', exist_ok=True)\n"
        "with open(path, 'wb') as fh:\n"
        f"    fh.write(zlib.decompress(base64.b64decode('{blob}')))\n"
        f"artifact = outputs['artifacts']['{OUTPUT}']['artifacts'][0]\n"
        "if outputs.get('outputFile'):\n"
        "    os.makedirs(os.path.dirname(outputs['outputFile']) or '.', exist_ok=True)\n"
        f"    done = {{'name': artifact.get('name', '{OUTPUT}'), 'uri': artifact['uri'], 'metadata': {{}}}}\n"
        "    with open(outputs['outputFile'], 'w', encoding='utf-8') as fh:\n"
        f"        json.dump({{'artifacts': {{'{OUTPUT}': {{'artifacts': [done]}}}}}}, fh)\n"
    )


def carry(
    steps: dict[str, Step],
    runtime_image: str,
    components: dict[str, Any],
    executors: dict[str, Any],
    tasks: dict[str, Any],
) -> None:
    """``steps``: the notebook steps by task name. Those on ``runtime_image`` run the runtime inside it; the
    others receive it from :data:`TASK` (spec documents changed in place; the first such step's image runs it)."""
    shared = [task for task, step in steps.items() if not runtime_image or step.image != runtime_image]
    for task in steps.keys() - set(shared):
        executors[kfpnames.executor_key(task)]["container"]["command"] = ["python3", IMAGE_RUNTIME]
    if not shared:
        return
    artifact = {"artifactType": {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}}
    components[kfpnames.component_key(TASK)] = {
        "executorLabel": kfpnames.executor_key(TASK),
        "outputDefinitions": {"artifacts": {OUTPUT: artifact}},
    }
    executors[kfpnames.executor_key(TASK)] = {
        "container": {
            "args": [f"{{{{$.outputs.artifacts['{OUTPUT}'].path}}}}", "{{$}}"],
            "command": ["python3", "-c", writer()],
            "image": steps[shared[0]].image,
        }
    }
    tasks[TASK] = {
        "cachingOptions": {"enableCache": True},
        "componentRef": {"name": kfpnames.component_key(TASK)},
        "taskInfo": {"name": TASK},
    }
    for task in shared:
        inputs = components[kfpnames.component_key(task)].setdefault("inputDefinitions", {})
        inputs.setdefault("artifacts", {})[INPUT] = artifact
        wired = tasks[task].setdefault("inputs", {}).setdefault("artifacts", {})
        wired[INPUT] = {"taskOutputArtifact": {"outputArtifactKey": OUTPUT, "producerTask": TASK}}
        tasks[task]["dependentTasks"] = sorted({*tasks[task].get("dependentTasks", []), TASK})
        container = executors[kfpnames.executor_key(task)]["container"]
        container["command"] = ["python3", "-c", bootstrap()]
        args = container["args"]
        at = args.index("--spec")
        container["args"] = [*args[:at], *RUNTIME_ARGS, *args[at:]]
