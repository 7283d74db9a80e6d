"""The peer: Kale 2.3.0 from PyPI, installed by the bench into a venv of its own (reused when present).

Compiling: ``kale --nb NB --pipeline_name NAME`` in the notebook's folder writes ``.kale/NAME.kale.py`` (KFP DSL)
and compiles it with the KFP SDK to ``.kale/NAME.pipeline.yaml``. Running: ``kale_driver.py`` loads that YAML with
``kfp.components.load_component_from_file`` and runs it with ``kfp.local`` (SubprocessRunner, use_venv=False) in
Kale's venv, since Kale's steps import ``kale`` and start a Jupyter kernel at run time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import measure

KALE_VERSION = "2.3.0"
# The example notebooks import pandas and scikit-learn; Kale's steps `pip install` what a notebook imports at
# the start of every step, so having them here keeps those installs to a "requirement already satisfied" check.
REQUIREMENTS = [f"kubeflow-kale=={KALE_VERSION}", "pandas", "scikit-learn", "numpy"]
DEFAULT_VENV = Path(tempfile.gettempdir()) / "nb2kfp-bench-kale-venv"
MARKER = ".nb2kfp-bench-ready"
DRIVER = Path(__file__).with_name("kale_driver.py")
INSTALL_TIMEOUT = 1800.0


@dataclass
class Kale:
    venv: Path
    error: str | None = None  # why Kale cannot be measured at all
    installed_now: bool = False
    install_seconds: float = 0.0

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def available(self) -> bool:
        return self.error is None

    def compile_argv(self, notebook: Path, name: str) -> list[str]:
        return [str(self.venv / "bin" / "kale"), "--nb", notebook.name, "--pipeline_name", name]

    @staticmethod
    def compiled_yaml(notebook: Path, name: str) -> Path:
        return notebook.parent / ".kale" / f"{name}.pipeline.yaml"

    def run_argv(self, spec: Path, root: Path, cache: Path | None = None) -> list[str]:
        """``cache``: a folder for kfp.local's task cache (off without it)."""
        extra = [str(cache)] if cache else []
        return [str(self.python), "-I", str(DRIVER), str(spec), str(root), *extra]  # -I: bench/ not on sys.path


def _base_python() -> str | None:
    """An interpreter for Kale's venv: Kale 2.3.0 needs Python >= 3.11."""
    if sys.version_info >= (3, 11):
        return sys.executable
    for name in ("python3.13", "python3.12", "python3.11"):
        found = shutil.which(name)
        if found:
            return found
    return None


def ensure(venv: Path, log: Callable[[str], None]) -> Kale:
    """Kale's venv, created and installed with pip on first use; ``error`` says why not when that fails."""
    wanted = " ".join(REQUIREMENTS)
    marker = venv / MARKER
    kale = Kale(venv)
    if marker.is_file() and marker.read_text(encoding="utf-8").strip() == wanted and kale.python.exists():
        return kale
    python = _base_python()
    if python is None:
        kale.error = "Kale 2.3.0 needs Python >= 3.11 and none was found on PATH"
        return kale
    log(f"installing {wanted} into {venv} (first run only; takes a minute or two)")
    kale.installed_now = True
    env = measure.base_env()
    steps = [
        [python, "-m", "venv", "--clear", str(venv)],
        [str(kale.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
    ]
    for argv in steps:
        try:
            sample = measure.run(argv, timeout=INSTALL_TIMEOUT, env=env)
        except OSError as exc:
            kale.error = f"cannot create Kale's venv: {exc}"
            return kale
        kale.install_seconds += sample.seconds
        if not sample.ok:
            kale.error = f"installing Kale failed ({' '.join(argv[:4])} ...): {sample.failure()}"
            return kale
    try:
        version = subprocess.run(
            [str(kale.python), "-c", "import importlib.metadata as m; print(m.version('kubeflow-kale'))"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        kale.error = f"Kale installed but cannot be imported: {exc}"
        return kale
    if version != KALE_VERSION:
        kale.error = f"pip installed kubeflow-kale {version}, not {KALE_VERSION}"
        return kale
    marker.write_text(wanted + "\n", encoding="utf-8")
    return kale
