"""What a model image says about itself: framework and version, the model file, its inputs, where it came from.

Written as OCI labels (image config) and manifest annotations by ``model build`` and ``run --model-image``, and
beside the weights as the ``model-settings.json`` MLServer reads; read back from the registry by ``model deploy``,
``promote`` and ``serve`` to pick and check the serving runtime.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from nb2kfp.errors import UsageError
from nb2kfp.words import printable

PREFIX = "io.nb2kfp.model."
# Names KServe's servers look for in the model folder; MLServer follows model-settings.json's uri instead.
KSERVE_FILES = {"scikit-learn": ("model.joblib", "model.pkl", "model.pickle"), "xgboost": ("model.bst", "model.json")}
_MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle", ".bst", ".ubj")
_IMPLEMENTATION = {"scikit-learn": "mlserver_sklearn.SKLearnModel", "xgboost": "mlserver_xgboost.XGBoostModel"}
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # names that go into URLs and file paths as they are
_FRAMEWORK = re.compile(r"^(?P<name>scikit-learn|xgboost)==(?P<version>[0-9]+(?:\.[0-9]+)*[a-z0-9.+-]*)$")


@dataclass(frozen=True)
class ModelMeta:
    name: str
    framework: str = ""  # scikit-learn | xgboost | "" (not recorded)
    framework_version: str = ""
    file: str = ""  # the model file under /models
    n_features: int = 0  # 0: not known
    notebook: str = ""
    commit: str = ""  # what made it; never the run (a label that varies per run would change the digest)

    def labels(self) -> dict[str, str]:
        found = {PREFIX + f.name.replace("_", "-"): str(getattr(self, f.name)) for f in fields(self)}
        return {k: v for k, v in found.items() if v not in ("", "0")}

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> ModelMeta:
        """What an image's labels say (anyone who can push to the registry wrote them: every value is made printable,
        so messages and manifests that quote it cannot carry terminal controls or line breaks)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            text = printable(str(labels.get(PREFIX + f.name.replace("_", "-"), "")))
            values[f.name] = int(text) if f.name == "n_features" and text.isdigit() else text
        values["n_features"] = values["n_features"] or 0
        if not _SAFE.match(values["name"]) or not _SAFE.match(values["file"] or "x"):
            raise UsageError("the image's io.nb2kfp.model.name/file labels are not plain names (not built by nb2kfp?)")
        return cls(**values)

    def model_settings(self) -> dict[str, Any] | None:
        """MLServer's model-settings.json (None for a framework MLServer has no runtime for here)."""
        implementation = _IMPLEMENTATION.get(self.framework)
        if implementation is None or not self.file:
            return None
        settings: dict[str, Any] = {
            "name": self.name,
            "implementation": implementation,
            "parameters": {"uri": f"./{self.file}"},
        }
        if self.n_features:
            settings["inputs"] = [{"name": "input-0", "datatype": "FP64", "shape": [-1, self.n_features]}]
        return settings

    def example(self) -> dict[str, Any] | None:
        """A V2 inference request from the model's signature: one row of zeros."""
        if not self.n_features:
            return None
        row = [0.0] * self.n_features
        return {"inputs": [{"name": "input-0", "shape": [1, self.n_features], "datatype": "FP64", "data": row}]}


def parse_framework(text: str) -> tuple[str, str]:
    m = _FRAMEWORK.match(text.strip())
    if not m:
        raise UsageError(f"--framework {text!r}: write NAME==VERSION, e.g. scikit-learn==1.9.1 (or xgboost==2.1.3)")
    return m.group("name"), m.group("version")


def describe(source: Path, name: str, framework: str | None = None, origin: dict[str, str] | None = None) -> ModelMeta:
    """The model at ``source``: its file and inputs, and the framework that saved it.

    The framework comes from ``--framework`` or from the ``nb2kfp.json`` a pipeline step writes beside a value it
    saves (the step's own scikit-learn version); without either it stays unrecorded and ``deploy`` refuses it.
    """
    files = [source] if source.is_file() else sorted(p for p in source.iterdir() if p.is_file())
    saved: dict[str, Any] = {}
    record = source / "nb2kfp.json" if source.is_dir() else None
    if record is not None and record.is_file():
        try:
            saved = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
    kind, version = parse_framework(framework) if framework else (printable(str(saved.get("framework", ""))), "")
    version = version or (printable(str(saved.get("framework_version", ""))) if kind == saved.get("framework") else "")
    preferred = KSERVE_FILES.get(kind, ())
    candidates = [p.name for p in files if p.suffix in _MODEL_SUFFIXES]
    file = next((n for n in preferred if n in candidates), candidates[0] if len(candidates) == 1 else "")
    n_features = str(saved.get("n_features", ""))
    return ModelMeta(
        name=name,
        framework=kind,
        framework_version=version,
        file=file,
        n_features=int(n_features) if n_features.isdigit() else 0,
        **(origin or {}),
    )


def generated_files(meta: ModelMeta, source: Path) -> dict[str, bytes]:
    """Files written beside the weights (a model-settings.json the source already has is kept)."""
    settings = meta.model_settings()
    if settings is None or (source.is_dir() and (source / "model-settings.json").exists()):
        return {}
    return {"model-settings.json": (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode()}
