"""Regenerate the bundled catalog's component YAML files with the real KFP SDK compiler.

    python -m nb2kfp.catalog.build      # needs kfp (nb2kfp[run]); writes <name>/<version>.yaml here

Each component is a container component running one standalone script from ``sources/`` as
``python3 -c``: any Python image runs it, nothing is pip-installed at run time, and kfp.local's
SubprocessRunner accepts it (the script names kfp.dsl.executor_main, which is what it checks for).
"""
# mypy: disable-error-code="untyped-decorator,type-arg,misc,no-untyped-call,valid-type"

# No `from __future__ import annotations`: the KFP SDK reads the real annotation objects.
from pathlib import Path

from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output, OutputPath

HERE = Path(__file__).resolve().parent
IMAGE = "python:3.11-slim"
# The runner needs papermill + ipykernel in its image: point your catalog's copy at an image that has them
# (nb2kfp build makes one); under kfp.local's SubprocessRunner it runs in the current environment.
PAPERMILL_IMAGE = "python:3.11-slim"


def _source(name: str) -> str:
    return (HERE / "sources" / f"{name}.py").read_text(encoding="utf-8")


@dsl.container_component
def data_drift_check(
    reference: Input[Dataset],
    current: Input[Dataset],
    column: str,
    drift_score: OutputPath(float),
    drifted: OutputPath(bool),
    method: str = "psi",
    threshold: float = 0.2,
) -> dsl.ContainerSpec:
    """Compares a numeric column of a reference and a current dataset (CSV or JSON): drift score and verdict."""
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["python3", "-c", _source("data_drift_check")],
        args=[reference.path, current.path, column, method, threshold, drift_score, drifted],
    )


@dsl.container_component
def papermill_runner(
    notebook_path: str,
    executed: Output[dsl.Artifact],
    parameters: dict = {},  # noqa: B006 - a KFP default value, never mutated
    kernel_name: str = "",  # empty: the kernel the notebook names
) -> dsl.ContainerSpec:
    """Runs a notebook with parameters via papermill; outputs the executed notebook."""
    return dsl.ContainerSpec(
        image=PAPERMILL_IMAGE,
        command=["python3", "-c", _source("papermill_runner")],
        args=[notebook_path, parameters, kernel_name, executed.path, dsl.PIPELINE_TASK_EXECUTOR_INPUT_PLACEHOLDER],
    )


COMPONENTS = {"data-drift-check": ("0.1.0", data_drift_check), "papermill-runner": ("0.1.0", papermill_runner)}


def main() -> None:
    for name, (version, func) in COMPONENTS.items():
        target = HERE / name / f"{version}.yaml"
        target.parent.mkdir(exist_ok=True)
        compiler.Compiler().compile(func, str(target))
        print(f"wrote {target.relative_to(HERE)}")


if __name__ == "__main__":
    main()
