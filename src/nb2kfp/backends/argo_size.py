"""How big the Argo Workflow object that KFP makes of a pipeline spec grows once every node has run.

KFP's API server compiles the pipeline spec (IR) into one Argo ``Workflow`` (backend/src/v2/compiler/argocompiler),
and Argo's controller refuses to persist a Workflow whose JSON is over 1 MiB even after it gzipped
``status.nodes`` (argo-workflows workflow/packer/packer.go); KFP's manifests configure no node-status offload, so
such a run ends in Error. This module rebuilds, from the spec dicts alone (no kfp import: it runs at compile time),
the parts of that Workflow whose size grows with the pipeline, the way each KFP version writes them:

- ``spec.arguments``: one JSON string per distinct component spec, container and Kubernetes config;
- ``spec.templates``: the fixed driver/executor templates and, per task, a driver and an executor DAG task, the
  task spec inlined; the root driver's task carries the whole runtime config (every pipeline parameter's value);
- ``status.nodes``: per task a container-driver Pod node (the component, task and container JSON as inputs, the
  pod-spec-patch as output: the launcher command holding the task's whole executor input, every parameter value
  included), an executor DAG node and an executor Pod node (both with the pod-spec-patch as input), Argo retry
  nodes around them where a retry strategy applies (KFP 2.17's default install puts one on every template).

Each modelled copy names its source as ``path:line@tag`` (KFP tags 2.14.0 .. 2.17.0; Argo the version each tag's
go.mod pins: v3.6.7, v3.7.3, v3.7.8, v4.0.5). docs/kfp-backend.md gives the quotes. What the model approximates:
the exact JSON of fixed templates, node timestamps/IDs/pod names (realistic lengths), artifact URIs, output
parameter values of upstream tasks (8 bytes each), Go's protojson spacing. Compressed sizes are measured with
zlib (level 6) on the real texts: each distinct text once, repeated copies counted as often as Argo stores them
(nodes are ordered by ID, i.e. at random, so copies sit beyond gzip's 32 KiB window), shared large parameter
values compressed once per nesting depth.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# argo-workflows workflow/packer/packer.go:17-23@v4.0.5 (:16-22@v3.6.7/v3.7.x): `s = 1024 * 1024` unless the
# controller has MAX_WORKFLOW_SIZE; KFP's manifests do not set it.
LIMIT = 1024 * 1024
# etcd's default --max-request-bytes (1.5 MiB): KFP's run retry decompresses status.nodes and writes the Workflow
# back whole (backend/src/apiserver/resource/resource_manager.go:1088@2.17.0 `execSpec.Decompress()`, :913@2.14.0).
ETCD_REQUEST_LIMIT = 1536 * 1024
KFP_VERSIONS = ("2.14", "2.15", "2.16", "2.17")

# A parameter value this long is tracked as one shared piece (a marker in the texts, its size added per copy).
_BIG = 1024
_MARK = re.compile(r'\u27ea(\d+)(\\*)"\u27eb')
_COMPRESS_BUDGET = 160 * 1024  # bytes of node text compressed for real; beyond it, a random sample's ratio
_WINDOW = 32 * 1024  # deflate's window
_GZIP_FRAME = 18  # gzip header (10) and trailer (8)

# Values the model uses where the real one is only known at run time (lengths match real runs).
_WF_SUFFIX = "-x7k2q"  # generateName's 5 random characters
_NODE_HASH = "1234567890"  # Argo node IDs: <workflow name>-<fnv32 hash of the node name>
_UUID = "0f5c4a0e-8a3b-4c7e-9d2f-3a1b2c3d4e5f"
_TIME = "2026-01-01T00:00:00Z"
_EXEC_ID = "1234"  # an MLMD execution ID
_PIPELINE_ROOT = "minio://mlpipeline/v2/artifacts"  # the API server's default pipeline root
_NAMESPACE = "kubeflow"
_UPSTREAM_VALUE = "x" * 8  # an upstream task's output parameter value


@dataclass(frozen=True)
class Estimate:
    """Bytes of the Workflow's JSON as Argo's controller measures it (packer.go getSize: json.Marshal(wf))."""

    kfp_version: str
    parts: Mapping[str, int]  # metadata, spec.arguments, spec.templates, spec.other, status.nodes, status.other
    nodes: int  # entries in status.nodes
    nodes_compressed: int  # status.compressedNodes: gzip + base64 of status.nodes' JSON
    copies: Mapping[str, int] = field(default_factory=dict)  # copies of each long parameter value in the Workflow

    @property
    def raw_total(self) -> int:
        return sum(self.parts.values())

    @property
    def compressed(self) -> bool:
        """Argo compresses status.nodes only when the whole object is over the limit (packer.go:63-72)."""
        return self.raw_total > LIMIT

    @property
    def total(self) -> int:
        """What Argo compares with :data:`LIMIT`: nodes compressed when the raw object is over it."""
        if not self.compressed:
            return self.raw_total
        return self.raw_total - self.parts["status.nodes"] + len('"compressedNodes":""') + self.nodes_compressed


def fits(estimate: Estimate, limit: int = LIMIT) -> bool:
    """Whether Argo can persist the finished Workflow (packer.go:89-96: "workflow is longer than maximum allowed
    size. compressed size N > maxSize M" otherwise, then hydrator.go tries offloading, which KFP leaves off)."""
    return estimate.total <= limit


def problem(spec: dict[str, Any], platform: dict[str, Any] | None, kfp_version: str) -> str | None:
    """Why a cluster of ``kfp_version`` would fail this pipeline's runs for their size, with the figure, the limit
    and what to do; None when it fits."""
    found = estimate(spec, platform, kfp_version)
    if fits(found):
        return None
    return (
        f"on KFP {kfp_version} this pipeline becomes an Argo Workflow of about {found.total / 1e6:.2f} MB once its "
        f"{found.nodes} nodes ran ({found.parts['spec.arguments'] / 1e6:.2f} MB of step specs), over Argo's "
        f"{LIMIT / 2**20:.0f} MiB limit: its runs would end in Error mid-run. Fewer or larger steps, less code in "
        "each step (move helpers into a module in a step image: nb2kfp build), or a cluster whose Argo offloads "
        "node status make it fit"
    )


def retryable(estimate: Estimate) -> bool:
    """Whether KFP's "retry run" can write the Workflow back: it does so with status.nodes uncompressed."""
    return estimate.raw_total <= ETCD_REQUEST_LIMIT


# --- JSON text as Go writes it --------------------------------------------------------------------------------


def _go(value: Any) -> str:
    """encoding/json.Marshal: compact, and <, >, & escaped (Go's HTML-safe default). Dicts keep their order
    (Go structs keep field order; maps are sorted: callers sort where Go marshals a map)."""
    text = _quote(value) if isinstance(value, str) else _COMPACT.encode(value)
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text


_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SORTED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
_quote = json.encoder.encode_basestring


def _bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


_SHORT: dict[str, str] = {}


def _short(text: str) -> str:
    """_go of a short string that recurs (parameter names, defaults, small values)."""
    quoted = _SHORT.get(text)
    if quoted is None:
        quoted = _go(text)
        if len(_SHORT) < 4096:
            _SHORT[text] = quoted
    return quoted


_VALUE_FROM: dict[tuple[str | None, str], str] = {}


def _value_from(spec: dict[str, str]) -> str:
    key = (spec.get("default"), spec["path"])
    if key not in _VALUE_FROM:
        _VALUE_FROM[key] = _go(spec)
    return _VALUE_FROM[key]


def _stable(value: Any) -> str:
    """argocompiler stablyMarshalJSON (proto.go:26-41@2.17.0): protojson, then encoding/json (keys sorted)."""
    text = _SORTED.encode(value)
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text


def _proto(value: Any) -> str:
    """protojson.Marshal (the driver's executor input and component JSON): compact, no HTML escaping."""
    return _COMPACT.encode(value)


class _Pieces:
    """Long parameter values, replaced in every text by a marker whose inner quote records its JSON depth."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self.names: list[str] = []
        self._ids: dict[str, int] = {}
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}

    def mark(self, value: Any, name: str) -> Any:
        if not isinstance(value, str) or len(value) < _BIG:
            return value
        if value not in self._ids:
            self._ids[value] = len(self.values)
            self.values.append(value)
            self.names.append(name)
        return f'\u27ea{self._ids[value]}"\u27eb'

    def size(self, index: int, depth: int) -> tuple[int, int]:
        """(raw bytes, gzip bytes) of value ``index`` inside ``depth`` levels of JSON strings. gzip is run once,
        on the value at depth 1; each further level of escaping adds backslashes that cost 7% of their bytes
        (measured on the step runtime: 15.96 KB at depth 1, 16.21 KB at 2, 16.65 KB at 3)."""
        key = (index, depth)
        if key not in self._sizes:
            text = self.values[index]
            for _ in range(depth):
                text = _go(text)[1:-1]
            raw = _bytes(text)
            if (index, 1) not in self._sizes:
                once = _go(self.values[index])[1:-1].encode()
                self._sizes[(index, 1)] = (len(once), len(zlib.compress(once, 6)) - 6)
            raw1, packed1 = self._sizes[(index, 1)]
            self._sizes[key] = (raw, max(1, packed1 + round(0.07 * (raw - raw1))))
        return self._sizes[key]

    def scan(self, text: str) -> tuple[int, int, list[tuple[int, int]]]:
        """(raw bytes, gzip bytes of the pieces, [(piece, depth)]) of ``text``."""
        found = [(int(m.group(1)), int(math.log2(len(m.group(2)) + 1))) for m in _MARK.finditer(text)]
        raw = _bytes(text)
        packed = 0
        for index, depth in found:
            r, c = self.size(index, depth)
            raw += r - len(_marker(index, depth).encode())
            packed += c
        return raw, packed, found


def _marker(index: int, depth: int) -> str:
    return "\u27ea" + str(index) + "\\" * ((1 << depth) - 1) + '"\u27eb'


# --- the pipeline spec ----------------------------------------------------------------------------------------


@dataclass
class _Task:
    name: str  # Argo DAG task name (the KFP task key)
    task: dict[str, Any]
    component_name: str
    component: dict[str, Any]
    container: dict[str, Any] | None  # None: importer or sub-DAG
    importer: dict[str, Any] | None
    kubernetes: dict[str, Any] | None
    parent: str  # Argo node name of the DAG the task is in


def _root_values(spec: dict[str, Any], pieces: _Pieces) -> dict[str, Any]:
    """The run's parameter values: defaults filled in by the compiler (argo.go:96-107@2.17.0, :82-93@2.14.0)."""
    values: dict[str, Any] = {}
    for name, param in sorted(spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {}).items()):
        if "defaultValue" in param:
            values[name] = pieces.mark(param["defaultValue"], name)
        elif param.get("isOptional"):
            values[name] = None
    return values


def _tasks(spec: dict[str, Any], platform: dict[str, Any] | None, dag: dict[str, Any], parent: str) -> Iterator[_Task]:
    components = spec.get("components", {})
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    k8s = ((platform or {}).get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {})).get("executors", {})
    for name in sorted(dag.get("tasks", {})):  # dag.go:54-58@2.17.0: tasks in sorted order
        task = dag["tasks"][name]
        comp_name = task.get("componentRef", {}).get("name", "")
        comp = components.get(comp_name, {})
        label = comp.get("executorLabel", "")
        executor = executors.get(label, {})
        yield _Task(
            name=name,
            task=task,
            component_name=comp_name,
            component=comp,
            container=executor.get("container"),
            importer=executor.get("importer"),
            kubernetes=k8s.get(label),
            parent=parent,
        )
        if "dag" in comp:
            yield from _tasks(spec, platform, comp["dag"], f"{parent}.{name}")


# --- the model ------------------------------------------------------------------------------------------------


class _Model:
    def __init__(self, spec: dict[str, Any], platform: dict[str, Any] | None, version: str) -> None:
        if version not in KFP_VERSIONS:
            raise ValueError(f"KFP version {version!r}: one of {', '.join(KFP_VERSIONS)}")
        self.spec = spec
        self.platform = platform
        self.version = version
        # KFP 2.17's default install: workflowDefaults.spec.templateDefaults.retryStrategy {limit: '2',
        # retryPolicy: OnError} (manifests/kustomize/third-party/argo/base/workflow-controller-configmap-patch.yaml
        # :50-59@2.17.0), merged into every template (argo workflow/controller/operator.go:2133 and :4448-4490
        # @v4.0.5), so every template execution gets a Retry parent node (operator.go:2312-2318@v4.0.5).
        self.retry_everywhere = version == "2.17"
        # 2.17 resolves {{$.inputs.parameters[...]}} in the user's args in the driver (driver.go:309-319@2.17.0);
        # 2.14-2.16 pass them as written (driver.go:183-185@2.14.0), the launcher substitutes at run time.
        self.driver_resolves_args = version == "2.17"
        self.pieces = _Pieces()
        self.name = spec.get("pipelineInfo", {}).get("name", "pipeline").rsplit("/", 1)[-1]
        self.wf = self.name + _WF_SUFFIX
        self.values = _root_values(spec, self.pieces)
        self.tasks = list(_tasks(spec, platform, spec.get("root", {}).get("dag", {}), f"{self.wf}.root"))
        # (kind, text, copies) of every status.nodes payload; node skeletons apart
        self.payloads: list[tuple[str, list[str], int, int]] = []  # kind, fragments, copies, task index
        self.skeletons: list[str] = []
        self.layout: list[tuple[int, int]] = []  # (skeleton, payload or -1) of each node
        self.pods = 0
        self._escaped: dict[int, tuple[str, str]] = {}
        self._scanned: dict[int, tuple[str, tuple[int, int, list[tuple[int, int]]]]] = {}
        self._json: dict[tuple[int, str], str] = {}
        self._keep: list[Any] = []  # the objects _json's keys name
        self._launcher: tuple[str, str] | None = None  # the launcher command's JSON around the two long strings
        self.counts = [0] * 0  # copies of each piece, filled by status_nodes

    # spec.arguments ------------------------------------------------------------------------------------------

    def _stable(self, value: Any) -> str:
        """stablyMarshalJSON of a spec object, once per object (the same JSON lands in arguments and nodes)."""
        key = (id(value), "stable")
        if key not in self._json:
            self._json[key] = _stable(value)
            self._keep.append(value)
        return self._json[key]

    def _hash(self, t: _Task) -> str:
        """argo.go:437-469@2.17.0 hashComponentContainer: sha256 of the container (64 hex), component name else."""
        if t.container is None:
            return t.component_name
        key = (id(t.container), "hash")
        if key not in self._json:
            self._json[key] = hashlib.sha256(self._stable(t.container).encode()).hexdigest()
        return self._json[key]

    def arguments(self) -> str:
        """spec.arguments.parameters: {name: JSON} once per distinct key (argo.go:400-419@2.17.0
        saveProtoToArguments skips a name already there: `if c.wf.Spec.Arguments.GetParameterByName(componentName)
        != nil { return nil }`, :407); components-<hash> and implementations-<hash> (:359-383), kubernetes-<component>
        per component (:385-387), components-root for the root DAG (dag.go:45)."""
        params: dict[str, str] = {"components-root": self._root_json()}
        for t in self.tasks:
            key = self._hash(t)
            params.setdefault(f"components-{key}", self._component_json(t))
            if t.container is not None:
                params.setdefault(f"implementations-{key}", self._stable(t.container))
            if t.kubernetes:
                params.setdefault(f"kubernetes-{t.component_name}", self._stable(t.kubernetes))
        return _go({"parameters": [{"name": n, "value": v} for n, v in params.items()]})

    def _component_json(self, t: _Task) -> str:
        key = (id(t.component), "component")
        if key not in self._json:
            self._json[key] = _stable(self._marked_component(t.component))
            self._keep.append(t.component)
        return self._json[key]

    def _marked_component(self, comp: dict[str, Any]) -> dict[str, Any]:
        """A component spec with long input defaults as markers (the root's inputDefinitions hold the defaults)."""
        params = comp.get("inputDefinitions", {}).get("parameters")
        if not params or not any(isinstance(p.get("defaultValue"), str) for p in params.values()):
            return comp
        marked = {
            n: {**p, "defaultValue": self.pieces.mark(p["defaultValue"], n)} if "defaultValue" in p else p
            for n, p in params.items()
        }
        return {**comp, "inputDefinitions": {**comp["inputDefinitions"], "parameters": marked}}

    # spec.templates ------------------------------------------------------------------------------------------

    def _root_json(self) -> str:
        """The root DAG's component spec (all tasks, the pipeline inputs and their defaults), dag.go:45@2.17.0."""
        key = (id(self.spec), "root")
        if key not in self._json:
            self._json[key] = _stable(self._marked_component(dict(self.spec.get("root", {}))))
        return self._json[key]

    def _runtime_config(self) -> str:
        """dag.go:525-536@2.17.0: the root DAG driver's runtime-config, stablyMarshalJSON(job.RuntimeConfig)."""
        key = (id(self.spec), "runtime-config")
        if key not in self._json:
            self._json[key] = _stable({"gcsOutputDirectory": _PIPELINE_ROOT, "parameterValues": self.values})
        return self._json[key]

    def templates(self) -> str:
        tasks: list[dict[str, Any]] = []
        for t in self.tasks:
            if t.parent != f"{self.wf}.root":
                continue
            tasks.extend(self._dag_tasks(t))
        entrypoint = {
            "name": "entrypoint",
            "dag": {
                "tasks": [
                    {  # dag.go:150-176@2.17.0
                        "name": "root-driver",
                        "template": "system-dag-driver",
                        "arguments": {
                            "parameters": [
                                {"name": "component", "value": "{{workflow.parameters.components-root}}"},
                                {"name": "runtime-config", "value": self._runtime_config()},
                                {"name": "driver-type", "value": "ROOT_DAG"},
                            ]
                        },
                    },
                    {
                        "name": "root",
                        "template": "root",
                        "arguments": {
                            "parameters": [
                                {
                                    "name": "parent-dag-id",
                                    "value": "{{tasks.root-driver.outputs.parameters.execution-id}}",
                                },
                                {"name": "condition", "value": ""},
                            ]
                        },
                        "depends": "root-driver.Succeeded",
                    },
                ]
            },
        }
        root = {"name": "root", "inputs": {"parameters": [{"name": "parent-dag-id"}]}, "dag": {"tasks": tasks}}
        fixed = [_dag_driver_template(), _container_driver_template()]
        fixed.extend(self._executor_templates())
        return _go([*fixed, root, entrypoint])

    def _dag_tasks(self, t: _Task) -> list[dict[str, Any]]:
        """dag.go:282-336@2.17.0: a driver task (`task` inlined, component/container by reference) and an executor
        task taking the driver's pod-spec-patch (container.go:152-184, :310-356)."""
        task_json = self._stable(t.task)
        deps = " && ".join(f"{d}.Succeeded" for d in t.task.get("dependentTasks", []))
        key = self._hash(t)
        driver_params = [
            {"name": "component", "value": f"{{{{workflow.parameters.components-{key}}}}}"},
            {"name": "task", "value": task_json},
            {"name": "container", "value": f"{{{{workflow.parameters.implementations-{key}}}}}"},
            {"name": "task-name", "value": t.name},
            {"name": "parent-dag-id", "value": "{{inputs.parameters.parent-dag-id}}"},
        ]
        if t.kubernetes:
            driver_params.append(
                {"name": "kubernetes-config", "value": f"{{{{workflow.parameters.kubernetes-{t.component_name}}}}}"}
            )
        driver: dict[str, Any] = {
            "name": f"{t.name}-driver",
            "template": "system-container-driver",
            "arguments": {"parameters": driver_params},
        }
        if deps:
            driver["depends"] = deps
        out = f"{{{{tasks.{t.name}-driver.outputs.parameters."
        executor_params = [
            {"name": "pod-spec-patch", "value": out + "pod-spec-patch}}"},
            {"name": "cached-decision", "default": "false", "value": out + "cached-decision}}"},
            *self._metadata_params(t, values=True),
            *self._retry_params(t, values=True),
        ]
        executor = {
            "name": t.name,
            "template": self._executor_template_name(t),
            "arguments": {"parameters": executor_params},
            "depends": f"{t.name}-driver.Succeeded",
        }
        return [driver, executor]

    def _executor_template_name(self, t: _Task) -> str:
        """container.go:362-390@2.17.0: retry- when the task has a retryPolicy, metadata-<a>-<l>- with pod metadata."""
        if not t.task.get("retryPolicy") and not t.kubernetes:
            return "system-container-executor"
        name = "system-container-executor"
        if t.task.get("retryPolicy"):
            name = "retry-" + name
        meta = (t.kubernetes or {}).get("podMetadata")
        if meta:
            name = f"metadata-{len(meta.get('annotations', {}))}-{len(meta.get('labels', {}))}-{name}"
        return name

    def _metadata_params(self, t: _Task, *, values: bool) -> list[dict[str, str]]:
        """container.go:689-738@2.17.0: pod-metadata-{annotation,label}-{key,val}[-n] parameters."""
        meta = (t.kubernetes or {}).get("podMetadata") or {}
        if not meta:
            return []
        out: list[dict[str, str]] = []
        for kind, prefix in (("annotations", "pod-metadata-annotation"), ("labels", "pod-metadata-label")):
            items = sorted((meta.get(kind) or {}).items())
            for n, (k, v) in enumerate(items, 1):
                suffix = f"-{n}" if len(items) > 1 else ""
                out.append({"name": f"{prefix}-key{suffix}", **({"value": k} if values else {})})
                out.append({"name": f"{prefix}-val{suffix}", **({"value": v} if values else {})})
        return out

    def _retry_params(self, t: _Task, *, values: bool) -> list[dict[str, str]]:
        """container.go:599-649@2.17.0: retry-max-count, retry-backoff-duration/-factor/-max-duration."""
        policy = t.task.get("retryPolicy")
        if not policy:
            return []
        if not values:
            return [{"name": n, "default": "0"} for n in _RETRY_PARAMS]
        seconds = {k: str(_seconds(policy.get(k, "0s"))) for k in ("backoffDuration", "backoffMaxDuration")}
        factor = policy.get("backoffFactor", 0)
        return [
            {"name": "retry-max-count", "value": str(policy.get("maxRetryCount", 0))},
            {"name": "retry-backoff-duration", "value": seconds["backoffDuration"]},
            {"name": "retry-backoff-factor", "value": f"{factor:g}" if isinstance(factor, float) else str(factor)},
            {"name": "retry-backoff-max-duration", "value": seconds["backoffMaxDuration"]},
        ]

    def _executor_templates(self) -> list[dict[str, Any]]:
        """container.go:358-597@2.17.0: one executor DAG template and one impl Pod template per distinct name."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for t in self.tasks:
            if t.container is None:
                continue
            name = self._executor_template_name(t)
            if name in seen:
                continue
            seen.add(name)
            out.extend(
                _executor_template_pair(
                    name, self._metadata_params(t, values=False), self._retry_params(t, values=False)
                )
            )
        return out

    # status.nodes --------------------------------------------------------------------------------------------

    def executor_input(self, t: _Task) -> dict[str, Any]:
        """The executor input the container driver builds (driver/container.go:79-123@2.17.0 resolveInputs and
        provisionOutputs): every parameter value the task passes, its input artifacts, its output URIs."""
        values: dict[str, Any] = {}
        for name, param in t.task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in param:
                source = param["componentInputParameter"]
                if source in self.values and self.values[source] is not None:
                    values[name] = self.values[source]
            elif "runtimeValue" in param:
                values[name] = self.pieces.mark(param["runtimeValue"].get("constant"), name)
            else:
                values[name] = _UPSTREAM_VALUE
        task_root = f"{_PIPELINE_ROOT}/{self.name}/{_UUID}/{t.name}/{_UUID}"
        artifacts = {
            name: {
                "artifacts": [
                    {
                        "name": _EXEC_ID,
                        "type": _artifact_type(t.component, "inputDefinitions", name),
                        "uri": self._upstream_uri(a.get("taskOutputArtifact", {}), name),
                        "metadata": {"display_name": name},
                    }
                ]
            }
            for name, a in sorted(t.task.get("inputs", {}).get("artifacts", {}).items())
        }
        outputs_spec = t.component.get("outputDefinitions", {})
        metadata_file = f"/minio/mlpipeline/v2/artifacts/{self.name}/{_UUID}/{t.name}/{_UUID}/output_metadata.json"
        return {
            "inputs": {"parameterValues": dict(sorted(values.items())), "artifacts": artifacts},
            "outputs": {
                "parameters": {n: {"outputFile": f"/tmp/kfp/outputs/{n}"} for n in outputs_spec.get("parameters", {})},
                "artifacts": {
                    n: {
                        "artifacts": [
                            {
                                "name": n,
                                "type": _artifact_type(t.component, "outputDefinitions", n),
                                "uri": f"{task_root}/{n}",
                            }
                        ]
                    }
                    for n in outputs_spec.get("artifacts", {})
                },
                "outputFile": metadata_file,
            },
        }

    def _upstream_uri(self, producer: dict[str, str], name: str) -> str:
        """An input artifact's URI: the producer task's output (driver.go:741-800@2.17.0 provisionOutputs)."""
        task = producer.get("producerTask", "")
        return f"{_PIPELINE_ROOT}/{self.name}/{_UUID}/{task}/{_UUID}/{producer.get('outputArtifactKey', name)}"

    def pod_spec_patch(self, t: _Task) -> str:
        """driver.go:246-461@2.17.0 initPodSpecPatch (:160-317@2.14.0), serialised by driver/container.go:337
        (`podSpecPatchBytes, err := json.Marshal(podSpec)`): the launcher command carries the executor input and
        the component spec as two argv strings (driver.go:326-327), the user's command and args follow."""
        assert t.container is not None
        ei = self.executor_input(t)
        if self._launcher is None:
            head = ["/kfp-launcher/launch", "--pipeline_name", self.name, "--run_id", _UUID, "--execution_id", _EXEC_ID]
            tail = [
                "--pod_name", "$(KFP_POD_NAME)", "--pod_uid", "$(KFP_POD_UID)", "--mlmd_server_address",
                "metadata-grpc-service.kubeflow", "--mlmd_server_port", "8080", "--publish_logs", "true",
            ]  # fmt: skip
            if self.version != "2.14":
                tail += ["--ml_pipeline_server_address", "ml-pipeline.kubeflow", "--ml_pipeline_server_port", "8887"]
            self._launcher = (_go(head)[1:-1], _go([*tail, "--"])[1:-1])
        head_json, tail_json = self._launcher
        args = list(t.container.get("command", [])) + list(t.container.get("args", []))
        if self.driver_resolves_args:
            args = [_resolve(a, ei["inputs"]["parameterValues"]) for a in args]
        command = (
            f'[{head_json},"--executor_input",{_go(_proto(ei))},"--component_spec",'
            f"{_go(self._component_json(t))},{tail_json}]"
        )
        rest: dict[str, Any] = {
            "args": args,
            "env": [{"name": e["name"], "value": e.get("value", "")} for e in t.container.get("env", [])],
            "resources": _resources(t.container.get("resources", {})),
        }
        pod: dict[str, Any] = {"containers": [rest]}
        _platform_patch(pod, t.kubernetes or {})
        main = f'{{"name":"main","image":{_go(t.container.get("image", ""))},"command":{command},' + _go(rest)[1:]
        if len(pod) == 1:
            return '{"containers":[' + main + "]}"
        return '{"containers":[' + main + "]," + _go({k: v for k, v in pod.items() if k != "containers"})[1:]

    def nodes(self) -> None:
        """Every node of a finished run, with the inputs and outputs Argo records (operator.go:2780-2786@v4.0.5:
        `node.Inputs = executeTmpl.Inputs.DeepCopy()` for every node a template execution creates)."""
        root_driver_inputs = [
            {"name": "component", "value": self._root_json()},
            {"name": "runtime-config", "default": "", "value": self._runtime_config()},
            {"name": "task", "default": "", "value": ""},
            {"name": "task-name", "default": "", "value": ""},
            {"name": "parent-dag-id", "default": "0", "value": "0"},
            {"name": "iteration-index", "default": "-1", "value": "-1"},
            {"name": "driver-type", "default": "DAG", "value": "ROOT_DAG"},
        ]
        dag_driver_outputs = [  # dag.go:633-639@2.17.0
            {"name": "execution-id", "value": _EXEC_ID, "valueFrom": {"path": "/tmp/outputs/execution-id"}},
            {
                "name": "iteration-count",
                "value": "0",
                "valueFrom": {"default": "0", "path": "/tmp/outputs/iteration-count"},
            },
            {"name": "condition", "value": "true", "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}},
        ]
        entry = self._node(self.wf, "entrypoint", "DAG", None, None, -1)
        self._node(f"{entry}.root-driver", "system-dag-driver", "Pod", root_driver_inputs, dag_driver_outputs, -1)
        root = self._node(f"{entry}.root", "root", "DAG", [{"name": "parent-dag-id", "value": _EXEC_ID}], None, -1)
        for i, t in enumerate(self.tasks):
            parent = root if t.parent == f"{self.wf}.root" else t.parent
            self._task_nodes(i, t, parent)

    def _task_nodes(self, i: int, t: _Task, parent: str) -> None:
        if t.container is None:  # a sub-DAG (dag driver + DAG node) or an importer (one Pod)
            task_json = _stable(t.task)
            comp_json = _stable(self._marked_component(t.component))
            inputs = [{"name": "component", "value": comp_json}, {"name": "task", "value": task_json}]
            kind = "Pod" if t.importer is not None else "DAG"
            self._node(f"{parent}.{t.name}", "importer" if t.importer else "system-dag-driver", kind, inputs, None, i)
            return
        psp = self.pod_spec_patch(t)
        driver_inputs = [  # container.go:254-266@2.17.0 template inputs, values from :152-177
            {"name": "component", "value": self._component_json(t)},
            {"name": "task", "value": self._stable(t.task)},
            {"name": "container", "value": self._stable(t.container)},
            {"name": "task-name", "value": t.name},
            {"name": "parent-dag-id", "value": _EXEC_ID},
            {"name": "iteration-index", "default": "-1", "value": "-1"},
            {"name": "kubernetes-config", "default": "", "value": self._stable(t.kubernetes) if t.kubernetes else ""},
        ]
        driver_outputs = [  # container.go:267-273@2.17.0, the values the driver wrote
            {
                "name": "pod-spec-patch",
                "value": psp,
                "valueFrom": {"default": "", "path": "/tmp/outputs/pod-spec-patch"},
            },
            {
                "name": "cached-decision",
                "default": "false",
                "value": "false",
                "valueFrom": {"default": "false", "path": "/tmp/outputs/cached-decision"},
            },
            {"name": "condition", "value": "true", "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}},
        ]
        self._node(f"{parent}.{t.name}-driver", "system-container-driver", "Pod", driver_inputs, driver_outputs, i)
        executor_inputs = [  # container.go:398-414@2.17.0
            {"name": "pod-spec-patch", "value": psp},
            {"name": "cached-decision", "default": "false", "value": "false"},
            *self._metadata_params(t, values=True),
            *self._retry_params(t, values=True),
        ]
        executor = self._node(f"{parent}.{t.name}", self._executor_template_name(t), "DAG", executor_inputs, None, i)
        impl_inputs = [  # container.go:451-467@2.17.0: the impl template's pod-spec-patch input
            {"name": "pod-spec-patch", "value": psp},
            *self._metadata_params(t, values=True),
            *self._retry_params(t, values=True),
        ]
        impl_template = self._executor_template_name(t).replace("executor", "impl")
        # container.go:582-588@2.17.0: a task retryPolicy puts a retryStrategy on the impl template.
        self._node(
            f"{executor}.executor", impl_template, "Pod", impl_inputs, None, i, retried=bool(t.task.get("retryPolicy"))
        )

    def _node(
        self,
        name: str,
        template: str,
        kind: str,
        inputs: list[dict[str, Any]] | None,
        outputs: list[dict[str, Any]] | None,
        task: int,
        *,
        retried: bool = False,
    ) -> str:
        """Adds the node(s) one template execution makes; returns the name its children hang under. With a retry
        strategy: a Retry parent (same inputs, operator.go:2318@v4.0.5; outputs copied from the last child,
        operator.go:1009-1012) and the child `<name>(0)` (operator.go:2375-2380@v4.0.5)."""
        payload = self._payload(inputs, outputs, pod=kind == "Pod")
        index = len(self.payloads) if payload else -1
        copies = 1
        if retried or self.retry_everywhere:
            self.layout.append((len(self.skeletons), index))
            self._skeleton(name, template, "Retry")
            copies = 2
            name = f"{name}(0)"
        self.layout.append((len(self.skeletons), index))
        self._skeleton(name, template, kind)
        if payload:
            self.payloads.append((template, payload, copies, task))
        if kind == "Pod":
            self.pods += 1
        return name

    def _esc(self, value: str) -> str:
        """``value`` as a JSON string; long ones escaped once and kept (they recur in several nodes)."""
        if len(value) < 256:
            return _go(value)
        cached = self._escaped.get(id(value))
        if cached is None:
            cached = (value, _go(value))
            self._escaped[id(value)] = cached
        return cached[1]

    def _params(self, params: list[dict[str, Any]], opening: str = '{"parameters":[', closing: str = "]}") -> list[str]:
        """``{"parameters":[...]}`` as fragments (wfv1.Parameter field order: name, default, value, valueFrom);
        long values are fragments of their own, escaped once."""
        out: list[str] = []
        head = opening
        for n, p in enumerate(params):
            head += ("," if n else "") + '{"name":' + _short(p["name"])
            if "default" in p:
                head += ',"default":' + _short(p["default"])
            if "value" in p:
                value = p["value"]
                if len(value) < 256:
                    head += ',"value":' + _short(value)
                else:
                    out.append(head + ',"value":')
                    out.append(self._esc(value))
                    head = ""
            if "valueFrom" in p:
                head += ',"valueFrom":' + _value_from(p["valueFrom"])
            head += "}"
        out.append(head + closing)
        return out

    def _payload(
        self, inputs: list[dict[str, Any]] | None, outputs: list[dict[str, Any]] | None, *, pod: bool
    ) -> list[str]:
        parts: list[str] = []
        if inputs:
            parts.append('"inputs":')
            parts.extend(self._params(inputs))
        if outputs or pod:
            parts.append(("," if parts else "") + '"outputs":{')
            if outputs:
                parts.extend(self._params(outputs, '"parameters":[', "]"))
            if (
                pod
            ):  # archiveLogs: true in every tag's workflow-controller-configmap-patch.yaml (:13@2.14.0, :16@2.17.0)
                key = (
                    f"private-artifacts/{_NAMESPACE}/{self.wf}/2026/01/01/{self.wf}-system-container-impl-{_NODE_HASH}"
                )
                parts.append(
                    ("," if outputs else "")
                    + f'"artifacts":[{{"name":"main-logs","s3":{{"key":"{key}/main.log"}}}}],"exitCode":"0"'
                )
            parts.append("}")
        return parts

    def _skeleton(self, name: str, template: str, kind: str) -> None:
        """NodeStatus fields besides inputs/outputs (pkg/apis/workflow/v1alpha1/workflow_types.go NodeStatus)."""
        node_id = f"{self.wf}-{_NODE_HASH}"
        text = (
            f'{{"id":"{node_id}","name":{_go(name)},"displayName":{_go(name.rsplit(".", 1)[-1])},"type":"{kind}",'
            f'"templateName":{_go(template)},"templateScope":"local/{self.wf}","phase":"Succeeded",'
            f'"boundaryID":"{node_id}","startedAt":"{_TIME}","finishedAt":"{_TIME}","progress":"1/1",'
            f'"resourcesDuration":{{"cpu":1,"memory":12}},"children":["{node_id}"]'
        )
        if kind in ("DAG", "Retry"):
            text += f',"outboundNodes":["{node_id}"]'
        if kind == "Pod":
            text += ',"hostNodeName":"worker-node-1","taskResultSynced":true'
        if name.endswith(")"):
            text += ',"nodeFlag":{"retried":true}'
        self.skeletons.append(text + "}")

    def _scan(self, fragment: str) -> tuple[int, int, list[tuple[int, int]]]:
        if "\u27ea" not in fragment:
            return _bytes(fragment), 0, []
        cached = self._scanned.get(id(fragment))
        if cached is None:
            cached = (fragment, self.pieces.scan(fragment))
            self._scanned[id(fragment)] = cached
        return cached[1]

    def status_nodes(self) -> tuple[int, int, int]:
        """(raw bytes, gzip+base64 bytes, node count) of status.nodes."""
        self.nodes()
        self.counts = [0] * len(self.pieces.values)
        key = f'"{self.wf}-{_NODE_HASH}":'
        raw = 2 + len(self.layout) * (len(key) + 1)  # {...}, "id": and commas
        packed_pieces = 0
        plain: list[tuple[list[str], int]] = []  # each payload's fragments and bytes without the pieces
        for _, fragments, copies, _ in self.payloads:
            r = 1  # the comma joining it to the skeleton
            pieces_raw = 0
            for fragment in fragments:
                fr, fc, found = self._scan(fragment)
                r += fr
                packed_pieces += fc * copies
                for index, depth in found:
                    self.counts[index] += copies
                    pieces_raw += self.pieces.size(index, depth)[0]
            raw += r * copies
            plain.append((fragments, r - pieces_raw))
        raw += sum(_bytes(self.skeletons[s]) for s, _ in self.layout)
        packed = self._stream_cost(plain) + packed_pieces + _GZIP_FRAME
        return raw, 4 * math.ceil(packed / 3), len(self.layout)

    def _stream_cost(self, plain: list[tuple[list[str], int]]) -> int:
        """gzip bytes of the nodes without the long pieces. Argo marshals status.nodes as a map sorted by node ID,
        a hash of the node name: the nodes come in random order, so they are compressed shuffled (a fixed seed).
        Past the budget: the first 32 KiB (gzip's window still filling) as they are, the rest at the ratio of the
        nodes that follow them up to the budget."""
        order = list(range(len(self.layout)))
        random.Random(0).shuffle(order)
        sizes = [_bytes(self.skeletons[s]) + (plain[p][1] if p >= 0 else 0) for s, p in self.layout]
        total = sum(sizes)
        stream = zlib.compressobj(6, zlib.DEFLATED, -15)
        cold = cold_bytes = warm = warm_bytes = 0
        for n in order:
            if cold_bytes + warm_bytes >= _COMPRESS_BUDGET:
                break
            packed = len(stream.compress(self._node_text(n, plain).encode()))
            if cold_bytes < _WINDOW:
                cold += packed
                cold_bytes += sizes[n]
                if cold_bytes >= _WINDOW:
                    cold += len(stream.flush(zlib.Z_SYNC_FLUSH))
            else:
                warm += packed
                warm_bytes += sizes[n]
        end = len(stream.flush())
        if cold_bytes + warm_bytes >= total:
            return cold + warm + end
        return cold + round((warm + end) * (total - cold_bytes) / max(1, warm_bytes))

    def _node_text(self, n: int, plain: list[tuple[list[str], int]]) -> str:
        """Node ``n`` of :attr:`layout` as JSON, without the long pieces."""
        skeleton, payload = self.layout[n]
        text = self.skeletons[skeleton]
        if payload < 0:
            return text
        body = "".join(plain[payload][0])
        return text[:-1] + "," + (_MARK.sub("", body) if "\u27ea" in body else body) + "}"

    def copies(self, found: list[tuple[int, int]]) -> dict[str, int]:
        """Copies of each long parameter value: ``found`` in the spec, :attr:`counts` in status.nodes."""
        counts = list(self.counts)
        for index, _ in found:
            counts[index] += 1
        return {self.pieces.names[i]: n for i, n in enumerate(counts)}


_RETRY_PARAMS = ("retry-max-count", "retry-backoff-duration", "retry-backoff-factor", "retry-backoff-max-duration")
_INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['(.+?)']}}")


def _resolve(arg: str, values: Mapping[str, Any]) -> str:
    """driver/util.go:263-288@2.17.0 resolveContainerArgs (input placeholders only; `{{$}}` stays)."""
    if "$.outputs" in arg:
        return arg
    return _INPUT_PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), arg)


def _seconds(duration: Any) -> int:
    text = str(duration)
    return int(float(text[:-1])) if text.endswith("s") else int(float(text or 0))


def _artifact_type(comp: dict[str, Any], section: str, name: str) -> dict[str, Any]:
    spec = comp.get(section, {}).get("artifacts", {}).get(name, {})
    return dict(spec.get("artifactType", {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}))


def _resources(res: dict[str, Any]) -> dict[str, Any]:
    """driver.go:358-413@2.17.0: cpu/memory limits and requests as Kubernetes quantities."""
    out: dict[str, Any] = {}
    for kind in ("Limit", "Request"):
        found = {k.lower(): res[f"resource{k}{kind}"] for k in ("Cpu", "Memory") if f"resource{k}{kind}" in res}
        if found:
            out["limits" if kind == "Limit" else "requests"] = found
    return out


def _platform_patch(pod: dict[str, Any], k8s: dict[str, Any]) -> None:
    """driver/k8s.go extendPodSpecPatch@2.17.0: volumes, secret env vars, node selector, tolerations."""
    main = pod["containers"][0]
    for mount in k8s.get("pvcMount", []):
        name = mount.get("constant", "")
        main.setdefault("volumeMounts", []).append({"name": name, "mountPath": mount.get("mountPath", "")})
        pod.setdefault("volumes", []).append({"name": name, "persistentVolumeClaim": {"claimName": name}})
    for secret in k8s.get("secretAsEnv", []):
        for env in secret.get("keyToEnv", []):
            ref = {"name": secret.get("secretName", ""), "key": env.get("secretKey", "")}
            main["env"].append({"name": env.get("envVar", ""), "valueFrom": {"secretKeyRef": ref}})
    if k8s.get("nodeSelector"):
        pod["nodeSelector"] = dict(k8s["nodeSelector"].get("labels", {}))
    if k8s.get("tolerations"):
        pod["tolerations"] = list(k8s["tolerations"])


def _dag_driver_template() -> dict[str, Any]:
    """dag.go:565-657@2.17.0 addDAGDriverTemplate (the args list, inputs and outputs as written there)."""
    args = [
        "--type", "{{inputs.parameters.driver-type}}", "--pipeline_name", "pipeline", "--run_id", "{{workflow.uid}}",
        "--run_name", "{{workflow.name}}", "--run_display_name", "", "--pipeline_job_create_time_utc",
        "{{workflow.creationTimestamp}}", "--dag_execution_id", "{{inputs.parameters.parent-dag-id}}", "--component",
        "{{inputs.parameters.component}}", "--task", "{{inputs.parameters.task}}", "--task_name",
        "{{inputs.parameters.task-name}}", "--runtime_config", "{{inputs.parameters.runtime-config}}",
        "--iteration_index", "{{inputs.parameters.iteration-index}}", "--execution_id_path",
        "{{outputs.parameters.execution-id.path}}", "--iteration_count_path",
        "{{outputs.parameters.iteration-count.path}}", "--condition_path", "{{outputs.parameters.condition.path}}",
        "--http_proxy", "", "--https_proxy", "", "--no_proxy", "", "--ml_pipeline_server_address",
        "ml-pipeline.kubeflow", "--ml_pipeline_server_port", "8887", "--mlmd_server_address",
        "metadata-grpc-service.kubeflow", "--mlmd_server_port", "8080",
    ]  # fmt: skip
    defaults = [{"name": n, "default": d} for n, d in _DAG_DRIVER_DEFAULTS]
    return {
        "name": "system-dag-driver",
        "inputs": {"parameters": [{"name": "component"}, *defaults]},
        "outputs": {
            "parameters": [
                {"name": "execution-id", "valueFrom": {"path": "/tmp/outputs/execution-id"}},
                {"name": "iteration-count", "valueFrom": {"default": "0", "path": "/tmp/outputs/iteration-count"}},
                {"name": "condition", "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}},
            ]
        },
        "metadata": {"annotations": {"pipelines.kubeflow.org/runtime-role": "driver"}},
        "container": _system_container("ghcr.io/kubeflow/kfp-driver:2.17.0", ["driver"], args),
    }


_DAG_DRIVER_DEFAULTS = (
    ("runtime-config", ""),
    ("task", ""),
    ("task-name", ""),
    ("parent-dag-id", "0"),
    ("iteration-index", "-1"),
    ("driver-type", "DAG"),
)


def _container_driver_template() -> dict[str, Any]:
    """container.go:186-291@2.17.0 addContainerDriverTemplate."""
    args = [
        "--type", "CONTAINER", "--pipeline_name", "pipeline", "--run_id", "{{workflow.uid}}", "--run_name",
        "{{workflow.name}}", "--run_display_name", "", "--pipeline_job_create_time_utc",
        "{{workflow.creationTimestamp}}", "--dag_execution_id", "{{inputs.parameters.parent-dag-id}}", "--component",
        "{{inputs.parameters.component}}", "--task", "{{inputs.parameters.task}}", "--task_name",
        "{{inputs.parameters.task-name}}", "--container", "{{inputs.parameters.container}}", "--iteration_index",
        "{{inputs.parameters.iteration-index}}", "--cached_decision_path",
        "{{outputs.parameters.cached-decision.path}}", "--pod_spec_patch_path",
        "{{outputs.parameters.pod-spec-patch.path}}", "--condition_path", "{{outputs.parameters.condition.path}}",
        "--kubernetes_config", "{{inputs.parameters.kubernetes-config}}", "--http_proxy", "", "--https_proxy", "",
        "--no_proxy", "", "--ml_pipeline_server_address", "ml-pipeline.kubeflow", "--ml_pipeline_server_port",
        "8887", "--mlmd_server_address", "metadata-grpc-service.kubeflow", "--mlmd_server_port", "8080",
    ]  # fmt: skip
    inputs = ["component", "task", "container", "task-name", "parent-dag-id"]
    cached = {"default": "false", "path": "/tmp/outputs/cached-decision"}
    return {
        "name": "system-container-driver",
        "inputs": {
            "parameters": [
                *[{"name": n} for n in inputs],
                {"name": "iteration-index", "default": "-1"},
                {"name": "kubernetes-config", "default": ""},
            ]
        },
        "outputs": {
            "parameters": [
                {"name": "pod-spec-patch", "valueFrom": {"default": "", "path": "/tmp/outputs/pod-spec-patch"}},
                {"name": "cached-decision", "default": "false", "valueFrom": cached},
                {"name": "condition", "valueFrom": {"default": "true", "path": "/tmp/outputs/condition"}},
            ]
        },
        "metadata": {"annotations": {"pipelines.kubeflow.org/runtime-role": "driver"}},
        "container": _system_container("ghcr.io/kubeflow/kfp-driver:2.17.0", ["driver"], args),
    }


def _system_container(image: str, command: list[str], args: list[str]) -> dict[str, Any]:
    """The driver container: resources (argo.go:555-564@2.17.0), env (common.go:42-56), security context
    (security_context.go:37-90)."""
    return {
        "name": "",
        "image": image,
        "command": command,
        "args": args,
        "env": [
            {"name": "KFP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "KFP_POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        ],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
        "securityContext": {
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def _executor_template_pair(
    name: str, metadata: list[dict[str, str]], retry: list[dict[str, str]]
) -> list[dict[str, Any]]:
    """container.go:397-597@2.17.0: the executor DAG template and its impl Pod template (launcher init container,
    seven emptyDir volumes, the pod-spec-patch as podSpecPatch)."""
    impl = name.replace("executor", "impl")
    passed = [{"name": p["name"], "value": f"{{{{inputs.parameters.{p['name']}}}}}"} for p in metadata + retry]
    dag = {
        "name": name,
        "inputs": {
            "parameters": [
                {"name": "pod-spec-patch"},
                {"name": "cached-decision", "default": "false"},
                *metadata,
                *retry,
            ]
        },
        "dag": {
            "tasks": [
                {
                    "name": "executor",
                    "template": impl,
                    "arguments": {
                        "parameters": [
                            {"name": "pod-spec-patch", "value": "{{inputs.parameters.pod-spec-patch}}"},
                            *passed,
                        ]
                    },
                    "when": "{{inputs.parameters.cached-decision}} != true",
                }
            ]
        },
    }
    volumes = ["kfp-launcher", "gcs-scratch", "s3-scratch", "minio-scratch", "dot-local-scratch", "dot-cache-scratch",
               "dot-config-scratch"]  # fmt: skip
    launcher = {
        "name": "kfp-launcher",
        "image": "ghcr.io/kubeflow/kfp-launcher:2.17.0",
        "command": ["launcher-v2"],
        "args": ["--copy", "/kfp-launcher/launch"],
        "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m"}},
        "volumeMounts": [{"name": "kfp-launcher", "mountPath": "/kfp-launcher"}],
    }
    pod: dict[str, Any] = {
        "name": impl,
        "inputs": {"parameters": [{"name": "pod-spec-patch"}, *[{"name": p["name"]} for p in metadata + retry]]},
        "metadata": {"annotations": {"pipelines.kubeflow.org/runtime-role": "launcher"}},
        "container": {
            "name": "",
            "image": "gcr.io/ml-pipeline/should-be-overridden-during-runtime",
            "command": ["should-be-overridden-during-runtime"],
            "envFrom": [{"configMapRef": {"name": "metadata-grpc-configmap", "optional": True}}],
            "env": [{"name": "KFP_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumeMounts": [{"name": v, "mountPath": "/" + v} for v in volumes],
        },
        "volumes": [{"name": v, "emptyDir": {}} for v in volumes],
        "initContainers": [launcher],
        "podSpecPatch": "{{inputs.parameters.pod-spec-patch}}",
    }
    if retry:
        pod["retryStrategy"] = {
            "limit": "{{inputs.parameters.retry-max-count}}",
            "backoff": {
                "duration": "{{inputs.parameters.retry-backoff-duration}}",
                "factor": "{{inputs.parameters.retry-backoff-factor}}",
                "maxDuration": "{{inputs.parameters.retry-backoff-max-duration}}",
            },
        }
    return [dag, pod]


def estimate(spec: dict[str, Any], platform: dict[str, Any] | None, kfp_version: str) -> Estimate:
    """The Workflow KFP ``kfp_version`` makes of ``spec`` (and its kubernetes ``platform`` document), all nodes run."""
    model = _Model(spec, platform, kfp_version)
    arguments = model.arguments()
    templates = model.templates()
    nodes_raw, nodes_packed, count = model.status_nodes()
    other_spec = {
        "entrypoint": "entrypoint",
        "serviceAccountName": "pipeline-runner",
        "podMetadata": {
            "annotations": {"pipelines.kubeflow.org/v2_component": "true"},
            "labels": {"pipelines.kubeflow.org/v2_component": "true"},
        },
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    }
    if kfp_version == "2.17":  # workflowDefaults merged into the spec (controller.go:1228-1236@v4.0.5)
        other_spec["ttlStrategy"] = {
            "secondsAfterCompletion": 3600,
            "secondsAfterSuccess": 3600,
            "secondsAfterFailure": 3600,
        }
        other_spec["templateDefaults"] = {"retryStrategy": {"limit": "2", "retryPolicy": "OnError"}}
    metadata = {
        "name": model.wf,
        "generateName": model.name + "-",
        "namespace": _NAMESPACE,
        "uid": _UUID,
        "resourceVersion": "12345678",
        "generation": 42,
        "creationTimestamp": _TIME,
        "labels": {
            "pipeline/runid": _UUID,
            "pipelines.kubeflow.org/v2_component": "true",
            "workflows.argoproj.io/completed": "true",
            "workflows.argoproj.io/phase": "Succeeded",
            "pipeline/persistedFinalState": "true",
        },
        "annotations": {
            "pipelines.kubeflow.org/run_name": model.name,
            "workflows.argoproj.io/pod-name-format": "v2",
        },
        "managedFields": [
            {
                "manager": m,
                "operation": "Update",
                "apiVersion": "argoproj.io/v1alpha1",
                "time": _TIME,
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {".": {}, "f:phase": {}}},
            }
            for m in ("apiserver", "workflow-controller", "persistence-agent")
        ],
    }
    status_other = {
        "phase": "Succeeded",
        "startedAt": _TIME,
        "finishedAt": _TIME,
        "progress": f"{model.pods}/{model.pods}",
        "resourcesDuration": {"cpu": 100, "memory": 1000},
        "conditions": [{"type": "PodRunning", "status": "False"}, {"type": "Completed", "status": "True"}],
        "artifactRepositoryRef": {
            "default": True,
            "artifactRepository": {"archiveLogs": True, "s3": {"bucket": "mlpipeline"}},
        },
        "artifactGCStatus": {"notSpecified": True},
        "taskResultsCompletionStatus": {f"{model.wf}-{_NODE_HASH}{i}": True for i in range(model.pods)},
    }
    texts = {
        "metadata": '"metadata":' + _go(metadata),
        "spec.arguments": '"arguments":' + arguments,
        "spec.templates": '"templates":' + templates,
        "spec.other": _go(other_spec),
        "status.other": _go(status_other),
    }
    scans = {k: model.pieces.scan(v) for k, v in texts.items()}
    parts = {k: scan[0] for k, scan in scans.items()}
    parts["status.nodes"] = len('"nodes":') + nodes_raw
    parts["envelope"] = len('{"kind":"Workflow","apiVersion":"argoproj.io/v1alpha1","spec":{},"status":{}}') + 4
    return Estimate(
        kfp_version=kfp_version,
        parts=parts,
        nodes=count,
        nodes_compressed=nodes_packed,
        copies=model.copies([f for scan in scans.values() for f in scan[2]]),
    )
