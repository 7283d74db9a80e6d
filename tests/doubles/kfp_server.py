"""A KFP API server double: a real HTTP server on 127.0.0.1 speaking the KFP v2beta1 REST shapes that
``kfp.Client`` 2.17.3 (kfp-server-api 2.x) sends and reads, with its state in memory.

Covered (what the client calls for upload / list / run / poll):

- ``GET  /apis/v2beta1/healthz`` (single-user: ``multi_user`` false)
- ``GET  /apis/v2beta1/pipelines`` with a ``filter`` (EQUALS / NOT_EQUALS on ``name`` or ``display_name``),
  ``GET /apis/v2beta1/pipelines/{id}``
- ``POST /apis/v2beta1/pipelines/upload`` (multipart ``uploadfile``; makes the pipeline and a first version
  named after it, as KFP does) and ``POST /apis/v2beta1/pipelines/upload_version`` (``name``, ``pipelineid``);
  a second pipeline or version of the same name is 409 ALREADY_EXISTS
- ``GET  /apis/v2beta1/pipelines/{id}/versions`` (filtered like pipelines), ``.../versions/{version_id}``
- ``GET/POST /apis/v2beta1/experiments``, ``GET /apis/v2beta1/experiments/{id}``
- ``POST /apis/v2beta1/recurringruns`` (a ``pipeline_version_reference`` and a 6-field ``cron_schedule``; kept,
  never triggered)
- ``POST /apis/v2beta1/runs`` (inline ``pipeline_spec``, optionally wrapped with ``platform_spec``, or a
  ``pipeline_version_reference``), ``GET /apis/v2beta1/runs/{id}``
- bearer auth: built with ``token=...``, any request without ``Authorization: Bearer <token>`` gets 401;
  ``fail_with = 500`` makes every request fail with that status.

Uploaded and submitted specs must parse as a KFP ``PipelineSpec`` proto (kfp's own
``pipeline_spec_pb2``), else 400; run arguments must be inputs of the pipeline's root, else 400.
A run moves forward one notch per ``GET`` of it: PENDING, then each DAG task in topological order
RUNNING then SUCCEEDED (or FAILED for ``fail_task``), then the run's final state. ``run_details.task_details``
lists a ``root`` DAG task and one task per DAG task with ``display_name`` = the task's key.

NOT covered: real scheduling or execution (nothing runs; states only advance on polls, one task at a
time, no parallel branches), drivers' and executors' own task entries, artifacts, metrics and MLMD,
logs, caching, multi-user mode and namespaces (profiles, ``kubeflow-userid``), pagination (every list is
one page; ``page_token`` / ``page_size`` / ``sort_by`` are ignored), filters other than EQUALS and
NOT_EQUALS on names, recurring runs, archive / delete / terminate / retry, ``package_url`` uploads,
``/apis/v1beta1``, the Kubernetes-native (CRD) mode, timeouts or slow answers, and the exact error
bodies of the real server (ours are grpc-gateway shaped: ``{"error", "code", "message"}``).
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

_API = "/apis/v2beta1"
_OPERATIONS = {1: "EQUALS", 2: "NOT_EQUALS"}  # protojson takes an enum by name or by number (the SDK sends numbers)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_spec(docs: list[Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Validate a pipeline spec (and platform spec) with kfp's protos; 400 when they do not parse."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    docs = [d for d in docs if d is not None]
    if not docs or not isinstance(docs[0], dict):
        raise ApiError(400, "Invalid input error: the file holds no pipeline spec")
    spec, platform = docs[0], (docs[1] if len(docs) > 1 else None)
    for key in ("pipelineInfo", "root", "components", "deploymentSpec", "schemaVersion"):
        if key not in spec:
            raise ApiError(400, f"Invalid input error: pipeline spec has no {key}")
    try:
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
        if platform is not None:
            json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    except json_format.ParseError as exc:
        raise ApiError(400, f"Invalid input error: {exc}") from None
    return spec, platform


def _topological(spec: dict[str, Any]) -> list[str]:
    tasks: dict[str, Any] = spec.get("root", {}).get("dag", {}).get("tasks", {})
    order: list[str] = []
    pending = dict(sorted(tasks.items()))
    while pending:
        ready = [n for n, t in pending.items() if all(d in order for d in t.get("dependentTasks", []))]
        if not ready:
            raise ApiError(400, "Invalid input error: the DAG has a cycle")
        order.extend(ready)
        for name in ready:
            del pending[name]
    return order


@dataclass
class Run:
    run_id: str
    experiment_id: str
    display_name: str
    spec: dict[str, Any]
    parameters: dict[str, Any]
    tasks: list[str]
    fail_task: str | None
    created_at: str = field(default_factory=_now)
    polls: int = 0

    def task_states(self) -> dict[str, str]:
        """Task name -> state after ``polls`` GETs (absent: not started yet)."""
        states: dict[str, str] = {}
        done = self.polls - 1  # tasks finished so far (the first poll sees the run PENDING)
        for i, name in enumerate(self.tasks):
            if i < done:
                states[name] = "FAILED" if name == self.fail_task else "SUCCEEDED"
                if name == self.fail_task:
                    break
            elif i == done:
                states[name] = "RUNNING"
        return states

    def state(self) -> str:
        if self.polls == 0:
            return "PENDING"
        states = self.task_states()
        if "FAILED" in states.values():
            return "FAILED"
        if len(states) == len(self.tasks) and all(s == "SUCCEEDED" for s in states.values()):
            return "SUCCEEDED"
        return "RUNNING"

    def as_json(self) -> dict[str, Any]:
        state = self.state()
        details = [{"run_id": self.run_id, "task_id": f"{self.run_id}-root", "display_name": "root", "state": state}]
        details += [
            {"run_id": self.run_id, "task_id": f"{self.run_id}-{name}", "display_name": name, "state": s}
            for name, s in self.task_states().items()
        ]
        body: dict[str, Any] = {
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
            "display_name": self.display_name,
            "storage_state": "AVAILABLE",
            "pipeline_spec": self.spec,
            "runtime_config": {"parameters": self.parameters},
            "created_at": self.created_at,
            "state": state,
            "run_details": {"task_details": details},
        }
        if state in ("SUCCEEDED", "FAILED"):
            body["finished_at"] = _now()
        return body


class KfpServer:
    """``with KfpServer(token="t") as kfp: kfp.url ...``; state in ``pipelines``, ``versions``, ``runs``."""

    def __init__(self, token: str | None = None, fail_task: str | None = None) -> None:
        self.token = token
        self.fail_task = fail_task
        self.fail_with: int | None = None
        self.lock = threading.Lock()
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, dict[str, Any]] = {}  # version id -> version (with "pipeline_id")
        self.specs: dict[str, str] = {}  # version id -> uploaded YAML text
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, Run] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status); never headers
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The address (still the same after :meth:`stop`, when nothing answers there any more)."""
        assert self._port, "start the server first: with KfpServer() as kfp"
        return f"http://127.0.0.1:{self._port}"

    def __enter__(self) -> KfpServer:
        server = self

        class Handler(_Handler):
            kfp = server

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._port = int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, name="kfp-double", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    # --------------------------------------------------------- queries for tests

    def versions_of(self, pipeline_name: str) -> list[dict[str, Any]]:
        ids = [p["pipeline_id"] for p in self.pipelines.values() if p["name"] == pipeline_name]
        return [v for v in self.versions.values() if v["pipeline_id"] in ids]

    # --------------------------------------------------------- the API

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes, ctype: str) -> Any:
        with self.lock:
            return self._route(method, path, query, body, ctype)

    def _route(self, method: str, path: str, query: dict[str, str], body: bytes, ctype: str) -> Any:
        p = path.removeprefix(_API)
        if method == "GET" and p == "/healthz":
            return {"multi_user": False, "pipeline_store": "database"}
        if method == "GET" and p == "/pipelines":
            return _listing("pipelines", _filtered(list(self.pipelines.values()), query.get("filter")))
        if method == "POST" and p == "/pipelines/upload":
            return self._upload(query, body, ctype)
        if method == "POST" and p == "/pipelines/upload_version":
            return self._upload_version(query, body, ctype)
        if m := re.fullmatch(r"/pipelines/([^/]+)", p):
            return _get(self.pipelines, m.group(1), "pipeline")
        if m := re.fullmatch(r"/pipelines/([^/]+)/versions", p):
            _get(self.pipelines, m.group(1), "pipeline")
            mine = [v for v in self.versions.values() if v["pipeline_id"] == m.group(1)]
            return _listing("pipeline_versions", _filtered(mine, query.get("filter")))
        if m := re.fullmatch(r"/pipelines/([^/]+)/versions/([^/]+)", p):
            version = _get(self.versions, m.group(2), "pipeline version")
            if version["pipeline_id"] != m.group(1):
                raise ApiError(404, f"pipeline version {m.group(2)} not found")
            return version
        if method == "GET" and p == "/experiments":
            return _listing("experiments", _filtered(list(self.experiments.values()), query.get("filter")))
        if method == "POST" and p == "/experiments":
            return self._create_experiment(_json(body))
        if m := re.fullmatch(r"/experiments/([^/]+)", p):
            return _get(self.experiments, m.group(1), "experiment")
        if method == "POST" and p == "/runs":
            return self._create_run(_json(body))
        if method == "POST" and p == "/recurringruns":
            return self._create_recurring_run(_json(body))
        if method == "GET" and (m := re.fullmatch(r"/runs/([^/:]+)", p)):
            run = _get(self.runs, m.group(1), "run")
            run.polls += 1
            return run.as_json()
        raise ApiError(404, f"the double does not serve {method} {path}")

    def _upload(self, query: dict[str, str], body: bytes, ctype: str) -> dict[str, Any]:
        text, filename = _uploaded_file(body, ctype)
        spec, _ = _parse_spec(list(yaml.safe_load_all(text)))
        name = query.get("name") or query.get("display_name") or filename.rsplit(".", 1)[0]
        if any(p["name"] == name for p in self.pipelines.values()):
            raise ApiError(409, f"Already exist error: pipeline with name {name!r} already exists")
        pipeline = {
            "pipeline_id": str(uuid.uuid4()),
            "name": name,
            "display_name": query.get("display_name") or name,
            "description": query.get("description", ""),
            "created_at": _now(),
        }
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline["pipeline_id"], name, query.get("description", ""), text, spec)
        return pipeline

    def _upload_version(self, query: dict[str, str], body: bytes, ctype: str) -> dict[str, Any]:
        text, _ = _uploaded_file(body, ctype)
        spec, _ = _parse_spec(list(yaml.safe_load_all(text)))
        pipeline_id = query.get("pipelineid", "")
        _get(self.pipelines, pipeline_id, "pipeline")
        name = query.get("name") or query.get("display_name")
        if not name:
            raise ApiError(400, "Invalid input error: pipeline version name is empty")
        if any(v["pipeline_id"] == pipeline_id and v["name"] == name for v in self.versions.values()):
            raise ApiError(409, f"Already exist error: pipeline version with name {name!r} already exists")
        return self._add_version(pipeline_id, name, query.get("description", ""), text, spec)

    def _add_version(self, pipeline_id: str, name: str, description: str, text: str, spec: Any) -> dict[str, Any]:
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": str(uuid.uuid4()),
            "name": name,
            "display_name": name,
            "description": description,
            "created_at": _now(),
            "pipeline_spec": spec,
        }
        self.versions[version["pipeline_version_id"]] = version
        self.specs[version["pipeline_version_id"]] = text
        return version

    def _create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("display_name")
        if not name:
            raise ApiError(400, "Invalid input error: experiment display_name is empty")
        if any(e["display_name"] == name for e in self.experiments.values()):
            raise ApiError(409, f"Already exist error: experiment {name!r} already exists")
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": name,
            "description": body.get("description") or "",
            "namespace": body.get("namespace") or "",
            "storage_state": "AVAILABLE",
            "created_at": _now(),
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _create_run(self, body: dict[str, Any]) -> dict[str, Any]:
        _get(self.experiments, body.get("experiment_id") or "", "experiment")
        raw = body.get("pipeline_spec")
        if raw is None and body.get("pipeline_version_reference"):
            ref = body["pipeline_version_reference"]
            raw = _get(self.versions, ref.get("pipeline_version_id", ""), "pipeline version")["pipeline_spec"]
        if not isinstance(raw, dict):
            raise ApiError(400, "Invalid input error: a run needs pipeline_spec or pipeline_version_reference")
        docs = [raw["pipeline_spec"], raw.get("platform_spec")] if "pipeline_spec" in raw else [raw]
        spec, _ = _parse_spec(docs)
        params = (body.get("runtime_config") or {}).get("parameters") or {}
        known = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ApiError(400, f"Invalid input error: unknown pipeline parameters {unknown}")
        run = Run(
            str(uuid.uuid4()),
            body["experiment_id"],
            body.get("display_name") or "run",
            raw,
            params,
            _topological(spec),
            self.fail_task,
        )
        self.runs[run.run_id] = run
        return run.as_json()

    def _create_recurring_run(self, body: dict[str, Any]) -> dict[str, Any]:
        _get(self.experiments, body.get("experiment_id") or "", "experiment")
        ref = body.get("pipeline_version_reference") or {}
        _get(self.versions, ref.get("pipeline_version_id", ""), "pipeline version")
        cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron", "")
        if len(cron.split()) != 6:  # KFP's scheduled workflows: robfig/cron with a seconds field
            raise ApiError(400, f"Invalid input error: cron {cron!r} needs 6 fields")
        job = {**body, "recurring_run_id": str(uuid.uuid4()), "status": "ENABLED", "created_at": _now()}
        self.recurring_runs[job["recurring_run_id"]] = job
        return job


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise ApiError(400, "Invalid input error: the body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid input error: the body is not a JSON object")
    return data


def _get(table: dict[str, Any], key: str, what: str) -> Any:
    if key not in table:
        raise ApiError(404, f"{what} {key} not found")
    return table[key]


def _listing(key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    # grpc-gateway leaves out empty fields: an empty list is {}
    return {key: items, "total_size": len(items)} if items else {}


def _filtered(items: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    if not text:
        return items
    try:
        predicates = json.loads(text).get("predicates", [])
    except (ValueError, AttributeError):
        raise ApiError(400, "Invalid input error: filter is not JSON") from None
    for pred in predicates:
        key, op = pred.get("key"), _OPERATIONS.get(pred.get("operation"), pred.get("operation"))
        value = pred.get("stringValue", pred.get("string_value"))
        if key not in ("name", "display_name") or op not in ("EQUALS", "NOT_EQUALS") or value is None:
            raise ApiError(400, f"Invalid input error: the double does not support filter {pred}")
        items = [i for i in items if (i.get(key) == value) == (op == "EQUALS")]
    return items


def _uploaded_file(body: bytes, ctype: str) -> tuple[str, str]:
    if not ctype.startswith("multipart/form-data"):
        raise ApiError(400, "Invalid input error: upload needs multipart/form-data")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            data = part.get_payload(decode=True)
            text = data.decode("utf-8") if isinstance(data, bytes) else ""
            return text, part.get_filename() or "pipeline.yaml"
    raise ApiError(400, "Invalid input error: no uploadfile in the form")


class _Handler(BaseHTTPRequestHandler):
    kfp: KfpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            if self.kfp.fail_with is not None:
                raise ApiError(self.kfp.fail_with, "Internal error: the double was told to fail")
            if self.kfp.token is not None and self.headers.get("Authorization") != f"Bearer {self.kfp.token}":
                raise ApiError(401, "Unauthenticated: a valid bearer token is required")
            status, answer = 200, self.kfp.handle(method, parts.path, query, body, self.headers.get("Content-Type", ""))
        except ApiError as exc:
            codes = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6}
            status, answer = exc.status, {"error": str(exc), "code": codes.get(exc.status, 13), "message": str(exc)}
        data = json.dumps(answer).encode()
        self.kfp.requests.append((method, parts.path, status))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")
