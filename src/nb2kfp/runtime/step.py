"""Runs one pipeline step inside its container (the KFP executor protocol, for notebook code).

Standalone on purpose: the compiler embeds this file's source in every component, so a step
needs no nb2kfp (and no kfp) in its image. Only the standard library is imported up front;
pandas, numpy, joblib and cloudpickle are used when the value and the image have them.
kfp.local's SubprocessRunner only runs components whose command names kfp.dsl.executor_main:
this file plays that role (reads the executor input, writes the executor output).
"""

from __future__ import annotations

import builtins
import json
import linecache
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
import types
from typing import Any

RUNTIME_FILE = "<nb2kfp runtime>"
_INSTALLERS = re.compile(r"^\s*(?:(?:python3?|\S*/python3?)\s+-m\s+)?(?:pip3?|conda|mamba|uv\s+pip)\b")
_MOUNTS = (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/"))


class StepFailed(Exception):
    pass


def local_path(uri: str) -> str:
    """Where KFP's launcher makes an artifact URI available inside the container."""
    for prefix, mount in _MOUNTS:
        if uri.startswith(prefix):
            return mount + uri[len(prefix) :]
    if uri.startswith("oci://"):
        return "/oci/" + uri[len("oci://") :].replace("/", "_")
    return uri


def log(message: str) -> None:
    print(f"[nb2kfp] {message}", file=sys.stderr, flush=True)


# -- values between steps ------------------------------------------------------------------
def _json_exact(value: object, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return value == value and value not in (float("inf"), float("-inf"))
    if type(value) is list:
        return all(_json_exact(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _json_exact(v, depth + 1) for k, v in value.items())
    return False


def _type_name(value: object) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def _array_attributes(obj: object) -> dict[str, Any] | None:
    """The instance attributes of an ndarray subclass that relies on ndarray's pickling, which drops them
    (python-control's NamedSignal loses its signal labels): they are saved alongside the array."""
    cls = type(obj)
    base = next((b for b in cls.__mro__[1:] if b.__name__ == "ndarray" and b.__module__ == "numpy"), None)
    if base is None or not getattr(obj, "__dict__", None):
        return None
    own = ("__reduce__", "__reduce_ex__", "__setstate__", "__getstate__")
    if any(getattr(cls, m, None) is not getattr(base, m, None) for m in own):
        return None  # the subclass pickles itself
    return dict(obj.__dict__)


def _set_array_state(obj: Any, state: tuple[Any, dict[str, Any]]) -> None:
    obj.__setstate__(state[0])
    obj.__dict__.update(state[1])


def _pickler(shared: dict[str, Any]) -> type[pickle.Pickler]:
    """cloudpickle (by value for code defined in steps), but classes and functions from the
    functions cell go by reference so they stay the same objects in the receiving step."""
    try:
        import cloudpickle
    except ImportError:
        return pickle.Pickler

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            by_reference = (
                isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__"
            )
            if by_reference and shared.get(getattr(obj, "__qualname__", "")) is obj:
                return NotImplemented
            attributes = _array_attributes(obj)
            if attributes is not None:
                rebuild, args, state = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[:3]
                return rebuild, args, (state, attributes), None, None, _set_array_state
            return super().reducer_override(obj)

    return Pickler


def save_value(name: str, value: object, folder: str, shared: dict[str, Any]) -> dict[str, str]:
    os.makedirs(folder, exist_ok=True)
    module = type(value).__module__.split(".")[0]
    fmt = None
    if module == "pandas" and type(value).__name__ == "DataFrame":
        # Arrow IPC (Feather v2), uncompressed: the same Arrow data and pandas metadata (index included) as
        # parquet without parquet's encoding, about 2.6x faster here; read back memory-mapped.
        try:
            import pyarrow.feather as feather

            feather.write_feather(value, os.path.join(folder, "data.arrow"), compression="uncompressed")
            fmt = "feather"
        except Exception as exc:  # no pyarrow, or columns Arrow cannot hold: fall back to pickle
            log(f"{name}: Arrow unavailable ({type(exc).__name__}), using pickle")
    elif module == "numpy" and type(value).__name__ == "ndarray" and value.dtype != object:  # type: ignore[attr-defined]
        import numpy as np

        with open(os.path.join(folder, "data.npy"), "wb") as fh:
            np.save(fh, value, allow_pickle=False)  # type: ignore[arg-type]
        fmt = "npy"
    elif module == "sklearn":
        try:
            import joblib

            joblib.dump(value, os.path.join(folder, "data.joblib"))
            fmt = "joblib"
        except ImportError:
            pass  # no joblib in this image: the pickle below stores the estimator
    elif _json_exact(value):
        with open(os.path.join(folder, "data.json"), "w", encoding="utf-8") as fh:
            json.dump(value, fh)
        fmt = "json"
    if fmt is None:
        try:
            with open(os.path.join(folder, "data.pickle"), "wb") as fh:
                _pickler(shared)(fh, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        except Exception as exc:
            raise StepFailed(
                f"cannot save variable {name!r} ({_type_name(value)}) for the next steps: {type(exc).__name__}: {exc}"
            ) from None
        fmt = "pickle"
    meta = {"format": fmt, "python_type": _type_name(value), "variable": name}
    with open(os.path.join(folder, "nb2kfp.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    return meta


def load_value(name: str, folder: str) -> object:
    with open(os.path.join(folder, "nb2kfp.json"), encoding="utf-8") as fh:
        fmt = json.load(fh)["format"]
    if fmt == "feather":
        import pyarrow.feather as feather

        table = feather.read_table(os.path.join(folder, "data.arrow"), memory_map=True)
        return table.to_pandas(split_blocks=True, self_destruct=True)
    if fmt == "parquet":  # written by nb2kfp before 0.1.0's Arrow format
        import pandas as pd

        return pd.read_parquet(os.path.join(folder, "data.parquet"))
    if fmt == "npy":
        import numpy as np

        return np.load(os.path.join(folder, "data.npy"), allow_pickle=False)
    if fmt == "joblib":
        import joblib

        return joblib.load(os.path.join(folder, "data.joblib"))
    if fmt == "json":
        with open(os.path.join(folder, "data.json"), encoding="utf-8") as fh:
            return json.load(fh)
    with open(os.path.join(folder, "data.pickle"), "rb") as fh:
        return pickle.load(fh)


# -- IPython compatibility -------------------------------------------------------------------
class IPythonShim:
    """What ``get_ipython()`` offers a step: shell lines and the common magics, minus the kernel."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.user_ns = namespace

    def _expand(self, command: str) -> str:
        def repl(m: re.Match[str]) -> str:
            return str(self.user_ns[m.group(1)]) if m.group(1) in self.user_ns else m.group(0)

        return re.sub(r"\$(\w+)", repl, command)

    def system(self, command: str) -> int:
        command = self._expand(command)
        if _INSTALLERS.match(command) and not os.environ.get("NB2KFP_ALLOW_INSTALL"):
            log(f"skipped package install in a pipeline step: !{command} (set NB2KFP_ALLOW_INSTALL=1 to allow)")
            return 0
        return subprocess.run(command, shell=True, check=False).returncode

    def getoutput(self, command: str, split: bool = True, depth: int = 0) -> Any:
        out = subprocess.run(self._expand(command), shell=True, capture_output=True, text=True, check=False).stdout
        return out.splitlines() if split else out

    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> Any:
        if name in ("pip", "conda", "mamba", "uv"):
            return self.system(f"{name} {line}")
        if name in ("sx", "system"):
            return self.getoutput(line)
        if name == "env" and ("=" in line or " " in line.strip()):
            key, _, value = line.replace("=", " ", 1).partition(" ")
            os.environ[key.strip()] = self._expand(value.strip())
            return None
        if name == "set_env":
            key, _, value = line.replace("=", " ", 1).partition(" ")
            os.environ[key.strip()] = value.strip()
            return None
        if name == "cd":
            os.chdir(os.path.expanduser(line.strip() or "~"))
            return None
        if name == "pwd":
            return os.getcwd()
        if name == "matplotlib":
            os.environ.setdefault("MPLBACKEND", "Agg")
            return None
        if name not in (
            "load_ext",
            "reload_ext",
            "autoreload",
            "config",
            "precision",
            "xmode",
            "pinfo",
            "pinfo2",
        ):
            log(f"skipped %{name} {line}: no kernel in a pipeline step")
        return None

    def run_cell_magic(self, name: str, line: str, cell: str) -> Any:
        if name in ("bash", "sh"):
            return subprocess.run([name, "-c", cell], check=True).returncode
        if name == "script":
            return subprocess.run([*shlex.split(line)[:1], "-c", cell], check=True).returncode
        if name == "writefile":
            args = shlex.split(line)
            append = "-a" in args or "--append" in args
            path = next(a for a in args if not a.startswith("-"))
            with open(os.path.expanduser(path), "a" if append else "w", encoding="utf-8") as fh:
                fh.write(cell)
            return None
        if name in ("capture", "time", "timeit", "prun"):
            exec(compile(cell, f"%%{name}", "exec"), self.user_ns)
            return None
        if name not in ("html", "markdown", "latex", "svg", "javascript", "js"):
            log(f"skipped %%{name} cell: no kernel in a pipeline step")
        return None


def _display(*objs: object, **_: object) -> None:
    for obj in objs:
        print(obj)


# -- the step --------------------------------------------------------------------------------
def _run_cells(cells: list[list[Any]], notebook: str, namespace: dict[str, Any]) -> None:
    for index, source in cells:
        filename = f"{notebook}, cell {index}"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the notebook's cells down, without the runtime's own frames."""
    own = {RUNTIME_FILE, "<string>", globals().get("__file__")}
    tb = traceback.TracebackException.from_exception(exc)
    tb.stack = traceback.StackSummary.from_list([f for f in tb.stack if f.filename not in own])
    return "".join(tb.format())


def _cell_of(exc: BaseException, notebook: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(f"{notebook}, cell ")]
    return f" in {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""


def run(executor_input: dict[str, Any], spec: dict[str, Any]) -> None:
    started = time.monotonic()
    step, notebook = spec["step"], spec["notebook"]
    inputs = executor_input.get("inputs", {})
    outputs = executor_input.get("outputs", {})
    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace.update({"__builtins__": builtins, "get_ipython": None, "display": _display})
    namespace["get_ipython"] = lambda shim=IPythonShim(namespace): shim
    sys.modules["__main__"] = module
    values = inputs.get("parameterValues", {})
    casts = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}
    if spec.get("workspace_param") in values:  # the run's shared workspace volume
        os.environ["NB2KFP_WORKSPACE"] = str(values[spec["workspace_param"]])
    for name, kind in spec["params"].items():
        if name not in values:
            raise StepFailed(f"pipeline parameter {name!r} was not passed to step {step!r}")
        namespace[name] = casts[kind](values[name])
    _run_cells(spec["prelude"], notebook, namespace)
    for name, key in spec["inputs"].items():
        artifact = inputs["artifacts"][key]["artifacts"][0]
        namespace[name] = load_value(name, local_path(artifact["uri"]))
    for name, key in spec.get("paths", {}).items():  # a catalog component's output artifact: its local path
        namespace[name] = local_path(inputs["artifacts"][key]["artifacts"][0]["uri"])
    _run_cells(spec["cells"], notebook, namespace)
    shared = {n: namespace[n] for n in spec.get("shared", []) if n in namespace}
    out_artifacts: dict[str, Any] = {}
    for name, key in spec["outputs"].items():
        if name not in namespace:
            raise StepFailed(f"step {step!r} did not set {name!r}, which a later step reads")
        artifact = outputs["artifacts"][key]["artifacts"][0]
        meta = save_value(name, namespace[name], local_path(artifact["uri"]), shared)
        out_artifacts[key] = {
            "artifacts": [{"name": artifact.get("name", key), "uri": artifact["uri"], "metadata": meta}]
        }
    if spec["metrics"]:
        out_artifacts[spec["metrics_key"]] = _metrics(spec, namespace, outputs)
    out_params = _exports(spec, namespace, outputs, out_artifacts)
    output_file = outputs.get("outputFile")
    if output_file:
        os.makedirs(os.path.dirname(output_file) or ".", exist_ok=True)
        with open(output_file, "w", encoding="utf-8") as fh:
            json.dump({"artifacts": out_artifacts, **({"parameterValues": out_params} if out_params else {})}, fh)
    log(f"step {step!r} done in {time.monotonic() - started:.2f}s")


_KFP_TYPES = {"STRING": (str,), "NUMBER_INTEGER": (int,), "NUMBER_DOUBLE": (int, float), "BOOLEAN": (bool,)}
_KFP_TYPES.update({"LIST": (list,), "STRUCT": (dict,)})


def _exports(
    spec: dict[str, Any], namespace: dict[str, Any], outputs: dict[str, Any], out_artifacts: dict[str, Any]
) -> dict[str, Any]:
    """Variables handed to catalog components: as output parameters, or as files (a path's content, or text)."""
    params: dict[str, Any] = {}
    for name, kind, key, kfp_type in spec.get("exports", []):
        if name not in namespace:
            raise StepFailed(f"step {spec['step']!r} did not set {name!r}, which a component reads")
        value = namespace[name]
        if kind == "parameter":
            allowed = _KFP_TYPES.get(kfp_type, (object,))
            if not _json_exact(value) or not isinstance(value, allowed) or (type(value) is bool) != (bool in allowed):
                raise StepFailed(f"{name!r} is a {_type_name(value)}; the component takes a {kfp_type} parameter")
            params[key] = value
            continue
        artifact = outputs["artifacts"][key]["artifacts"][0]
        target = local_path(artifact["uri"])
        os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
        if isinstance(value, (str, os.PathLike)) and os.path.isfile(value):
            shutil.copyfile(value, target)
        elif isinstance(value, (str, bytes)):
            with open(target, "wb") as fh:
                fh.write(value.encode("utf-8") if isinstance(value, str) else value)
        else:
            raise StepFailed(f"{name!r} is a {_type_name(value)}; a component's file input takes a path, str or bytes")
        out_artifacts[key] = {
            "artifacts": [{"name": artifact.get("name", key), "uri": artifact["uri"], "metadata": {}}]
        }
    return params


def _metrics(spec: dict[str, Any], namespace: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, float] = {}
    for name in spec["metrics"]:
        if name not in namespace:
            raise StepFailed(f"metric {name!r} is not set at the end of step {spec['step']!r}")
        try:
            values[name] = float(namespace[name])
        except (TypeError, ValueError):
            raise StepFailed(f"metric {name!r} must be a number, got {_type_name(namespace[name])}") from None
    artifact = outputs["artifacts"][spec["metrics_key"]]["artifacts"][0]
    path = local_path(artifact["uri"])
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(values, fh)
    return {"artifacts": [{"name": artifact.get("name", "metrics"), "uri": artifact["uri"], "metadata": values}]}


def main(argv: list[str]) -> int:
    executor_input = json.loads(argv[argv.index("--executor-input") + 1])
    spec = json.loads("".join(argv[argv.index("--spec") + 1 :]))
    try:
        run(executor_input, spec)
    except StepFailed as exc:
        log(f"step {spec['step']!r} failed: {exc}")
        return 1
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        sys.stderr.write(_user_traceback(exc))
        where = _cell_of(exc, spec["notebook"])
        log(f"step {spec['step']!r} failed{where}: {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
