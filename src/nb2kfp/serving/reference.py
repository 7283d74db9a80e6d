"""A model's reference sample: a capped, seeded sample of the data it was fitted on, with its schema.

Packed beside the weights as ``/models/reference.parquet`` and ``/models/reference.json`` (the schema: each
feature's name, kind and dtype, the row counts, the sample's sha256), and summed up in the image's
``io.nb2kfp.reference.*`` labels. The sample is deterministic (a fixed seed, no timestamps, pyarrow's writer
without statistics that vary): the same data gives the same files, so the same image digest. ``nb2kfp monitor``
tests served requests against it.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nb2kfp.errors import RunError, UsageError

if TYPE_CHECKING:
    import pandas as pd

MAX_ROWS = 5000  # rows kept at most: a seeded random sample of larger data
SEED = 0
DATA = "reference.parquet"
SCHEMA = "reference.json"
PREFIX = "io.nb2kfp.reference."


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # numeric | categorical
    dtype: str


@dataclass(frozen=True)
class Reference:
    frame: pd.DataFrame
    features: tuple[Feature, ...]
    rows: int  # rows of the data the model was fitted on (the sample holds at most MAX_ROWS of them)
    sha256: str  # of the parquet file
    parquet: bytes

    def schema(self) -> dict[str, Any]:
        return {
            "file": DATA,
            "sha256": self.sha256,
            "rows": self.rows,
            "sample_rows": len(self.frame),
            "seed": SEED,
            "features": [{"name": f.name, "kind": f.kind, "dtype": f.dtype} for f in self.features],
        }

    def files(self) -> dict[str, bytes]:
        return {DATA: self.parquet, SCHEMA: (json.dumps(self.schema(), indent=2, sort_keys=True) + "\n").encode()}

    def labels(self) -> dict[str, str]:
        kinds = [f.kind for f in self.features]
        return {
            PREFIX + "file": DATA,
            PREFIX + "sha256": self.sha256,
            PREFIX + "rows": str(len(self.frame)),
            PREFIX + "features": str(len(self.features)),
            PREFIX + "numeric": str(kinds.count("numeric")),
            PREFIX + "categorical": str(kinds.count("categorical")),
        }


def kind_of(series: pd.Series) -> str:
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    return "numeric" if numeric else "categorical"


def frame_of(value: object, what: str) -> pd.DataFrame:
    """``value`` (a DataFrame, a 2-D array or list of rows) as a frame with text column names (x0, x1, ...)."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        frame = value.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        return frame
    array = np.asarray(value)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise RunError(f"{what}: a reference sample is a table (DataFrame or 2-D array), not {type(value).__name__}")
    return pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])


def make(value: object, what: str) -> Reference:
    """The reference sample of ``value``: at most MAX_ROWS rows (seeded), as parquet, with its schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = frame_of(value, what)
    rows = len(frame)
    if rows > MAX_ROWS:
        frame = frame.sample(n=MAX_ROWS, random_state=SEED).sort_index().reset_index(drop=True)
    features = tuple(Feature(str(c), kind_of(frame[c]), str(frame[c].dtype)) for c in frame.columns)
    for f in features:
        if f.kind == "categorical":
            frame[f.name] = frame[f.name].astype(str)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    except (pa.ArrowException, ValueError, TypeError) as exc:
        raise RunError(f"{what}: its columns do not fit a table ({type(exc).__name__}: {str(exc)[:200]})") from None
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=False)
    data = sink.getvalue()
    return Reference(frame, features, rows, hashlib.sha256(data).hexdigest(), data)


def from_artifact(folder: Path, what: str) -> Reference:
    """The reference from a value a step saved (its folder: nb2kfp.json and the data file): Arrow, .npy or JSON
    only; pickled values are never loaded here (they run code)."""
    import numpy as np
    import pyarrow.feather as feather

    try:
        fmt = json.loads((folder / "nb2kfp.json").read_text(encoding="utf-8")).get("format")
    except (OSError, ValueError):
        raise RunError(f"{what}: the run saved no readable value ({folder})") from None
    if fmt == "feather":
        value: object = feather.read_table(folder / "data.arrow").to_pandas()
    elif fmt == "npy":
        value = np.load(folder / "data.npy", allow_pickle=False)
    elif fmt == "json":
        value = json.loads((folder / "data.json").read_text(encoding="utf-8"))
    else:
        raise RunError(f"{what}: saved as {fmt}: a reference sample is a DataFrame, a numpy array or a list of rows")
    return make(value, what)


def from_file(path: Path) -> Reference:
    """``model build --reference FILE``: a .parquet, .csv, .npy or .feather/.arrow file."""
    import numpy as np
    import pandas as pd

    readers = {
        ".parquet": pd.read_parquet,
        ".csv": pd.read_csv,
        ".feather": pd.read_feather,
        ".arrow": pd.read_feather,
        ".npy": lambda p: np.load(p, allow_pickle=False),
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise UsageError(f"--reference {path}: give a .parquet, .csv, .feather or .npy file")
    try:
        value = reader(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--reference {path}: cannot read it ({type(exc).__name__}: {str(exc)[:200]})") from None
    return make(value, f"--reference {path}")


def read(parquet: bytes, schema: bytes) -> tuple[pd.DataFrame, tuple[Feature, ...]]:
    """The sample and its features as ``reference.parquet`` and ``reference.json`` hold them."""
    import pyarrow.parquet as pq

    described = json.loads(schema)
    features = tuple(Feature(str(f["name"]), str(f["kind"]), str(f["dtype"])) for f in described["features"])
    return pq.read_table(io.BytesIO(parquet)).to_pandas(), features
