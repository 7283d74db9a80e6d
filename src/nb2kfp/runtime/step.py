"""Runs one pipeline step inside its container (the KFP executor protocol, for notebook code).

Standalone on purpose: a spec carries this file's source once, in a task that hands it to every notebook step
as an artifact (backends/step_runtime.py), and step images nb2kfp builds hold a copy; so a step needs no nb2kfp
(and no kfp) in its image. Only the standard library is imported up front; pandas, numpy, pyarrow,
joblib and cloudpickle are used when the value and the image have them (FORMATS). kfp.local's
SubprocessRunner only runs components whose command names kfp.dsl.executor_main: this file plays
that role (reads the executor input, writes the executor output).
"""

from __future__ import annotations

import builtins
import functools
import json
import linecache
import math
import os
import pickle
import re
import shlex
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import IO, Any, NamedTuple

RUNTIME_FILE = "<nb2kfp runtime>"  # the file name of this source when the spec's bootstrap runs it (step_runtime)
# With a key in this variable (a Kubernetes secret through [tool.nb2kfp] artifact_key_secret; `nb2kfp run --local`
# makes one per run), pickle-based values carry an HMAC of their bytes and their artifact folder, and a step
# refuses to unpickle one without a valid HMAC: a value written by anyone else (a writer of the pipeline root, an
# earlier run) is never loaded as code.
ARTIFACT_KEY_ENV = "NB2KFP_ARTIFACT_KEY"
# What a local run sets for its steps (nb2kfp.local_run.runner): the notebook cells of each step, for tracebacks; the
# folder of each step's working directory and the folder it is seeded from; the run's workspace.
CELLS_ENV, STEP_DIRS_ENV, SEED_ENV = "NB2KFP_CELLS", "NB2KFP_STEP_DIRS", "NB2KFP_SEED"
LOCAL_WORKSPACE_ENV = "NB2KFP_LOCAL_WORKSPACE"
READS_ENV = "NB2KFP_READS"  # a local run: the folder where each step writes what it read beside the notebook
RUN_ENV = (CELLS_ENV, STEP_DIRS_ENV, SEED_ENV, LOCAL_WORKSPACE_ENV, ARTIFACT_KEY_ENV, READS_ENV)
# State a kernel keeps from cell to cell that no variable holds (the global random state, python-control's count of
# unnamed systems): a value handed from step to step when a notebook seeds the random state or imports such a
# library (frontend/calls.py STATEFUL_IMPORTS). Module -> how to read and set its part.
PROCESS_STATE = "nb2kfp_process_state"
PRINTED_METRIC = "print:"  # in a step's metrics file, before a metric's name: what print() shows of it
_STATE_PARTS: dict[str, tuple[Callable[[Any], Any], Callable[[Any, Any], None]]] = {
    "random": (lambda m: m.getstate(), lambda m, v: m.setstate(v)),
    "numpy.random": (lambda m: m.get_state(), lambda m, v: m.set_state(v)),
    "control.iosys": (
        lambda m: m.InputOutputSystem._idCounter,
        lambda m, v: setattr(m.InputOutputSystem, "_idCounter", v),
    ),
}
# In a pickle, marks the globals of functions defined in a step: loaded, they use the loading step's globals
_NAMESPACE_MARK = "__nb2kfp_step_globals__"
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
            if isinstance(obj, type):
                _import_home(obj)
            by_reference = (
                isinstance(obj, (type, types.FunctionType)) and getattr(obj, "__module__", None) == "__main__"
            )
            if by_reference and shared.get(getattr(obj, "__qualname__", "")) is obj:
                return NotImplemented
            made = _ctypes_function_type(obj)
            if made is not None:
                return made
            attributes = _array_attributes(obj)
            if attributes is not None:
                rebuild, args, state = obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)[:3]
                return rebuild, args, (state, attributes), None, None, _set_array_state
            return super().reducer_override(obj)

        def _function_getnewargs(self, func: types.FunctionType) -> Any:
            args = super()._function_getnewargs(func)
            if func.__globals__ is sys.modules["__main__"].__dict__:
                args[1][_NAMESPACE_MARK] = True
            return args

    return Pickler


def _ctypes_function_type(obj: Any) -> tuple[Any, tuple[Any, ...]] | None:
    """A function type ``ctypes.CFUNCTYPE(...)`` or ``PYFUNCTYPE(...)`` made goes as that call (ctypes caches the
    types, so the receiving step gets the one it would make): cloudpickle's copy of the class by value fails."""
    ctypes = sys.modules.get("ctypes")
    if ctypes is None or type(obj).__name__ != "PyCFuncPtrType" or not isinstance(obj, type):
        return None
    maker = obj.__qualname__.removesuffix(".<locals>.CFunctionType")
    signature = (getattr(obj, "_restype_", None), *getattr(obj, "_argtypes_", ()))
    if maker == "PYFUNCTYPE":
        return ctypes.PYFUNCTYPE, signature
    if maker != "CFUNCTYPE":
        return None  # a class of the notebook's own: cloudpickle's, as before
    flags = getattr(obj, "_flags_", 0)
    errno, last_error = bool(flags & ctypes._FUNCFLAG_USE_ERRNO), bool(flags & ctypes._FUNCFLAG_USE_LASTERROR)
    return functools.partial(ctypes.CFUNCTYPE, use_errno=errno, use_last_error=last_error), signature


def _import_home(cls: type) -> None:
    """Import the module a class names when its package is imported but that module is not: cloudpickle saves a
    class whose module is not imported by value, a copy whose ``super()`` calls fail in the next step (numpy's
    ``np.recarray`` names ``numpy.rec``, which ``import numpy`` does not import). Imported, it goes by reference."""
    module = getattr(cls, "__module__", None)
    if not isinstance(module, str) or module in sys.modules or module.split(".")[0] not in sys.modules:
        return
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # not importable by that name: cloudpickle saves the class by value, as before
        log(f"class {module}.{cls.__qualname__} goes by value ({type(exc).__name__} importing {module})")


class _Unpickler(pickle.Unpickler):
    """Functions defined in notebook steps see the globals of the step they run in, as they would see the
    kernel's: a function that reads a global some later cell sets finds it when called there."""

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name)
        if module.startswith("cloudpickle.") and name == "_make_function":
            return _step_function(found)
        if module.startswith("cloudpickle.") and name == "_function_setstate":
            return _step_function_state(found)
        return found


def _step_function(make: Any) -> Any:
    def make_function(code: types.CodeType, globals_: dict[str, Any], *args: Any) -> Any:
        if globals_.get(_NAMESPACE_MARK):
            globals_ = sys.modules["__main__"].__dict__
        return make(code, globals_, *args)

    return make_function


def _step_function_state(set_state: Any) -> Any:
    def function_setstate(func: types.FunctionType, state: tuple[dict[str, Any], dict[str, Any]]) -> None:
        namespace = sys.modules["__main__"].__dict__
        if func.__globals__ is not namespace:
            return set_state(func, state)  # type: ignore[no-any-return]
        # the globals it had where it was saved fill only what this step does not have (its own values win)
        for key, value in state[1].get("__globals__", {}).items():
            namespace.setdefault(key, value)
        kept = namespace.get("__builtins__")
        set_state(func, (state[0], {**state[1], "__globals__": {}}))
        namespace["__builtins__"] = kept
        return None

    return function_setstate


_FRAMEWORKS = {"sklearn": "scikit-learn", "xgboost": "xgboost", "lightgbm": "lightgbm"}


def _framework(module: str, value: object) -> dict[str, str]:
    """For a model: the framework and version that saved it (a server must load it with the same), and its inputs."""
    dist = _FRAMEWORKS.get(module)
    if dist is None:
        return {}
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = {"framework": dist, "framework_version": version(dist)}
    except PackageNotFoundError:
        return {}
    n_features = getattr(value, "n_features_in_", None)
    if isinstance(n_features, int):
        found["n_features"] = str(n_features)
    return found


class _Declined(Exception):
    """A format's save gives the value to the next format (in the end pickle); a message, if any, is logged."""


class Format(NamedTuple):
    """How one kind of value crosses steps. ``detect(value)`` picks the format (the first in FORMATS that
    detects the value and saves it wins), ``save(value, path, shared)`` writes its file (raises _Declined
    to leave the value to the formats after it), ``load(file)`` reads it back from the file opened once by
    load_value (the verified bytes in memory for a signed value). ``runs_code``: loading unpickles, so the file is
    signed when the run has an artifact key."""

    name: str  # the "format" in the artifact's nb2kfp.json
    file: str  # its data file in the artifact folder
    detect: Callable[[Any], bool]
    save: Callable[[Any, str, dict[str, Any]], None]
    load: Callable[[IO[bytes]], object]
    runs_code: bool = False


def _module(value: object) -> str:
    return type(value).__module__.split(".")[0]


def _is_frame(value: Any) -> bool:
    return _module(value) == "pandas" and type(value).__name__ == "DataFrame" and _arrow_keeps(value)


def _save_arrow(value: Any, path: str, shared: dict[str, Any]) -> None:  # noqa: ARG001 - every format's writer takes it
    # Arrow IPC (Feather v2), uncompressed: the same Arrow data and pandas metadata (index included) as
    # parquet without parquet's encoding, about 2.6x faster here; read back memory-mapped.
    try:
        import pyarrow.feather as feather

        feather.write_feather(value, path, compression="uncompressed")
    except Exception as exc:  # no pyarrow, or columns Arrow cannot hold: fall back to pickle
        raise _Declined(f"Arrow unavailable ({type(exc).__name__}), using pickle") from None


def _load_arrow(file: IO[bytes]) -> object:
    """A frame as writable as the one the step saved (issue 29), memory-mapped from the regular file load_value
    opened (zero-copy). Arrow hands a column it holds in one piece (all
    columns of a frame under 64Ki rows, Feather's chunk) to pandas without copying it, as a read-only view of the
    memory-mapped file. With copy on write (pandas 3, or pandas 2 with ``mode.copy_on_write``) the frame keeps
    sharing the file: pandas copies a column when something first writes to it, as for any column two frames share.
    Without it, the columns are pandas' own (one block per dtype, as pandas makes them): copied once, by Arrow. The
    arrays' flags decide whether a column is read-only, whatever the pandas version."""
    import mmap

    import pyarrow as pa
    import pyarrow.feather as feather

    data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    table = feather.read_table(pa.BufferReader(pa.py_buffer(data)))
    if not _copy_on_write():
        frame = table.to_pandas(self_destruct=True)
        return frame.copy(deep=True) if _read_only(frame) else frame
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    if not _read_only(frame):
        return frame
    _SHARED_FRAMES.append(frame)  # while it lives, pandas sees its columns shared and copies one before writing
    return frame.copy(deep=False)


_SHARED_FRAMES: list[Any] = []  # the frames loaded as they were mapped (_load_arrow)


def _copy_on_write() -> bool:
    import pandas as pd

    return int(pd.__version__.split(".")[0]) >= 3 or pd.get_option("mode.copy_on_write") is True


def _read_only(frame: Any) -> bool:
    """Whether a column of the frame is backed by a read-only array (unknown: yes)."""
    arrays = getattr(getattr(frame, "_mgr", None), "arrays", None)
    if arrays is None:
        return True
    parts = ("_ndarray", "_data", "_mask")  # the arrays behind pandas' datetime and nullable columns
    return not all(
        getattr(getattr(p, "flags", None), "writeable", True)
        for array in arrays
        for p in (array, *(getattr(array, name, None) for name in parts))
    )


def _is_array(value: Any) -> bool:
    # a structured dtype with an object field holds objects too: npy without pickle cannot store it
    return _module(value) == "numpy" and type(value).__name__ == "ndarray" and not value.dtype.hasobject


def _save_npy(value: Any, path: str, shared: dict[str, Any]) -> None:  # noqa: ARG001 - every format's writer takes it
    import numpy as np

    with open(path, "wb") as fh:
        np.save(fh, value, allow_pickle=False)


def _load_npy(file: IO[bytes]) -> object:
    import numpy as np

    return np.load(file, allow_pickle=False)


def _save_joblib(value: Any, path: str, shared: dict[str, Any]) -> None:  # noqa: ARG001 - every format's writer takes it
    try:
        import joblib

        joblib.dump(value, path)
    except Exception:  # no joblib in this image, or e.g. a FunctionTransformer(lambda ...): cloudpickle saves it
        raise _Declined() from None
    if _mentions_main(path):  # code defined in the notebook: cloudpickle saves it by value
        raise _Declined()


def _load_joblib(file: IO[bytes]) -> object:
    import joblib

    return joblib.load(file)


def _save_json(value: Any, path: str, shared: dict[str, Any]) -> None:  # noqa: ARG001 - every format's writer takes it
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(value, fh)


def _load_json(file: IO[bytes]) -> object:
    return json.loads(file.read().decode("utf-8"))


def _save_pickle(value: Any, path: str, shared: dict[str, Any]) -> None:
    with open(path, "wb") as fh:
        _pickler(shared)(fh, protocol=pickle.HIGHEST_PROTOCOL).dump(value)


def _load_pickle(file: IO[bytes]) -> object:
    return _Unpickler(file).load()


def _always(value: Any) -> bool:  # noqa: ARG001 - every format's reader takes it
    return True


FORMATS = (
    Format("feather", "data.arrow", _is_frame, _save_arrow, _load_arrow),
    Format("npy", "data.npy", _is_array, _save_npy, _load_npy),
    Format("joblib", "data.joblib", lambda v: _module(v) == "sklearn", _save_joblib, _load_joblib, runs_code=True),
    Format("json", "data.json", _json_exact, _save_json, _load_json),
    Format("pickle", "data.pickle", _always, _save_pickle, _load_pickle, runs_code=True),  # the fallback: last
)
_FORMATS = {f.name: f for f in FORMATS}


def save_value(name: str, value: object, folder: str, shared: dict[str, Any], where: str = "") -> dict[str, str]:
    """Save ``value`` in ``folder``; ``where`` (the step and cell that set it) goes into errors."""
    os.makedirs(folder, exist_ok=True)
    for fmt in FORMATS:
        if not fmt.detect(value):
            continue
        path = os.path.join(folder, fmt.file)
        try:
            fmt.save(value, path, shared)
            break
        except _Declined as declined:
            if str(declined):
                log(f"{name}: {declined}")
            if os.path.exists(path):
                os.remove(path)
        except Exception as exc:
            if fmt is not FORMATS[-1]:
                raise
            raise StepFailed(_unsaveable(name, value, exc, where)) from None
    meta = {"format": fmt.name, "python_type": _type_name(value), "variable": name, **_framework(_module(value), value)}
    if _signed(fmt):
        with _open_value(name, os.path.join(folder, fmt.file)) as fh:
            meta["hmac"] = _signature(folder, meta, _sha256(fh))
    with open(os.path.join(folder, "nb2kfp.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    return meta


def _signed(fmt: Format) -> bool:
    """Whether values of this format are signed and checked: pickle-based, and the run has a key."""
    return fmt.runs_code and bool(os.environ.get(ARTIFACT_KEY_ENV))


def _open_value(name: str, path: str) -> IO[bytes]:
    """An artifact's file, opened once for reading: a regular file, never a link (O_NOFOLLOW), a FIFO or a device
    (opened without waiting for a writer, then fstat'd), so the bytes checked are the bytes loaded."""
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise StepFailed(f"refusing to load {name!r}: {path} is a symbolic link, not a regular file") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StepFailed(f"refusing to load {name!r}: {path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _sha256(file: IO[bytes]) -> str:
    import hashlib

    digest = hashlib.sha256()
    while chunk := file.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _signature(folder: str, meta: dict[str, str], digest: str) -> str:
    """HMAC-SHA256 (key from ARTIFACT_KEY_ENV) of a pickle-based value's folder, variable, format and the SHA-256
    of its file's bytes."""
    import hashlib
    import hmac

    message = "\0".join([os.path.abspath(folder), meta.get("variable", ""), str(meta["format"]), digest])
    return hmac.new(os.environ[ARTIFACT_KEY_ENV].encode(), message.encode(), hashlib.sha256).hexdigest()


def _check_signature(name: str, folder: str, meta: dict[str, str], data: bytes) -> None:
    import hashlib
    import hmac

    expected = _signature(folder, meta, hashlib.sha256(data).hexdigest())
    if not hmac.compare_digest(str(meta.get("hmac", "")), expected):
        raise StepFailed(
            f"refusing to load {name!r}: its {meta['format']} file was not written by this pipeline run (no valid "
            "nb2kfp signature), and unpickling runs code"
        )


def _arrow_keeps(df: Any) -> bool:
    """Whether Arrow gives this DataFrame back as it is: a plain index, text column labels, columns of numbers,
    dates or text. Anything else (a PeriodIndex, a DatetimeIndex with a freq, period, interval or category
    columns, text of a string dtype other than the default, int labels, columns of lists or mixed objects) goes
    by pickle."""
    import pandas as pd

    plain = (pd.RangeIndex, pd.DatetimeIndex)
    indexes = df.index.levels if isinstance(df.index, pd.MultiIndex) else [df.index]
    for index in indexes:
        if not isinstance(index, plain) and not (type(index) is pd.Index and index.dtype.kind in "biufO"):
            return False
        if getattr(index, "freq", None) is not None:  # pd.date_range sets one; Arrow drops it
            return False
    if type(df.columns) is not pd.Index or not all(type(c) is str for c in df.columns):
        return False
    for name, dtype in df.dtypes.items():
        if isinstance(dtype, pd.StringDtype) and dtype != pd.StringDtype():  # comes back as the default one
            return False
        if dtype.kind == "O":  # text stays text; lists, dicts or mixed objects would come back changed
            if pd.api.types.infer_dtype(df[name], skipna=True) not in ("string", "bytes", "empty"):
                return False
        elif dtype.kind not in "biufcmM" and str(dtype) not in ("string", "boolean"):
            return False
    return True


def _mentions_main(path: str) -> bool:
    """Whether a pickle refers to code defined in the notebook (``__main__``), which the next step lacks."""
    import mmap

    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return False
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b"__main__") >= 0


_ADVICE = {
    "generator": "turn it into a list (list(...)) or create it in the step that uses it",
    "TextIOWrapper": "hand over the file's path and open it in the step that uses it",
    "BufferedReader": "hand over the file's path and open it in the step that uses it",
    "BufferedWriter": "hand over the file's path and open it in the step that uses it",
    "lock": "create it in the step that uses it (steps run in separate processes)",
    "Connection": "create it again in the step that uses it, and hand over the data it gave you",
    "socket": "create it again in the step that uses it, and hand over the data it gave you",
}


def _unsaveable(name: str, value: object, exc: BaseException, where: str) -> str:
    kind = type(value).__name__
    advice = _ADVICE.get(kind) or next((a for k, a in _ADVICE.items() if k.lower() in kind.lower()), None)
    advice = advice or "hand over what it holds (numbers, text, lists, arrays, data frames) or create it again there"
    return (
        f"cannot hand variable {name!r} ({_type_name(value)}) {where} to the next steps "
        f"({type(exc).__name__}: {exc}): {advice}"
    )


def _missing(name: str, folder: str) -> str:
    """Why ``name``'s value was not saved (a ``missing`` value), or "" when it was."""
    with _open_value(name, os.path.join(folder, "nb2kfp.json")) as fh:
        meta = json.loads(fh.read().decode("utf-8"))
    return str(meta.get("reason", "")) if meta.get("format") == "missing" else ""


def load_value(name: str, folder: str) -> object:
    with _open_value(name, os.path.join(folder, "nb2kfp.json")) as fh:
        meta = json.loads(fh.read().decode("utf-8"))
    if meta["format"] == "missing":
        raise StepFailed(f"variable {name!r} has no value: {meta['reason']}")
    fmt = _FORMATS.get(str(meta["format"]))
    if fmt is None:
        raise StepFailed(f"cannot load {name!r}: unknown value format {str(meta['format'])[:40]!r} in its nb2kfp.json")
    with _open_value(name, os.path.join(folder, fmt.file)) as fh:
        if not _signed(fmt):
            return fmt.load(fh)
        data = fh.read()  # read once: these bytes are checked, then these bytes are unpickled
    _check_signature(name, folder, meta, data)
    import io

    return fmt.load(io.BytesIO(data))


_SHELL_PART = "IPython shell"  # the shell's settings %config changed (ast_node_interactivity), in PROCESS_STATE


def _process_state(received: dict[str, Any]) -> dict[str, Any]:
    """The process state now (PROCESS_STATE); a part as received when the step did not import its module."""
    state = {**received, **{m: get(sys.modules[m]) for m, (get, _) in _STATE_PARTS.items() if m in sys.modules}}
    if _interactivity() != "last_expr":
        state[_SHELL_PART] = {"ast_node_interactivity": _interactivity()}
    return state


def _set_process_state(state: dict[str, Any]) -> None:
    """Set each part now when its module is imported, else right after the step imports it."""
    for module, value in state.items():
        if module == _SHELL_PART and _shell() is not None:
            _shell().ast_node_interactivity = value["ast_node_interactivity"]  # type: ignore[union-attr]
        if module not in _STATE_PARTS:
            continue
        setter = _STATE_PARTS[module][1]
        if module in sys.modules:
            setter(sys.modules[module], value)
        else:
            sys.meta_path.insert(0, _OnImport(module, _setting(setter, value)))


def _setting(setter: Callable[[Any, Any], None], value: Any) -> Callable[[types.ModuleType], None]:
    return lambda module: setter(module, value)


# -- parameters -------------------------------------------------------------------------------
PARAM_PREFIX = "nb2kfp:json:"  # nb2kfp.backends.kfp_spec.argument: text KFP must not substitute
_CASTS: dict[str, Any] = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "dict": dict}


def param_value(kind: str, value: object) -> object:
    """A parameter as the notebook wrote it: lists and dicts arrive as JSON text (key order and ints
    kept), encoded text is decoded; KFP's doubles become ints again for int parameters."""
    if isinstance(value, str) and (kind in ("list", "dict") or value.startswith(PARAM_PREFIX)):
        value = json.loads(value[len(PARAM_PREFIX) :] if value.startswith(PARAM_PREFIX) else value)
        if kind in ("list", "dict"):
            return value
    return _CASTS[kind](value)


# -- IPython compatibility -------------------------------------------------------------------
class _DisplayPub:
    """``get_ipython().display_pub``: what is published is shown as ``display()`` shows it."""

    def publish(self, data: dict[str, Any], metadata: Any = None, *args: Any, **kwargs: Any) -> None:
        if _REPORT is not None:
            _REPORT.output({"output_type": "display_data", "data": data, "metadata": metadata or {}})
        else:
            print(data.get("text/plain", ""))

    def clear_output(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Events:
    """``get_ipython().events``: callbacks may register; a step runs no cells through a shell, so none fires."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callable[..., Any]]] = {}

    def register(self, event: str, function: Callable[..., Any]) -> None:
        self.callbacks.setdefault(event, []).append(function)

    def unregister(self, event: str, function: Callable[..., Any]) -> None:
        if function in self.callbacks.get(event, []):
            self.callbacks[event].remove(function)

    def trigger(self, event: str, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002 - IPython's API
        return None


_SHELL: list[IPythonShim] = []  # the step's shell stand-in, once the step runs (what every get_ipython() returns)


def _shell() -> IPythonShim | None:
    return _SHELL[0] if _SHELL else None


def _replacing(name: str, value: object, package: str) -> Callable[[types.ModuleType], None]:
    """An import hook's action: set ``name`` to ``value`` in the module just imported and in ``package``, which
    re-exports it. IPython's ``get_ipython()`` then returns the step's stand-in (it returns None without a running
    shell; libraries call the module function: ipywidgets' ``Output``, history users), and ``from IPython.display
    import display`` shows as the step's ``display`` does (IPython's prints a repr when no shell runs)."""

    def replace(module: types.ModuleType) -> None:
        setattr(module, name, value)
        reexporting = sys.modules.get(package)
        if reexporting is not None and hasattr(reexporting, name):
            setattr(reexporting, name, value)

    return replace


_SHELL_TRAITS = frozenset({"ast_node_interactivity", "history_manager", "kernel"})  # traits of ipykernel's shell


class IPythonShim:
    """What ``get_ipython()`` offers a step, however it is reached (the builtin, ``IPython.get_ipython()``,
    ``IPython.core.getipython.get_ipython()``): shell lines and the common magics, what libraries call on the shell
    (``showtraceback``, ``display_pub``, ``events``), minus the kernel."""

    ast_node_interactivity = "last_expr"  # what a cell's Out[N] shows (step reports): %config sets it

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.user_ns = namespace
        self.kernel = _NoKernel()
        self.history_manager = _History()
        self.display_pub = _DisplayPub()
        self.events = _Events()

    def showtraceback(self, exc_tuple: Any = None, *args: Any, **kwargs: Any) -> None:
        """What a kernel shows for an error a library caught (ipywidgets' ``with Output():``): its traceback."""
        exc = (exc_tuple or sys.exc_info())[1]
        if exc is not None:
            sys.stderr.write(_user_traceback(exc))

    def has_trait(self, name: str) -> bool:
        """traitlets' ``has_trait``, which libraries call to tell Jupyter from a terminal (iminuit asks for
        ``kernel``): true for the traits of Jupyter's shell the stand-in offers, as a notebook's kernel answers."""
        return name in _SHELL_TRAITS

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"get_ipython().{name} is not available in a pipeline step (no IPython kernel runs there)")

    def _expand(self, command: str) -> str:
        def repl(m: re.Match[str]) -> str:
            return str(self.user_ns[m.group(1)]) if m.group(1) in self.user_ns else m.group(0)

        return re.sub(r"\$(\w+)", repl, command)

    def system(self, command: str) -> int:
        command = self._expand(command)
        if _INSTALLERS.match(command) and not os.environ.get("NB2KFP_ALLOW_INSTALL"):
            log(f"skipped package install in a pipeline step: !{command} (set NB2KFP_ALLOW_INSTALL=1 to allow)")
            return 0
        import subprocess  # here, not at the top: a step that runs no command does without it (7 ms of ~60)

        return subprocess.run(command, shell=True, check=False).returncode

    def getoutput(self, command: str, split: bool = True, depth: int = 0) -> Any:  # noqa: ARG002, FBT001, FBT002 - IPython's API
        import subprocess

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
        if name == "timeit":
            return self._timeit(line, None)
        if name in ("time", "prun"):  # in the notebook's namespace; %time gives an expression's value
            code = magic_options(name, line)[1]
            try:
                expression = compile(code, f"<magic-{name}>", "eval") if name == "time" else None
            except SyntaxError:
                expression = None
            if expression is not None:
                return eval(expression, self.user_ns)
            exec(compile(code, f"<magic-{name}>", "exec"), self.user_ns)
            return None
        if name == "run":
            return self.run_cell_magic(RUN_MAGIC, line, "")
        if name == "config":
            return self._config(line)
        if name not in (
            "load_ext",
            "reload_ext",
            "autoreload",
            "precision",
            "xmode",
            "pinfo",
            "pinfo2",
        ):
            log(f"skipped %{name} {line}: no kernel in a pipeline step")
        return None

    def _config(self, line: str) -> None:
        """``%config InteractiveShell.ast_node_interactivity = 'all'`` (any shell class) sets what the step's report
        shows of each cell; another setting has no effect in a step: a log line says so."""
        import ast

        found = re.match(r"^\s*(\w*InteractiveShell)\.ast_node_interactivity\s*=\s*(.+?)\s*$", line)
        if found is None:
            log(f"skipped %config {line.strip()}: that setting has no effect in a pipeline step")
            return
        try:
            mode = ast.literal_eval(found.group(2))
        except (ValueError, SyntaxError):
            mode = found.group(2)
        if mode not in INTERACTIVITY:  # IPython refuses it too (a TraitError): the cell fails in the kernel
            raise ValueError(f"%config {line.strip()}: ast_node_interactivity is one of {', '.join(INTERACTIVITY)}")
        self.ast_node_interactivity = mode

    def run_cell_magic(self, name: str, line: str, cell: str) -> Any:
        import subprocess

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
        if name == "timeit":
            return self._timeit(line, cell)
        if name == "capture":
            return self._capture(line, cell)
        if name == RUN_MAGIC:
            return self._run(line, cell)
        if name in ("time", "prun"):
            exec(compile(cell, f"<magic-{name}>", "exec"), self.user_ns)
            return None
        if name not in ("html", "markdown", "latex", "svg", "javascript", "js"):
            log(f"skipped %%{name} cell: no kernel in a pipeline step")
        return None

    def _timeit(self, line: str, cell: str | None) -> Any:
        """IPython's %timeit: the code runs in a function (``inner``, its globals the notebook's), so what it
        assigns stays there; ``-o`` returns the timings, ``-v NAME`` sets them, ``-q`` prints nothing."""
        import ast
        import timeit

        opts, code = magic_options("timeit", line)
        setup, stmt = ("pass", code) if cell is None else (code or "pass", cell)
        template = ast.parse(
            "def inner(_it, _timer):\n    setup\n    _t0 = _timer()\n    for _i in _it:\n        stmt\n"
            "    _t1 = _timer()\n    return _t1 - _t0\n"
        )
        inner = template.body[0]
        assert isinstance(inner, ast.FunctionDef) and isinstance(inner.body[2], ast.For)
        inner.body[0:1] = ast.parse(setup).body
        inner.body[-3].body = ast.parse(stmt).body  # type: ignore[attr-defined]
        local: dict[str, Any] = {}
        exec(compile(ast.fix_missing_locations(template), "<magic-timeit>", "exec"), self.user_ns, local)
        timer = timeit.Timer()
        timer.inner = local["inner"]  # type: ignore[attr-defined]
        number, repeat = int(opts.get("n", 0)), int(opts.get("r", 7))
        if number == 0:  # as IPython: loops enough for 0.2 s
            number = next((10**i for i in range(10) if timer.timeit(10**i) >= 0.2), 10**9)
        result = TimeitResult(number, timer.repeat(repeat, number))
        if "q" not in opts:
            print(result)
        if "v" in opts:
            self.user_ns[opts["v"]] = result
        return result if "o" in opts else None

    def _capture(self, line: str, cell: str) -> None:
        """IPython's %%capture: the body runs in the notebook's namespace, what it prints (and displays) goes into
        a CapturedIO, set as the name on the line (unless the body ends with ';'). An error in the body ends the
        body, not the cell: its traceback is captured, as IPython does; the log says so."""
        import contextlib
        import io

        args = line.split()
        output = next((a for a in args if not a.startswith("-")), "")
        captured = CapturedIO(
            None if "--no-stdout" in args else io.StringIO(), None if "--no-stderr" in args else io.StringIO()
        )
        with contextlib.ExitStack() as stack:
            if captured.out is not None:
                stack.enter_context(contextlib.redirect_stdout(captured.out))
            if captured.err is not None:
                stack.enter_context(contextlib.redirect_stderr(captured.err))
            if "--no-display" not in args:
                _CAPTURES.append(captured.outputs)
                stack.callback(_CAPTURES.pop)
            try:
                exec(compile(cell, "<magic-capture>", "exec"), self.user_ns)
            except Exception as exc:
                traceback.print_exc(file=sys.stdout)
                log(f"%%capture: the cell's code raised {type(exc).__name__}: {exc}; as in IPython, the step goes on")
        if cell.rstrip().endswith(";"):
            self.user_ns.pop(output, None)
        elif output:
            self.user_ns[output] = captured

    def _run(self, line: str, source: str) -> None:
        """IPython's %run: a script (``source``, read when the pipeline was compiled; empty: read now) runs in a
        namespace of its own as ``__main__`` (``-n``: its own name), then its names join the notebook's; ``-i``: it
        runs in the notebook's namespace. ``sys.argv`` is the script and its arguments. An error in the script is
        shown and the cell goes on, as in IPython."""
        opts, rest = magic_options("run", line)
        args = shlex.split(rest)
        if "m" in opts:  # a module on sys.path, run as a script
            import importlib.util

            found = importlib.util.find_spec(opts["m"])
            if found is None or not found.origin:
                raise StepFailed(f"%run -m: {opts['m']!r} is not a valid module name on sys.path")
            args = [found.origin, *args]
        if not args:
            raise StepFailed("%run: you must provide at least a filename")
        filename = args[0]
        if not source:
            with open(filename, encoding="utf-8") as fh:
                source = fh.read()
        name = os.path.splitext(os.path.basename(filename))[0] if "n" in opts else "__main__"
        namespace: dict[str, Any] = self.user_ns if "i" in opts else {"__builtins__": builtins}
        kept_name = self.user_ns.get("__name__")
        namespace.update({"__name__": name, "__file__": filename})
        argv, sys.argv = sys.argv, [filename, *args[1:]]
        try:
            exec(compile(source, filename, "exec"), namespace)
        except SystemExit as exc:
            if exc.code not in (0, None) and "e" not in opts:
                log(f"%run {filename}: the script exited ({_exit_call(exc)})")
        except Exception as exc:
            traceback.print_exc()
            log(f"%run {filename}: the script raised {type(exc).__name__}: {exc}; as in IPython, the step goes on")
        finally:
            sys.argv = argv
        if "i" in opts:  # the notebook keeps the script's __file__, as in IPython
            self.user_ns["__name__"] = kept_name
            return
        namespace.pop("__name__", None)
        namespace.pop("__file__", None)
        namespace.pop("__builtins__", None)
        self.user_ns.update(namespace)


RUN_MAGIC = "nb2kfp_run"  # %run with the script's source (frontend/magics.py): run_cell_magic(RUN_MAGIC, line, source)
_MAGIC_OPTIONS = {"timeit": "n:r:tcp:qov:", "time": "", "prun": "D:l:rs:T:q", "run": "nidtN:b:pD:l:rs:T:em:G"}


def magic_options(name: str, line: str) -> tuple[dict[str, str], str]:
    """The options at the start of a magic's line (IPython's, as getopt reads them) and the rest of the line as it
    is (the code to run, or the script and its arguments). Raises ValueError on an option the magic lacks."""
    import getopt

    if not _MAGIC_OPTIONS[name]:
        return {}, line
    tokens = list(re.finditer(r"\S+", line))
    try:
        opts, rest = getopt.getopt([t.group() for t in tokens], _MAGIC_OPTIONS[name])
    except getopt.GetoptError as exc:
        raise ValueError(f"%{name}: {exc}") from None
    used = len(tokens) - len(rest)
    start = tokens[used].start() if used < len(tokens) else len(line)
    return {k.lstrip("-"): v for k, v in opts}, line[start:]


class TimeitResult:
    """What ``%timeit -o`` returns: the loops, the runs' times, the best and worst per loop, the average."""

    def __init__(self, loops: int, all_runs: list[float]) -> None:
        self.loops, self.repeat, self.all_runs = loops, len(all_runs), all_runs
        self.timings = [t / loops for t in all_runs]
        self.best, self.worst = min(self.timings), max(self.timings)
        self.average = sum(self.timings) / len(self.timings)
        self.stdev = (sum((t - self.average) ** 2 for t in self.timings) / len(self.timings)) ** 0.5

    def __repr__(self) -> str:
        runs = f"{self.repeat} run{'s' if self.repeat != 1 else ''}"
        loops = f"{self.loops} loop{'s' if self.loops != 1 else ''}"
        return f"{self.average:.3g} s ± {self.stdev:.3g} s per loop (mean ± std. dev. of {runs}, {loops} each)"


class CapturedIO:
    """What ``%%capture out`` sets: ``out.stdout``, ``out.stderr``, ``out.outputs`` (what display() showed),
    ``out.show()`` (or ``out()``) shows them."""

    def __init__(self, out: Any, err: Any) -> None:
        self.out, self.err, self.outputs = out, err, list[object]()

    @property
    def stdout(self) -> str:
        return self.out.getvalue() if self.out is not None else ""

    @property
    def stderr(self) -> str:
        return self.err.getvalue() if self.err is not None else ""

    def show(self) -> None:
        sys.stdout.write(self.stdout)
        sys.stderr.write(self.stderr)
        _display(*self.outputs)

    __call__ = show


_CAPTURES: list[list[object]] = []  # the outputs of the %%capture cells running (innermost last)


class _NoKernel:
    """``get_ipython().kernel``: the calls notebooks make (a restart after installs) do nothing; anything
    else says there is no kernel, in the cell that asked."""

    def do_shutdown(self, restart: bool = False) -> None:  # noqa: FBT001, FBT002 - IPython's API
        log(f"skipped kernel {'restart' if restart else 'shutdown'}: no kernel in a pipeline step")

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"get_ipython().kernel.{name} is not available in a pipeline step (there is no kernel): "
            "leave it out of the step, or tag the cell skip"
        )


class _History:
    """``get_ipython().history_manager``: a step has no input history."""

    def get_range(self, *args: object, **kwargs: object) -> Any:
        return iter(())

    get_tail = search = get_range


class DisplayHandle:
    """What ``display(..., display_id=...)`` returns in Jupyter: updates print again."""

    def __init__(self, display_id: str) -> None:
        self.display_id = display_id

    def display(self, obj: object, **kwargs: object) -> None:
        _display(obj)

    def update(self, obj: object, **kwargs: object) -> None:
        _display(obj)

    def clear(self) -> None:
        pass


def _display(*objs: object, display_id: object = None, **_: object) -> DisplayHandle | None:
    for obj in objs:
        if _CAPTURES:
            _CAPTURES[-1].append(obj)
        elif _REPORT is not None:
            _REPORT.display(obj)
        else:
            print(obj)
    if display_id:
        return DisplayHandle(str(display_id) if display_id is not True else f"nb2kfp-{id(objs)}")
    return None


class _OnImport:
    """Runs ``then(module)`` right after the step first imports module ``name`` (if it does at all)."""

    def __init__(self, name: str, then: Callable[[types.ModuleType], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: Any = None, target: object = None) -> Any:  # noqa: ARG002 - the importlib finder API
        if fullname != self.name:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            original(module)
            self.then(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _patch_show(pyplot: types.ModuleType) -> None:
    """``pyplot.show`` takes what Jupyter's inline backend takes (``plt.show(fig)``), and in a reported step puts
    the figures in the report. Steps draw with Agg; ``MPLBACKEND`` (also what child processes see) stays a
    standard backend."""
    original_show = pyplot.show

    def show(*args: object, **kwargs: Any) -> None:
        if _REPORT is not None:
            _REPORT.figures()
        else:
            original_show(**kwargs)

    pyplot.show = show  # type: ignore[attr-defined]


def _matplotlib_backend() -> None:
    """The step's import hooks: matplotlib draws with Agg and ``plt.show`` as inline; IPython's ``get_ipython``
    returns the step's stand-in and its ``display`` is the step's. Set once, before the step (or a process started
    ahead) imports anything."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    if not any(isinstance(f, _OnImport) and f.name == "matplotlib.pyplot" for f in sys.meta_path):  # not warm
        sys.meta_path.insert(0, _OnImport("matplotlib.pyplot", _patch_show))
    for name, patch in (
        ("IPython.core.getipython", _replacing("get_ipython", _shell, "IPython")),
        ("IPython.core.display_functions", _replacing("display", _display, "IPython.display")),
    ):
        if name in sys.modules:
            patch(sys.modules[name])
        elif not any(isinstance(f, _OnImport) and f.name == name for f in sys.meta_path):
            sys.meta_path.insert(0, _OnImport(name, patch))


# -- the step --------------------------------------------------------------------------------
NOT_SEEDED = (".nb2kfp", ".git", ".ipynb_checkpoints", "__pycache__")


def _enter_workdir(step: str) -> list[str]:
    """One rule for files, locally and on KFP (README, "Files"): a step runs in the run's workspace when the
    pipeline has one (shared by its steps), else in a folder of its own (on KFP: its pod's). A local run
    (``NB2KFP_STEP_DIRS``: where each step's folder goes, ``NB2KFP_SEED``: the notebook's folder) seeds
    the folder with links to what is next to the notebook; on KFP a workspace gets links to what the image's
    working directory holds (unless that is ``/``), so files baked into the image stay readable. Returns
    the links made."""
    workspace = os.environ.get("NB2KFP_WORKSPACE")
    step_dirs = os.environ.get(STEP_DIRS_ENV)
    target = workspace or (os.path.join(step_dirs, step) if step_dirs else "")
    if not target:
        return []  # KFP without a workspace: the pod's own working directory
    os.makedirs(target, exist_ok=True)
    made = []
    seed = os.environ.get(SEED_ENV) or (os.getcwd() if workspace and os.getcwd() != os.sep else "")
    if seed and os.path.isdir(seed):
        inside = os.path.realpath(target) + os.sep
        for entry in sorted(os.listdir(seed)):
            source, link = os.path.join(seed, entry), os.path.join(target, entry)
            if entry in NOT_SEEDED or inside.startswith(os.path.realpath(source) + os.sep) or os.path.lexists(link):
                continue
            os.symlink(source, link)
            made.append(link)
    os.chdir(target)
    return made


# Modules whose folder listings find modules and their metadata (sys.path holds the step's folder), and glob's (a
# pattern's matches are recorded instead): not a step's dependency on a folder's listing
_IMPORT_SYSTEM = {"_frozen_importlib", "_frozen_importlib_external", "importlib", "pkgutil", "pkg_resources", "glob"}


class _Reads:
    """What a step of a local run opened to read or listed next to the notebook (its cache entry depends on them,
    nb2kfp.local_run.cache): paths relative to the notebook's folder, found by an audit hook. A name the step
    opened that its folder lacks counts too (made later, it re-runs the step); what it opened in its own folder, in
    the run folder, outside the notebook's folder, and the import system's folder listings (:data:`_IMPORT_SYSTEM`)
    do not."""

    def __init__(self, seed: str, here: str) -> None:
        self.seed, self.here = os.path.realpath(seed), os.path.abspath(here)
        self.run = os.path.realpath(os.path.dirname(os.environ.get(STEP_DIRS_ENV) or here))
        self.files: set[str] = set()
        self.listed: set[str] = set()
        self.globbed: set[tuple[str, bool]] = set()  # glob.glob's patterns: the names they match, not the listing
        sys.addaudithook(self.audit)

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1] or "", args[2] or 0
            if "r" in mode or "+" in mode or (not mode and flags & (os.O_WRONLY | os.O_RDWR) != os.O_WRONLY):
                self._add(self.files, args[0])
        elif event in ("os.listdir", "os.scandir") and not isinstance(args[0], int):
            caller = str(sys._getframe(1).f_globals.get("__name__"))
            if caller.split(".")[0] not in _IMPORT_SYSTEM:  # looking for modules or their metadata, not for data
                self._add(self.listed, "." if args[0] is None else args[0])
        elif event == "glob.glob/2" and isinstance(args[0], str) and args[3] is None:
            full = os.path.join(os.path.abspath(args[2] or "."), args[0])
            for folder in (self.here, self.seed):
                if full.startswith(folder + os.sep):
                    self.globbed.add((full[len(folder) + 1 :], bool(args[1])))
                    break

    def _add(self, found: set[str], path: str | bytes | os.PathLike[str]) -> None:
        try:
            full = os.path.abspath(os.fsdecode(path))
            real = os.path.realpath(full)
        except ValueError:  # a NUL in the name: the open fails
            return
        if full == self.here or (full.startswith(self.here + os.sep) and not os.path.lexists(full)):
            name = os.path.relpath(full, self.here)  # its folder's listing; a name it looked for, missing
        elif real.startswith(self.seed + os.sep) and not (real + os.sep).startswith(self.run + os.sep):
            name = os.path.relpath(real, self.seed)  # not the run's own folders (in .nb2kfp, or a --run-dir)
        elif real == self.seed:
            name = "."
        else:
            return
        parts = name.split(os.sep)
        if "__pycache__" in parts[:-1] and name.endswith(".pyc"):  # a module's compiled code: its source
            parts = [*parts[: parts.index("__pycache__")], parts[-1].split(".")[0] + ".py"]
        if parts[0] not in NOT_SEEDED:
            found.add(os.path.join(*parts))

    def write(self, folder: str, step: str) -> None:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, step + ".json"), "w", encoding="utf-8") as fh:
            json.dump({"files": sorted(self.files), "listed": sorted(self.listed), "globbed": sorted(self.globbed)}, fh)


def _labelled(spec: dict[str, Any], part: str) -> list[tuple[str, str, bool]]:
    """The ``cells`` or ``prelude`` of the spec as (label, source, may raise): the label names the notebook cell
    (``nb.ipynb, cell 7``) when the run says which cell each rank is (``NB2KFP_CELLS``, a local run),
    else the step and the rank (``nb.ipynb, step train, cell 2``): the spec itself holds no cell numbers."""
    notebook = spec["notebook"]
    try:
        numbers = json.loads(os.environ.get(CELLS_ENV) or "{}").get(spec["step"], {}).get(part, [])
    except (ValueError, AttributeError):
        numbers = []
    out = []
    for rank, source, *flags in spec.get(part, []):
        if 0 < rank <= len(numbers):
            label = f"{notebook}, cell {numbers[rank - 1]}"
        else:
            label = f"{notebook}, {'step ' + spec['step'] if part == 'cells' else 'imports/functions'}, cell {rank}"
        out.append((label, source, bool(flags and flags[0])))
    return out


def _run_cells(cells: list[tuple[str, str, bool]], namespace: dict[str, Any], *, shown: bool = False) -> None:
    """``shown``: the cells go into the step's report (when it has one). A cell tagged raises-exception may raise:
    as nbclient and papermill do, its error is shown as its output and the next cell runs."""
    for filename, source, may_raise in cells:
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        if shown and _REPORT is not None:
            _REPORT.start(filename, source)
        if shown and _WARM_SHOWN:  # its leading imports ran ahead (warm): what they printed, as the cell's own
            for name, text in _WARM_SHOWN:
                (sys.stdout if name == "stdout" else sys.stderr).write(text)
            _WARM_SHOWN.clear()
        # the values a kernel shows as Out[N] (the last expression, or what %config ast_node_interactivity asks)
        # go through sys.displayhook from the parts compiled in "single" mode, as in IPython
        pending = _displayed(source, filename) if shown and _REPORT is not None else []
        pending = pending or [compile(source, filename, "exec")]
        while pending:
            saved, sys.displayhook = sys.displayhook, _show_result
            try:
                exec(pending.pop(0), namespace)
            except ModuleNotFoundError as exc:
                retry = _after_gui_call(exc, source, filename)
                pending = [retry] if retry is not None else []
                if retry is None and not may_raise:
                    raise
                if retry is None:
                    _expected(exc, filename)
            except Exception as exc:
                if not may_raise:
                    raise
                _expected(exc, filename)
                pending = []
            finally:
                sys.displayhook = saved
        if shown and _REPORT is not None:
            _REPORT.figures()


INTERACTIVITY = ("all", "last", "last_expr", "none", "last_expr_or_assign")  # IPython's ast_node_interactivity


def _interactivity() -> str:
    """IPython's ``ast_node_interactivity``: set with ``%config InteractiveShell.ast_node_interactivity = 'all'`` or
    ``get_ipython().ast_node_interactivity = ...`` (the shell stand-in's), or on IPython's class itself (``from
    IPython.core.interactiveshell import InteractiveShell; InteractiveShell.ast_node_interactivity = 'all'``: the
    class attribute then replaces the trait, and wins in IPython too)."""
    module = sys.modules.get("IPython.core.interactiveshell")
    on_class = getattr(module, "InteractiveShell", type).__dict__.get("ast_node_interactivity")
    if isinstance(on_class, str) and on_class in INTERACTIVITY:
        return on_class
    shell = _shell()
    return shell.ast_node_interactivity if shell is not None else "last_expr"


def _displayed(source: str, filename: str) -> list[types.CodeType]:
    """A cell's code in parts, as IPython runs it: the statements whose values it shows (``df.head()``, and with
    ``ast_node_interactivity`` "all" every statement) compiled in "single" mode, which hands an expression's value
    to sys.displayhook; the others in "exec" mode. [] when the cell shows nothing (no such statement, a cell
    ending in ``;``, a syntax error: compiled whole, it raises where the kernel does)."""
    import ast

    try:
        tree = ast.parse(source, filename)
    except SyntaxError:
        return []
    mode, body = _interactivity(), list(tree.body)
    if not body or source.rstrip().endswith(";") or mode == "none":
        return []
    last = body[-1]
    if mode == "last_expr_or_assign" and isinstance(last, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = last.targets if isinstance(last, ast.Assign) else [last.target]
        if len(targets) == 1 and isinstance(targets[0], ast.Name):  # IPython shows the value just assigned
            shown = ast.Expr(ast.Name(targets[0].id, ast.Load()))
            body.append(ast.fix_missing_locations(ast.copy_location(shown, last)))
    if mode == "all":
        split = 0
    elif mode == "last" or isinstance(body[-1], ast.Expr):
        split = len(body) - 1
    else:
        return []
    parts = [compile(ast.Module(body=body[:split], type_ignores=[]), filename, "exec")] if split else []
    parts.extend(compile(ast.Interactive(body=[node]), filename, "single") for node in body[split:])
    return parts


def _show_result(value: object) -> None:
    """sys.displayhook while a cell runs: a value a "single" part hands it is the cell's result (Out[N]) in the
    step's report; None is not shown, as in IPython."""
    if value is not None and _REPORT is not None:
        _REPORT.display(value, result=True)


def _expected(exc: BaseException, filename: str) -> None:
    """A raises-exception cell's error: its traceback as the cell's output (stderr, the report), and a log line."""
    sys.stderr.write(_user_traceback(exc))
    log(f"{filename} raised {type(exc).__name__} as its raises-exception tag expects: the step goes on")


_GUI_TOOLKITS = frozenset({"PySide6", "PySide2", "PyQt6", "PyQt5", "PyQt4", "wx", "gi"})


def _after_gui_call(exc: ModuleNotFoundError, source: str, filename: str) -> types.CodeType | None:
    """A call whose value the cell only shows that opens a GUI (iminuit's ``m.interactive()``: a widget in a
    Jupyter kernel, a Qt window elsewhere) and fails for want of a GUI toolkit: as in the kernel it changes no
    variable, so it is skipped with a log line and the cell goes on after it. Returns the rest of the cell's
    code, or None when that is not the case."""
    import ast

    if (exc.name or "").split(".")[0] not in _GUI_TOOLKITS:
        return None
    line = next((f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename), None)
    if line is None:
        return None
    tree = ast.parse(source, filename)
    for index, stmt in enumerate(tree.body):
        if stmt.lineno <= line <= (stmt.end_lineno or stmt.lineno):
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
                return None
            call = ast.unparse(stmt.value)
            log(
                f"skipped {call[:80]} in {filename}, line {stmt.lineno}: it opens an interactive GUI (a widget in "
                f"a Jupyter kernel; here it needs {exc.name!r}, and a pipeline step has no display); the step goes on"
            )
            return compile(ast.Module(body=tree.body[index + 1 :], type_ignores=[]), filename, "exec")
    return None


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the notebook's cells down, without the runtime's own frames."""
    own = {RUNTIME_FILE, "<string>", globals().get("__file__")}
    tb = traceback.TracebackException.from_exception(exc)
    tb.stack = traceback.StackSummary.from_list([f for f in tb.stack if f.filename not in own])
    return "".join(tb.format())


def _cell_of(exc: BaseException, notebook: str) -> tuple[str, int | None]:
    """The notebook cell (its traceback file name) and line the exception came from, innermost first."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(f"{notebook}, ")]
    return (frames[-1].filename, frames[-1].lineno) if frames else ("", None)


def _exit_call(exc: SystemExit) -> str:
    return f"sys.exit({'' if exc.code is None else repr(exc.code)})"


def _setter(name: str, cells: list[tuple[str, str, bool]]) -> str:
    """The last cell of the step that assigns ``name`` (for messages about its value)."""
    import ast

    for label, source, _ in reversed(cells):
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            stored = isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id == name
            defined = isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and node.name == name
            if stored or defined:
                return label
    return "an input it changed"


def _save_missing(name: str, folder: str, reason: str) -> dict[str, str]:
    """A value the step never set because it stopped early: a step reading it fails saying why."""
    os.makedirs(folder, exist_ok=True)
    meta = {"format": "missing", "python_type": "", "variable": name, "reason": reason}
    with open(os.path.join(folder, "nb2kfp.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh)
    return meta


def run(executor_input: dict[str, Any], spec: dict[str, Any]) -> None:
    started = time.monotonic()
    step, notebook = spec["step"], spec["notebook"]
    inputs = executor_input.get("inputs", {})
    outputs = executor_input.get("outputs", {})
    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace.update({"__builtins__": builtins, "get_ipython": None, "display": _display})
    _SHELL[:] = [IPythonShim(namespace)]
    namespace["get_ipython"] = _shell
    sys.modules["__main__"] = module
    _matplotlib_backend()
    values = inputs.get("parameterValues", {})
    if spec.get("workspace_param") in values:  # the run's shared workspace volume
        # a local run keeps it in the run folder (kfp.local deletes its own workspace folder after a run)
        kept = os.environ.get(LOCAL_WORKSPACE_ENV)
        os.environ["NB2KFP_WORKSPACE"] = kept or str(values[spec["workspace_param"]])
    seeded = _enter_workdir(step)
    reads_to, seed = os.environ.get(READS_ENV), os.environ.get(SEED_ENV)
    reads = _Reads(seed, os.getcwd()) if reads_to and seed else None
    _set_params(spec, values, namespace)
    stopped = ""
    cells = _labelled(spec, "cells")
    state: dict[str, Any] = {}  # the process state received (PROCESS_STATE)
    try:
        _run_cells(_labelled(spec, "prelude"), namespace)
        state = _load_inputs(spec, inputs, namespace)
        _run_cells(cells, namespace, shown=True)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
        # like papermill: an exit with 0 or None ends the step cleanly; what it set is handed on
        stopped = f"step {step!r} stopped by {_exit_call(exc)} in {_cell_of(exc, notebook)[0] or 'its code'}"
        log(f"{stopped}: the values it set are handed on, the others are missing")
    out_artifacts = _save_outputs(spec, namespace, outputs, state, stopped, cells)
    if spec.get("metrics"):
        out_artifacts.update(_metrics(spec, namespace, outputs, stopped))
    if _REPORT is not None:
        out_artifacts[_REPORT.key] = _REPORT.write(outputs)
    _write_executor_output(outputs, out_artifacts, _exports(spec, namespace, outputs, out_artifacts))
    for link in seeded:  # what stays in the working directory is what the step wrote
        if os.path.islink(link):
            os.unlink(link)
    if reads is not None and reads_to:
        reads.write(reads_to, step)
    log(f"step {step!r} done in {time.monotonic() - started:.2f}s")


def _set_params(spec: dict[str, Any], values: dict[str, Any], namespace: dict[str, Any]) -> None:
    """The pipeline parameters the step reads, into its namespace."""
    for name, kind in spec.get("params", {}).items():
        if name in spec.get("optional", ()) and values.get(name) in ("", None):
            namespace[name] = None  # papermill's `x = None`: no value given (an empty text in the KFP UI)
        elif name in values:
            namespace[name] = param_value(kind, values[name])
        else:
            raise StepFailed(f"pipeline parameter {name!r} was not passed to step {spec['step']!r}")


def _load_inputs(spec: dict[str, Any], inputs: dict[str, Any], namespace: dict[str, Any]) -> dict[str, Any]:
    """The values the step receives, into its namespace only: no other reference may stay (a frame the notebook
    rebinds, `df = df.dropna()`, must be garbage as in a kernel, or pandas warns); the process state received
    (PROCESS_STATE), set in this process and returned."""
    state: dict[str, Any] = {}
    for name, key in spec.get("inputs", {}).items():
        uri = inputs["artifacts"][key]["artifacts"][0]["uri"]
        if name == PROCESS_STATE:
            state = load_value(name, local_path(uri))  # type: ignore[assignment]
            _set_process_state(state)
        elif name in spec.get("carried_in", ()) and (why := _missing(name, local_path(uri))):
            log(f"{name!r} is not here ({why}): only a function that reads it needs it, and fails if called")
        else:
            namespace[name] = load_value(name, local_path(uri))
    for name, key in spec.get("paths", {}).items():  # a catalog component's output artifact: its local path
        namespace[name] = local_path(inputs["artifacts"][key]["artifacts"][0]["uri"])
    return state


def _save_outputs(
    spec: dict[str, Any],
    namespace: dict[str, Any],
    outputs: dict[str, Any],
    state: dict[str, Any],
    stopped: str,
    cells: list[tuple[str, str, bool]],
) -> dict[str, Any]:
    """Each value a later step reads, saved as its output artifact (``cells``: the step's, which name the cell that
    set it); the executor output's artifacts."""
    step = spec["step"]
    shared = {n: namespace[n] for n in spec.get("shared", []) if n in namespace}
    out_artifacts: dict[str, Any] = {}
    for name, key in spec.get("outputs", {}).items():
        artifact = outputs["artifacts"][key]["artifacts"][0]
        if name == PROCESS_STATE:
            meta = save_value(name, _process_state(state), local_path(artifact["uri"]), shared)
        elif name not in namespace and stopped:
            meta = _save_missing(name, local_path(artifact["uri"]), f"{stopped} before setting it")
        elif name not in namespace:
            raise StepFailed(f"step {step!r} did not set {name!r}, which a later step reads")
        else:
            where = f"from step {step!r} ({_setter(name, cells)})"
            try:
                meta = save_value(name, namespace[name], local_path(artifact["uri"]), shared, where)
            except StepFailed as exc:
                if name not in spec.get("carried_out", ()):
                    raise
                # later steps receive it only in case a function they get reads it (VariableEdge.carried)
                log(f"{exc}; left out: later steps receive it only for a function that may read it")
                meta = _save_missing(name, local_path(artifact["uri"]), str(exc))
        out_artifacts[key] = {
            "artifacts": [{"name": artifact.get("name", key), "uri": artifact["uri"], "metadata": meta}]
        }
    return out_artifacts


def _write_executor_output(outputs: dict[str, Any], out_artifacts: dict[str, Any], out_params: dict[str, Any]) -> None:
    """The executor output file kfp.local and KFP's launcher read: strict JSON (their protojson refuses NaN and
    Infinity)."""
    output_file = outputs.get("outputFile")
    if not output_file:
        return
    os.makedirs(os.path.dirname(output_file) or ".", exist_ok=True)
    executor_output = {"artifacts": out_artifacts, **({"parameterValues": out_params} if out_params else {})}
    try:
        text = json.dumps(executor_output, allow_nan=False)
    except ValueError:
        raise StepFailed(
            "an output of the step is NaN or infinite, which KFP cannot record: "
            + ", ".join(sorted(k for k, v in out_params.items() if not _finite(v)) or ["artifact metadata"])
        ) from None
    with open(output_file, "w", encoding="utf-8") as fh:
        fh.write(text)


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
            import shutil

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


def _finite(value: object) -> bool:
    """Whether JSON without NaN/Infinity can hold ``value``."""
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):
        return False
    return True


def _metrics(spec: dict[str, Any], namespace: dict[str, Any], outputs: dict[str, Any], stopped: str) -> dict[str, Any]:
    """KFP metrics are numbers (system.Metrics); a str value is a text metric, shown with the numbers in the step's
    system.Markdown table. Any other value is logged here and left out, never a failure. The metrics file holds
    both (``{name: number or str}``) and what ``print`` shows of each number (``{"print:name": str}``, for the
    executed notebook's pipeline-metrics cell): ``run --local`` reads it."""
    values: dict[str, float] = {}
    texts: dict[str, str] = {}
    printed: dict[str, str] = {}  # what print(name) shows of each number (5, not 5.0; a float32's digits)
    for name in spec["metrics"]:
        if name not in namespace and stopped:
            log(f"metric {name!r} is not set: {stopped} before setting it")
            continue
        if name not in namespace:
            raise StepFailed(f"metric {name!r} is not set at the end of step {spec['step']!r}")
        value = namespace[name]
        if isinstance(value, str):
            texts[name] = value
            continue
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            shown = repr(value) if len(repr(value)) <= 200 else repr(value)[:200] + "..."
            log(f"metric {name!r} is a {type(value).__name__} ({shown}), not a number or text: left out of the metrics")
            continue
        if math.isfinite(number):
            values[name] = number
            printed[PRINTED_METRIC + name] = str(value)
        else:  # KFP's launcher parses the output metadata with protojson, which has no NaN or Infinity
            log(f"metric {name!r} is {number}: KFP metrics are finite numbers, left out of the metrics")
    artifacts = {}
    for key, content, metadata in (
        (spec["metrics_key"], json.dumps({**values, **texts, **printed}), values),
        (spec["metrics_text_key"], _markdown_table(spec["metrics"], {**values, **texts}), texts),
    ):
        artifact = outputs["artifacts"][key]["artifacts"][0]
        path = local_path(artifact["uri"])
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(content)
        artifacts[key] = {
            "artifacts": [{"name": artifact.get("name", key), "uri": artifact["uri"], "metadata": metadata}]
        }
    return artifacts


def _markdown_table(names: list[str], values: dict[str, float | str]) -> str:
    """The metrics as a Markdown table (a metric left out reads "not recorded": the step's log says why)."""

    def cell(text: str) -> str:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
        return "<br>".join(text.splitlines()) or " "

    rows = []
    for name in names:
        value = values.get(name)
        shown = (
            "*not recorded (see the step's log)*"
            if value is None
            else cell(value if isinstance(value, str) else f"{value:.12g}")
        )
        rows.append(f"| {cell(name)} | {shown} |")
    return "\n".join(["| metric | value |", "| --- | --- |", *rows]) + "\n"


ATTEMPT_ENV = "NB2KFP_ATTEMPT"  # set in each attempt of a step with retries (retry:N)


# Runs a Python command, ``python -c CODE ARGS...`` or ``python SCRIPT.py ARGS...``, as Python would: HEAD is
# ``["-c", CODE]`` or ``[SCRIPT.py]``. The launchers (here and in nb2kfp.local_run.processes) read HEAD and ARGS, then
# run this: a step's arguments (its executor input: every parameter) never go on a command line ``ps`` shows.
RUN_COMMAND = (
    "if head[0] == '-c':\n"
    "    sys.argv = ['-c', *args]\n"
    "    exec(compile(head[1], '<string>', 'exec'), {'__name__': '__main__'})\n"
    "else:\n"
    "    import runpy\n"
    "    sys.argv = [head[0], *args]\n"
    "    sys.path[0] = os.path.dirname(os.path.realpath(head[0]))\n"
    "    runpy.run_path(head[0], run_name='__main__')\n"
)
# Run as ``python -c ENV_LAUNCHER HEAD...`` with the environment of :func:`launcher_env`: ARGS come in it (a
# process's environment is readable by its own user only).
ENV_LAUNCHER = (
    "# nb2kfp step: its arguments came in its environment, not on the command line (nb2kfp.runtime.step)\n"
    "import os, sys\n"
    "head = sys.argv[1:]\n"
    "args = [os.environ.pop(f'NB2KFP_ARG_{i}') for i in range(int(os.environ.pop('NB2KFP_ARGC')))]\n" + RUN_COMMAND
)


def launcher_env(args: list[str]) -> dict[str, str]:
    """The environment that hands ``args`` to :data:`ENV_LAUNCHER`."""
    return {"NB2KFP_ARGC": str(len(args)), **{f"NB2KFP_ARG_{i}": arg for i, arg in enumerate(args)}}


def _self_command(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """A command and environment that run this runtime again with ``argv``'s arguments (through
    :data:`ENV_LAUNCHER`): from the ``--runtime`` artifact the bootstrap read it from, else from this file (a step
    image's copy)."""
    if "--runtime" in argv:
        head = [
            "-c",
            "import sys\n"
            "with open(sys.argv[sys.argv.index('--runtime') + 1], 'rb') as fh:\n"
            "    source = fh.read()\n"
            f"exec(compile(source, {RUNTIME_FILE!r}, 'exec'), {{'__name__': '__main__'}})\n",
        ]
    else:
        head = [os.path.abspath(globals()["__file__"])]
    return [sys.executable, "-c", ENV_LAUNCHER, *head], launcher_env(argv[1:])


def _with_retries(argv: list[str], spec: dict[str, Any]) -> int:
    """``retry:N``: the step's code runs up to N+1 times, each attempt a fresh process (nothing a failed attempt set
    is kept), 1 s, 2 s, 4 s ... (at most 60 s) apart; the last attempt's outputs are the step's. Done here, in the
    pod, because KFP cannot ask Argo to retry a failed exit code: the task's retryPolicy has no retry-policy field,
    and KFP 2.17's default install gives every template ``retryPolicy: OnError`` (kubeflow/pipelines 2.17.0
    manifests/kustomize/third-party/argo/base/workflow-controller-configmap-patch.yaml:57-59), which retries pod
    errors, never a Python exception."""
    import subprocess

    retries = int(spec["retries"])
    code = 1
    for attempt in range(1, retries + 2):
        command, args_env = _self_command(argv)
        code = subprocess.call(command, env={**os.environ, **args_env, ATTEMPT_ENV: str(attempt)})
        if code == 0 or code in (-2, -15, 130, 143):  # done, or stopped by a signal: no retry
            return code
        if attempt <= retries:
            delay = min(2 ** (attempt - 1), 60)
            log(f"step {spec['step']!r} failed (attempt {attempt} of {retries + 1}): trying again in {delay} s")
            time.sleep(delay)
    log(f"step {spec['step']!r} failed {retries + 1} times (retry:{retries})")
    return code


def main(argv: list[str]) -> int:
    global _REPORT
    executor_input = json.loads(argv[argv.index("--executor-input") + 1])
    spec = json.loads("".join(argv[argv.index("--spec") + 1 :]))
    if spec.get("retries") and ATTEMPT_ENV not in os.environ:
        return _with_retries(argv, spec)
    if spec.get("report"):
        _REPORT = _Report(spec)
    try:
        run(executor_input, spec)
    except StepFailed as exc:
        log(f"step {spec['step']!r} failed: {exc}")
        return _failed(executor_input, exc)
    except BaseException as exc:
        if isinstance(exc, SystemExit) and exc.code in (0, None):
            return 0
        sys.stderr.write(_user_traceback(exc))
        cell, line = _cell_of(exc, spec["notebook"])
        where = f" in {cell}, line {line}" if cell else ""
        what = _exit_call(exc) if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        log(f"step {spec['step']!r} failed{where}: {what}")
        return _failed(executor_input, exc)
    return 0


def _failed(executor_input: dict[str, Any], exc: BaseException) -> int:
    """A failed step's report still shows its cells up to the error (the run folder keeps it)."""
    if _REPORT is not None and _REPORT.cells:
        _REPORT.error(exc)
        try:
            _REPORT.write(executor_input.get("outputs", {}))
        except Exception as problem:  # the step's own error is what matters; say why there is no report
            log(f"no report: {type(problem).__name__}: {problem}")
    return 1


# -- the step's report: what its cells show, as an executed notebook -------------------------------
class _Tee:
    """sys.stdout/sys.stderr that also records what the cells print."""

    def __init__(self, stream: Any, name: str, report: _Report) -> None:
        self.stream, self.name, self.report = stream, name, report

    def write(self, text: str) -> int:
        self.report.output({"output_type": "stream", "name": self.name, "text": text})
        return int(self.stream.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


_MIME = {"_repr_html_": "text/html", "_repr_markdown_": "text/markdown", "_repr_svg_": "image/svg+xml"}
_MIME |= {"_repr_png_": "image/png", "_repr_jpeg_": "image/jpeg", "_repr_latex_": "text/latex"}

# Step pages show outputs made from data (display(df.style) over a CSV someone else wrote): whatever HTML they hold,
# no script runs and nothing is fetched when a page is opened. Styles inline, images as data: URIs (nbconvert's own).
REPORT_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; base-uri 'none'; form-action 'none'"
)
_DOCTYPE = re.compile(r"\s*<!doctype[^>]*>", re.IGNORECASE)


def with_policy(page: str) -> str:
    """An HTML page with REPORT_POLICY first, right after its doctype (a browser puts it in the head it makes
    there), ahead of anything else the page holds, even from a page written by someone else. Added even when the
    text already holds one elsewhere (an output could hold the text of one, in the body, where browsers ignore
    it); not again when it is already first."""
    start = _DOCTYPE.match(page)
    cut = start.end() if start else 0
    meta = f'<meta http-equiv="Content-Security-Policy" content="{REPORT_POLICY}">'
    if page[cut:].startswith(meta):  # already first (a cached step's page, copied): the same bytes again
        return page
    return page[:cut] + meta + page[cut:]


class _Report:
    """Records each shown cell's outputs: printed text, display() rich outputs, matplotlib figures."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.key, self.render = spec["report"]["key"], spec["report"]["render"]
        self.title = f"{spec['notebook']}: step {spec['step']}"
        self.cells: list[dict[str, Any]] = []
        sys.stdout, sys.stderr = _Tee(sys.stdout, "stdout", self), _Tee(sys.stderr, "stderr", self)

    def start(self, label: str, source: str) -> None:
        """A cell of the step; ``label`` is how tracebacks name it (``nb.ipynb, cell 7``)."""
        found = re.search(r"cell (\d+)$", label)
        number = int(found.group(1)) if found else len(self.cells) + 1
        meta = {"nb2kfp": {"cell": label}}
        cell = {"id": f"cell-{len(self.cells) + 1}", "cell_type": "code", "execution_count": number, "metadata": meta}
        self.cells.append({**cell, "outputs": [], "source": source})

    def output(self, out: dict[str, Any]) -> None:
        if not self.cells:
            return
        outputs = self.cells[-1]["outputs"]
        if out["output_type"] == "stream" and outputs and outputs[-1].get("name") == out["name"]:
            outputs[-1]["text"] += out["text"]
        else:
            outputs.append(out)

    def display(self, obj: object, result: bool = False) -> None:  # noqa: FBT001, FBT002 - IPython's display API
        """``obj`` as display() shows it; ``result``: as the value of the cell's last expression (execute_result)."""
        data: dict[str, Any] = {"text/plain": repr(obj)}
        for method, mime in _MIME.items():
            try:
                value = getattr(obj, method)() if callable(getattr(obj, method, None)) else None
            except Exception:
                value = None
            value = value[0] if isinstance(value, tuple) else value
            if isinstance(value, bytes) and mime in ("image/png", "image/jpeg"):  # binary: base64, as in Jupyter
                import base64

                value = base64.b64encode(value).decode("ascii")
            if isinstance(value, str):  # Jupyter drops a repr of another type (with a warning): not valid nbformat
                data[mime] = value
        if hasattr(obj, "savefig") and "image/png" not in data:  # a matplotlib figure
            data.update(self._png(obj))
        if result:
            count = self.cells[-1]["execution_count"] if self.cells else None
            self.output({"output_type": "execute_result", "data": data, "metadata": {}, "execution_count": count})
        else:
            self.output({"output_type": "display_data", "data": data, "metadata": {}})
        sys.stdout.stream.write(data["text/plain"] + "\n")  # type: ignore[union-attr]

    def _png(self, figure: Any) -> dict[str, str]:
        import base64
        import io

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        return {"image/png": base64.b64encode(buffer.getvalue()).decode("ascii"), "text/plain": repr(figure)}

    def figures(self) -> None:
        """Show the open matplotlib figures and close them (as Jupyter's inline backend does)."""
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is None:
            return
        for number in pyplot.get_fignums():
            data = self._png(pyplot.figure(number))
            self.output({"output_type": "display_data", "data": data, "metadata": {}})
        pyplot.close("all")

    def error(self, exc: BaseException) -> None:
        lines = _user_traceback(exc).splitlines()
        self.output({"output_type": "error", "ename": type(exc).__name__, "evalue": str(exc), "traceback": lines})

    def write(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """The executed notebook (or its HTML, when asked and nbconvert is here) as the report artifact."""
        artifact = outputs["artifacts"][self.key]["artifacts"][0]
        path = local_path(artifact["uri"])
        kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
        meta = {"kernelspec": kernel, "language_info": {"name": "python"}, "title": self.title}
        notebook = {"cells": self.cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}
        text, kind = json.dumps(notebook, indent=1), "ipynb"
        if self.render:
            try:
                import nbconvert
                import nbformat

                node = nbformat.from_dict(notebook)
                text, _ = nbconvert.HTMLExporter().from_notebook_node(node)  # type: ignore[no-untyped-call]
                text, kind = with_policy(text), "html"
            except ImportError:  # the image has no nbconvert: a page of our own (the UI shows raw JSON otherwise)
                text, kind = with_policy(_plain_html(self.title, self.cells)), "html"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return {
            "artifacts": [
                {"name": artifact.get("name", self.key), "uri": artifact["uri"], "metadata": {"format": kind}}
            ]
        }


_REPORT: _Report | None = None


def _plain_html(title: str, cells: list[dict[str, Any]]) -> str:
    """A step's report as a self-contained page without nbconvert: each cell's source and outputs; images inline,
    HTML outputs in a sandboxed frame (no script runs), everything else as escaped text. KFP's UI shows a
    system.HTML artifact as a page (its Static HTML view)."""
    import base64
    import html

    def output(out: dict[str, Any]) -> str:
        data = out.get("data", {})
        if out.get("output_type") == "stream":
            return f"<pre class=out>{html.escape(''.join(out.get('text', '')))}</pre>"
        if out.get("output_type") == "error":
            return f"<pre class=err>{html.escape(chr(10).join(out.get('traceback', [])))}</pre>"
        for mime in ("image/png", "image/jpeg"):
            if mime in data:
                raw = "".join(data[mime]) if isinstance(data[mime], list) else str(data[mime])
                safe = base64.b64encode(base64.b64decode(raw)).decode("ascii")
                return f'<img alt="output" src="data:{mime};base64,{safe}">'
        if "text/html" in data or "image/svg+xml" in data:
            body = data.get("text/html", data.get("image/svg+xml"))
            body = "".join(body) if isinstance(body, list) else str(body)
            return f'<iframe sandbox="" srcdoc="{html.escape(body, quote=True)}"></iframe>'
        plain = data.get("text/plain", "")
        return f"<pre class=out>{html.escape(''.join(plain) if isinstance(plain, list) else str(plain))}</pre>"

    parts = [
        "<!DOCTYPE html><html><head><meta charset=utf-8>",
        f"<title>{html.escape(title)}</title><style>pre{{white-space:pre-wrap}}.src{{background:#f5f5f5}}"
        ".err{color:#a00}iframe{width:100%;border:1px solid #ddd;min-height:8em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for cell in cells:
        label = html.escape(str(cell.get("metadata", {}).get("nb2kfp", {}).get("cell", "")))
        parts.append(f"<h2>{label}</h2><pre class=src>{html.escape(str(cell.get('source', '')))}</pre>")
        parts.extend(output(out) for out in cell.get("outputs", []))
    parts.append("</body></html>")
    return "\n".join(parts)


# -- started ahead (a local run) ----------------------------------------------------------------
def warm(argv: list[str]) -> list[str]:
    """``--warm IMPORTS STEP``: this process is a step's, started before its inputs exist (nb2kfp's local runs
    start a step while the steps before it still run, or keep one for the next run: nb2kfp.local_run.ahead and
    .kept). As a step does first, it sets the Agg backend and the import hooks, then :func:`warm_up`; then it reads
    the step's command (``NB2KFP_WARM_COMMANDS``, what the program that started it, nb2kfp.local_run.waiting, put in
    this module's globals: its ``readline``) and returns its argv: the step then runs as it would have, its own
    import statements finding their modules loaded. No command: exit 1 (it never passes for a step that ran)."""
    imports = json.loads(argv[argv.index("--warm") + 1])
    step = argv[argv.index("--warm") + 2]
    _matplotlib_backend()
    warm_up(imports, step)
    line = globals()["NB2KFP_WARM_COMMANDS"].readline()
    if not line.strip():
        sys.exit(1)
    order = json.loads(line)
    os.environ.clear()
    os.environ.update(order["env"])
    os.chdir(order["cwd"])
    sys.argv = ["-c", *order["args"]]
    return sys.argv


def warm_up(imports: dict[str, list[str]], step: str) -> None:
    """Enter the step's folder (``step``; none: stay), then run the step's leading import statements (``imports``:
    of installed modules only, chosen by the driver; what the ones of the step's first cell print is kept for that
    cell's output). A template's forked process (nb2kfp.local_run.waiting) calls it for its own step."""
    import contextlib
    import io

    if step:
        _enter_workdir(step)
    for source in imports["prelude"]:
        with contextlib.suppress(Exception):  # the step runs the same statement again, and fails in its cell
            exec(compile(source, "<nb2kfp warm-up>", "exec"), {"__name__": "nb2kfp_warm_up"})
    streams = sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr = out, err
    try:
        for source in imports["cell"]:
            with contextlib.suppress(Exception):
                exec(compile(source, "<nb2kfp warm-up>", "exec"), {"__name__": "nb2kfp_warm_up"})
    finally:
        sys.stdout, sys.stderr = streams
    _WARM_SHOWN.extend(s for s in (("stdout", out.getvalue()), ("stderr", err.getvalue())) if s[1])


_WARM_SHOWN: list[tuple[str, str]] = []  # what the first cell's imports printed when they ran ahead (warm)


if __name__ == "__main__":
    sys.exit(main(warm(sys.argv) if sys.argv[1:2] == ["--warm"] else sys.argv))
