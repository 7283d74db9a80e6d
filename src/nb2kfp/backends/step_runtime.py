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

import ast
import base64
import hashlib
import os
import stat
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path
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
    """The runtime as steps get it: runtime/step.py without its docstrings and comment lines (line numbers kept,
    so tracebacks through it still name its lines). Every copy of it that KFP and Argo keep counts against the
    Workflow's 1 MiB (README, "Workflow size"). Made once per runtime and kept in the user's cache folder: the
    stripping takes ~50 ms, a compile ~80 ms."""
    source = resources.files("nb2kfp.runtime").joinpath("step.py").read_text(encoding="utf-8")
    folder = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nb2kfp"
    cached = folder / f"runtime-{hashlib.sha256(source.encode('utf-8')).hexdigest()[:32]}.py"
    if _private(folder) and _private(cached):  # what every step runs: only a file nobody else could have written
        try:
            return cached.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass  # unreadable: make it again
    shipped = _stripped(source)
    try:  # a private temporary file, then a rename: a reader never sees half of it
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = folder / f".{cached.name}.{os.getpid()}"
        partial.write_text(shipped, encoding="utf-8")
        partial.chmod(0o600)
        partial.replace(cached)
    except OSError:
        pass  # a read-only home: strip it again next time, nothing else changes
    return shipped


def _private(path: Path) -> bool:
    """Owned by this user, not a link, and nobody else may write it."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return info.st_uid == os.getuid() and not stat.S_ISLNK(info.st_mode) and not info.st_mode & 0o022


def _stripped(source: str) -> str:
    """``source`` without docstrings (each becomes ``''``) and comment-only lines, with as many lines as before."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    inside: set[int] = set()  # lines within a multi-line string: left as they are
    docs: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.end_lineno != node.lineno:
            inside.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            value = first.value if isinstance(first, ast.Expr) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                docs.append(value)
    for doc in sorted(docs, key=lambda d: d.lineno, reverse=True):
        end = doc.end_lineno or doc.lineno
        head, tail = lines[doc.lineno - 1][: doc.col_offset], lines[end - 1][doc.end_col_offset or 0 :]
        lines[doc.lineno - 1 : end] = [head + "''" + tail.rstrip("\n") + "\n"] + ["\n"] * (end - doc.lineno)
        inside.difference_update(range(doc.lineno, end + 1))
    return "".join(
        "\n" if n not in inside and line.lstrip().startswith("#") else line for n, line in enumerate(lines, 1)
    )


@lru_cache(maxsize=1)
def bootstrap() -> str:
    """The command of a step that receives the runtime: reads it from its input artifact (argv[4]: the args are
    ``--executor-input {{$}} --runtime PATH --spec ...``), checks its hash and runs it. It plays kfp.dsl.executor_main's
    role (kfp.local's SubprocessRunner looks for that name in the command). Short: every copy of a step's command
    that KFP and Argo keep holds it."""
    digest = hashlib.sha256(runtime_source().encode("utf-8")).hexdigest()
    return (
        "# nb2kfp step (kfp.dsl.executor_main's role): the runtime from its artifact\n"
        "import sys, hashlib\n"
        "s = open(sys.argv[4], 'rb').read()\n"
        f"hashlib.sha256(s).hexdigest() == '{digest}' or sys.exit('nb2kfp: not the step runtime of this pipeline')\n"
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
