"""What every suite needs: settings, the commands of both tools, scratch folders, interleaved repetitions."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import measure
from kale_peer import Kale
from measure import Sample
from report import Results

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@dataclass
class Ctx:
    reps: int
    quick: bool
    data_mb: int
    scratch: Path
    results: Results
    kale: Kale | None  # None: --no-kale
    python: str = sys.executable
    env: dict[str, str] = field(default_factory=dict)

    @property
    def nb2kfp(self) -> list[str]:
        """The ``nb2kfp`` console script of the interpreter running the bench (what users run)."""
        script = Path(self.python).parent / "nb2kfp"
        return [str(script)] if script.exists() else [self.python, "-m", "nb2kfp"]

    @property
    def kale_ready(self) -> bool:
        return self.kale is not None and self.kale.available

    def kale_missing(self) -> str:
        if self.kale is None:
            return "Kale not measured (--no-kale)"
        return f"Kale unavailable: {self.kale.error}"

    def folder(self, *parts: str, fresh: bool = False) -> Path:
        path = self.scratch.joinpath(*parts)
        if fresh and path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def run(self, argv: list[str], timeout: float, cwd: Path | None = None, **env: str) -> Sample:
        sample = measure.run(argv, timeout=timeout, cwd=cwd or self.scratch, env={**self.env, **env})
        measure.settle()
        return sample


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def copy_examples(dest: Path) -> dict[str, Path]:
    """Each example in its own folder (Kale writes .kale/ beside the notebook; nb2kfp settings are per folder)."""
    notebooks = {}
    for nb in sorted(EXAMPLES.glob("*.ipynb")):
        folder = dest / nb.stem
        folder.mkdir(parents=True, exist_ok=True)
        notebooks[nb.stem] = Path(shutil.copy2(nb, folder / nb.name))
    return notebooks


Case = Callable[[int], object]  # called with the repetition's number


def interleave(reps: int, cases: list[Case]) -> None:
    """Run each case once per repetition, alternating the order (ABC.. then ..CBA) so drift hits all alike."""
    for rep in range(reps):
        for call in cases if rep % 2 == 0 else cases[::-1]:
            call(rep)


def pick_ok(samples: list[Sample]) -> list[float]:
    return [s.seconds for s in samples if s.ok]
