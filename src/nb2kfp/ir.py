"""The pipeline IR: the only thing the front end and the back ends share.

Small frozen dataclasses, built by :mod:`nb2kfp.frontend.builder` from a notebook and
consumed by the back ends (KFP spec, graph, local run). Back ends never see notebook cells
except as the :class:`CodeCell` sources carried here; the front end never imports kfp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ParamType = Literal["int", "float", "str", "bool", "list", "dict"]
ParamValue = int | float | str | bool | list[object] | dict[str, object]

DEFAULT_IMAGE = "python:3.11-slim"


@dataclass(frozen=True)
class CodeCell:
    """Python source of one notebook cell (magics already turned into plain Python)."""

    index: int  # 1-based position of the cell in the notebook
    source: str
    raises: bool = False  # tagged raises-exception: an error it raises is shown and the step goes on (papermill)


@dataclass(frozen=True)
class Parameter:
    name: str
    type: ParamType
    default: ParamValue | None  # None: optional (papermill's `x = None`), the step sees None unless given
    cell: int

    @property
    def optional(self) -> bool:
        return self.default is None


@dataclass(frozen=True)
class VariableEdge:
    """Variable ``name`` flows from step ``producer`` into the step holding the edge.

    ``kind`` says how: ``value`` (an nb2kfp value artifact), or, from a catalog component,
    ``parameter`` (an output parameter) or ``path`` (an output artifact, read as its local path)."""

    name: str
    producer: str
    kind: Literal["value", "parameter", "path"] = "value"
    # received only because a function the step receives (or a value holding one) may read it, not read by the
    # step's own code: a value that cannot be handed over is then left out with a log line, not a failed run
    carried: bool = False


@dataclass(frozen=True)
class SecretEnv:
    secret: str
    key: str
    env: str


@dataclass(frozen=True)
class VolumeMount:
    """An existing PersistentVolumeClaim mounted into a step (Kale's `pvc` volumes)."""

    pvc: str
    path: str
    env: str | None = None  # an environment variable that holds the mount path


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str  # Equal or Exists
    value: str
    effect: str  # NoSchedule, PreferNoSchedule or NoExecute


@dataclass(frozen=True)
class Resources:
    """Kubernetes resource limits and requests as written in ``limit:`` and ``request:`` tags, e.g. ``("cpu", "2")``."""

    limits: tuple[tuple[str, str], ...] = ()
    requests: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Origin:
    """Where an included notebook's step comes from (composition, ``notebook:`` cells)."""

    notebook: str  # the included notebook's path (tracebacks name its cells)
    prelude: tuple[CodeCell, ...] = ()  # its imports + functions cells, run before this step only
    shared_names: tuple[str, ...] = ()
    unit: str = ""  # step-name prefix of the inclusion ("sub__", "sub__inner__"): the steps it may read from


@dataclass(frozen=True)
class ComponentArg:
    """One input of a catalog component call: a JSON literal, a pipeline parameter, or a variable."""

    name: str
    source: Literal["literal", "parameter", "variable"]
    value: str  # JSON text of the literal, or the parameter/variable name


@dataclass(frozen=True)
class ComponentPort:
    name: str
    kind: Literal["parameter", "artifact"]
    type: str  # a parameter's ParamType (int, float, str, bool, list, dict); an artifact's type (system.Dataset ...)


@dataclass(frozen=True)
class ComponentCall:
    """A prebuilt component from the catalog (``component:NAME[@VERSION]`` cell). The spec writer copies it from
    its file as written (:func:`nb2kfp.catalog.lookup.documents`); the IR holds what the notebook needs."""

    name: str
    version: str
    args: tuple[ComponentArg, ...] = ()
    inputs: tuple[ComponentPort, ...] = ()
    outputs: tuple[ComponentPort, ...] = ()
    source: str = ""  # where the component file was found, as shown to users (a path, URL or nb2kfp:catalog/...)
    file: str = ""  # the local file read (a catalog folder's, the URL catalog cache's, or the bundled one)
    sha256: str = ""  # of its content: the spec writer reads the same file again, and it identifies the component
    image: str = ""  # the container image it runs

    def output(self, name: str) -> ComponentPort | None:
        return next((p for p in self.outputs if p.name == name), None)

    def input(self, name: str) -> ComponentPort | None:
        return next((p for p in self.inputs if p.name == name), None)


@dataclass(frozen=True)
class Export:
    """A variable a notebook step also hands out as a component input: a parameter, or a file artifact."""

    name: str
    kind: Literal["parameter", "file"]
    type: str  # the consuming component's port type: a ParamType, or an artifact type (system.Dataset ...)


@dataclass(frozen=True)
class Step:
    name: str
    cells: tuple[CodeCell, ...]
    after: tuple[str, ...] = ()  # declared with prev: tags
    inputs: tuple[VariableEdge, ...] = ()
    outputs: tuple[str, ...] = ()  # variables later steps read from this one
    parameters: tuple[str, ...] = ()  # pipeline parameters this step reads
    metrics: tuple[str, ...] = ()  # metrics this step logs
    image: str = DEFAULT_IMAGE
    caching: bool = True
    resources: Resources = field(default_factory=Resources)
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    secrets: tuple[SecretEnv, ...] = ()
    volumes: tuple[VolumeMount, ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    retries: int = 0
    models: tuple[str, ...] = ()  # variables this step produces as models (model:VARIABLE), saved as system.Model
    # (model, variable): the data each model was fitted on (reference:VARIABLE or its fit's X), saved as an output
    references: tuple[tuple[str, str], ...] = ()
    timeout: int | None = None  # seconds before Kubernetes stops the step's pod
    origin: Origin | None = None  # set for steps of an included notebook (composition)
    component: ComponentCall | None = None  # set for a catalog component call
    exports: tuple[Export, ...] = ()  # variables this step also outputs for catalog components
    # a report of what the step's cells show: "html" (rendered in the step when its image has nbconvert, else
    # the executed notebook), "notebook" (the executed notebook; run --local renders it on the host), "" none
    report: str = ""
    # the imports/functions cells as this step runs them, when leaner than the pipeline's (frontend.lean)
    prelude: tuple[CodeCell, ...] | None = None

    @property
    def first_cell(self) -> int:
        return self.cells[0].index if self.cells else 0


@dataclass(frozen=True)
class Pipeline:
    name: str
    source: str  # notebook path as given (used in tracebacks and reports)
    source_hash: str  # sha256 of the notebook bytes
    steps: tuple[Step, ...]  # in notebook order, a valid topological order
    parameters: tuple[Parameter, ...] = ()
    prelude: tuple[CodeCell, ...] = ()  # imports + functions cells, run before every step
    shared_names: tuple[str, ...] = ()  # names the functions cell defines (pickled by reference)
    description: str = ""
    modules: tuple[str, ...] = ()  # top-level modules the code imports (for building step images)
    base_image: str = DEFAULT_IMAGE  # the notebook's default step image (steps without an image: tag use it)
    workspace: str = ""  # size of a volume shared by the run's steps (KFP pipeline workspace), e.g. "10Gi"
    workspace_storage_class: str = ""  # its storage class ("": the cluster's default)
    runtime_image: str = ""  # a step image nb2kfp built, with its step runtime inside (steps using it just run it)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(m for s in self.steps for m in s.metrics)
