"""Talk to a KFP API server through the KFP SDK's ``kfp.Client``: publish pipeline versions, create and
follow runs (the Kubernetes custom resources for KFP's Kubernetes-native mode: :mod:`kfp_manifests`).

kfp is imported inside the functions only, so compiling never imports it. Every failure of the server
(unreachable, 401/403, 5xx) becomes one :class:`RunError` line naming the host and the HTTP status; the
bearer token is never part of a message (everything we show passes through :class:`Masker`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nb2kfp.errors import RunError, UsageError
from nb2kfp.masking import Masker

TOKEN_ENV = "NB2KFP_KFP_TOKEN"
TOKEN_FILE_ENV = "NB2KFP_KFP_TOKEN_FILE"
# KFP's own names (kfp.Client reads the endpoint and the service account token path), after nb2kfp's
ENDPOINT_ENVS = ("NB2KFP_KFP_ENDPOINT", "KF_PIPELINES_ENDPOINT")
KFP_TOKEN_ENV = "KF_PIPELINES_TOKEN"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"  # projected into pods of in-cluster runs
FINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"})
_NETWORK = (ConnectionError, TimeoutError, socket.gaierror, ssl.SSLError)  # the OSErrors that mean "no answer"
_CONNECTION = re.compile(r"^<?\w*Connection(?:\(.*?\)| object at 0x[0-9a-f]+)>?: ")


@dataclass(frozen=True)
class Published:
    pipeline_id: str
    version_id: str
    version_name: str
    created: bool  # False: a version of that name was already there, nothing was uploaded
    url: str
    new_pipeline: bool = False


@dataclass(frozen=True)
class RemoteRun:
    run_id: str
    url: str


def endpoint_from_env() -> str | None:
    """The KFP API address from ``NB2KFP_KFP_ENDPOINT``, else ``KF_PIPELINES_ENDPOINT`` (kfp.Client's variable)."""
    for name in ENDPOINT_ENVS:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


def _read_token(path: str, variable: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise UsageError(f"{variable}={path}: cannot read it ({exc.strerror})") from None


def token_from_env() -> str | None:
    """The bearer token for the KFP API, first found of: ``NB2KFP_KFP_TOKEN``, the file ``NB2KFP_KFP_TOKEN_FILE``
    names, ``KF_PIPELINES_TOKEN``, the file ``KF_PIPELINES_SA_TOKEN_PATH`` names, the service account token KFP
    projects into in-cluster pods (when that file exists)."""
    for name, file_name in ((TOKEN_ENV, TOKEN_FILE_ENV), (KFP_TOKEN_ENV, SA_TOKEN_PATH_ENV)):
        token = os.environ.get(name, "").strip()
        if token:
            return token
        path = os.environ.get(file_name, "").strip()
        if path:
            return _read_token(path, file_name)
    return _read_token(SA_TOKEN_PATH, SA_TOKEN_PATH_ENV) if Path(SA_TOKEN_PATH).is_file() else None


def version_name(commit_sha: str, content_hash: str) -> str:
    """``<commit[:12]>-<content hash[:12]>``: a DNS-1123 name, the same for the same commit and notebook."""
    return f"{commit_sha[:12]}-{content_hash[:12]}".lower()


def normalize_host(host: str) -> str:
    """``http(s)://HOST[:PORT][/PATH]``; ``HOST[:PORT][/PATH]`` without a scheme gets ``https://``, as kfp.Client
    does (so a value that works there works here)."""
    text = host.strip()
    if text and not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", text):
        text = "https://" + text
    scheme, _, rest = text.partition("://")
    rest = rest.rstrip("/")
    if scheme not in ("http", "https") or not rest or rest.startswith("/") or any(c.isspace() for c in rest):
        raise UsageError(f"--host {host!r}: give the KFP API address as http(s)://HOST[:PORT][/PATH] or HOST:PORT")
    return f"{scheme}://{rest}"


def pipeline_url(host: str, pipeline_id: str, version_id: str) -> str:
    return f"{host}/#/pipelines/details/{pipeline_id}/version/{version_id}"


def run_url(host: str, run_id: str) -> str:
    return f"{host}/#/runs/details/{run_id}"


# ---------------------------------------------------------------- errors and the client


def _detail(body: Any) -> str:
    """The server's own message from an error body (grpc-gateway JSON: ``message`` / ``error``), one line."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = str(body or "").strip()
    with contextlib.suppress(ValueError, AttributeError):
        data = json.loads(text)
        text = str(data.get("message") or data.get("error") or text)
    line = " ".join(text.split())
    return line[:200] + ("..." if len(line) > 200 else "")


def _api_exception() -> type[Exception]:
    """kfp-server-api's error type (the package has no type information)."""
    from kfp_server_api.exceptions import ApiException

    return ApiException  # type: ignore[no-any-return]


def _error(host: str, exc: BaseException, token: str | None) -> RunError:
    import urllib3

    if isinstance(exc, _api_exception()):
        status = getattr(exc, "status", None)
        if status in (401, 403):
            message = f"KFP at {host} refused the request (HTTP {status}): check the token in {TOKEN_ENV}"
        elif not status:
            message = f"cannot reach KFP at {host}: {_detail(getattr(exc, 'reason', None))}"
        else:
            detail = _detail(getattr(exc, "body", None)) or str(getattr(exc, "reason", None) or "")
            message = f"KFP at {host} answered HTTP {status}" + (f": {detail}" if detail else "")
    elif isinstance(exc, urllib3.exceptions.MaxRetryError):
        reason = _CONNECTION.sub("", str(exc.reason or exc))  # drop urllib3's "HTTPConnection(host=.., port=..): "
        message = f"cannot reach KFP at {host}: {_detail(reason)}"
    elif isinstance(exc, (urllib3.exceptions.HTTPError, *_NETWORK)):
        message = f"cannot reach KFP at {host}: {_detail(exc)}"
    else:  # _ambiguous: what the server holds makes a name ambiguous
        message = f"KFP at {host}: {_detail(exc)}"
    return RunError(Masker(token)(message))


def _ambiguous(exc: ValueError) -> bool:
    """The SDK's ValueError for a name that several pipelines or experiments on the server share."""
    return str(exc).startswith("Multiple ")


def _drop(record: logging.LogRecord) -> bool:  # noqa: ARG001 - logging.Filter's signature
    return False


@contextlib.contextmanager
def _session(host: str, token: str | None) -> Iterator[Any]:
    """A ``kfp.Client`` for ``host``; the SDK's prints and warnings are swallowed. The server's errors (HTTP,
    no connection, a name it holds several of) become RunError naming the host; any other error keeps its own."""
    import urllib3
    from kfp.client import Client  # not kfp.Client: a local run in this process imports kfp without it

    api_exception = _api_exception()

    class _Client(Client):  # type: ignore[misc]
        def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:  # noqa: ARG002 - the SDK method's signature
            # the SDK retries five times, 5 s apart, on any error (25 s for a bad token): ask once
            return self._healthz_api.healthz_service_get_healthz()

    # urllib3 logs each retry of a refused connection as a warning (the client resets its log levels)
    pool_log = logging.getLogger("urllib3.connectionpool")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        pool_log.addFilter(_drop)
        try:
            yield _Client(host=host, existing_token=token)
        except (api_exception, urllib3.exceptions.HTTPError, *_NETWORK) as exc:
            raise _error(host, exc, token) from None
        except ValueError as exc:  # any other ValueError is not about KFP: it keeps its own message
            if not _ambiguous(exc):
                raise
            raise _error(host, exc, token) from None
        finally:
            pool_log.removeFilter(_drop)


def _conflict(exc: BaseException) -> bool:
    """HTTP 409: a pipeline or version of that name exists (made by a concurrent job)."""
    return isinstance(exc, _api_exception()) and getattr(exc, "status", None) == 409


# ---------------------------------------------------------------- publish


def _eq_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "stringValue": value}]})


def _find_version(client: Any, pipeline_id: str, name: str) -> str | None:
    response = client.list_pipeline_versions(pipeline_id=pipeline_id, page_size=100, filter=_eq_filter("name", name))
    for version in getattr(response, "pipeline_versions", None) or []:
        # servers that ignore the filter still answer with versions: match the name here too
        if name in (getattr(version, "name", None), getattr(version, "display_name", None)):
            return str(version.pipeline_version_id)
    return None


def publish(
    spec: Path, pipeline_name: str, version_name: str, host: str, token: str | None, description: str = ""
) -> Published:
    """Upload ``spec`` as version ``version_name`` of pipeline ``pipeline_name`` (made if absent).

    Idempotent: when the pipeline already has a version of that name, nothing is uploaded (``created=False``).
    """
    api_exception = _api_exception()
    host = normalize_host(host)
    with _session(host, token) as client:
        pipeline_id = client.get_pipeline_id(pipeline_name)
        new_pipeline = False
        if pipeline_id is None:
            try:
                pipeline = client.upload_pipeline(str(spec), pipeline_name=pipeline_name, description=description)
                pipeline_id, new_pipeline = str(pipeline.pipeline_id), True
            except api_exception as exc:  # another job made it meanwhile
                if not _conflict(exc) or (pipeline_id := client.get_pipeline_id(pipeline_name)) is None:
                    raise
        existing = _find_version(client, pipeline_id, version_name)
        if existing is not None:
            return Published(
                pipeline_id, existing, version_name, created=False, url=pipeline_url(host, pipeline_id, existing)
            )
        try:
            version = client.upload_pipeline_version(
                str(spec), version_name, pipeline_id=pipeline_id, description=description or None
            )
        except api_exception as exc:  # the same version uploaded by a concurrent job: that is fine
            if not _conflict(exc) or (existing := _find_version(client, pipeline_id, version_name)) is None:
                raise
            return Published(
                pipeline_id, existing, version_name, created=False, url=pipeline_url(host, pipeline_id, existing)
            )
        version_id = str(version.pipeline_version_id)
        return Published(
            pipeline_id,
            version_id,
            version_name,
            created=True,
            url=pipeline_url(host, pipeline_id, version_id),
            new_pipeline=new_pipeline,
        )


# ---------------------------------------------------------------- runs


def create_run(
    spec: Path, host: str, token: str | None, arguments: dict[str, Any], experiment: str, run_name: str
) -> RemoteRun:
    """Submit ``spec`` (a ``.yaml`` file) as a run in ``experiment`` (made if absent)."""
    host = normalize_host(host)
    with _session(host, token) as client:
        result = client.create_run_from_pipeline_package(
            str(spec), arguments=arguments, run_name=run_name, experiment_name=experiment
        )
    return RemoteRun(str(result.run_id), run_url(host, str(result.run_id)))


def schedule(published: Published, host: str, token: str | None, cron: str, name: str, experiment: str) -> str:
    """A KFP recurring run of the published version on ``cron`` (KFP's six fields, seconds first) in
    ``experiment`` (made if absent), without caching, one run at a time, no catch-up; its id."""
    host = normalize_host(host)
    with _session(host, token) as client:
        found = client.create_experiment(experiment)
        job = client.create_recurring_run(
            str(found.experiment_id),
            name,
            cron_expression=cron,
            max_concurrency=1,
            no_catchup=True,
            pipeline_id=published.pipeline_id,
            version_id=published.version_id,
            enable_caching=False,
        )
    return str(job.recurring_run_id)


def _task_states(run: Any, steps: Collection[str] | None) -> dict[str, str]:
    details = getattr(run, "run_details", None)
    states: dict[str, str] = {}
    for task in getattr(details, "task_details", None) or []:
        name, state = getattr(task, "display_name", None), getattr(task, "state", None)
        if name and state and (steps is None or name in steps):
            states[str(name)] = str(state)
    return states


def follow(
    host: str,
    token: str | None,
    run_id: str,
    on_event: Callable[[str, str], None],
    poll_seconds: float = 2.0,
    timeout: float = 6 * 3600.0,
    steps: Collection[str] | None = None,
) -> str:
    """Poll the run until it ends and return its final state (SUCCEEDED, FAILED, SKIPPED, CANCELED).

    ``on_event(task, state)`` is called whenever a task's state changes; ``steps`` limits it to those task
    names (KFP also lists its driver and DAG tasks).
    """
    host = normalize_host(host)
    seen: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    with _session(host, token) as client:
        while True:
            run = client.get_run(run_id)
            for name, state in _task_states(run, steps).items():
                if seen.get(name) != state:
                    seen[name] = state
                    on_event(name, state)
            state = str(getattr(run, "state", None) or "RUNTIME_STATE_UNSPECIFIED")
            if state in FINAL_STATES:
                return state
            if time.monotonic() >= deadline:
                raise RunError(f"run {run_id} on {host} is still {state} after {timeout:g}s: {run_url(host, run_id)}")
            time.sleep(poll_seconds)
