"""The GitLab webhook receiver: validate a push, commit it to the queue, answer 202. Nothing else happens in a request.

``POST /webhooks/gitlab`` (push and tag push hooks), ``GET /healthz``, ``GET /metrics`` (Prometheus text format).

Security:

- ``X-Gitlab-Token`` must equal the secret (``NB2KFP_WEBHOOK_SECRET`` or a file), compared in constant time; 401 if not.
- When a signing token is configured (``NB2KFP_WEBHOOK_SIGNING_TOKEN`` or ``..._FILE``, GitLab's ``whsec_<base64>``
  form), the ``webhook-signature`` header must hold ``v1,<base64 HMAC-SHA256(key, id.timestamp.body)>`` for the
  ``webhook-id`` and ``webhook-timestamp`` headers (GitLab follows the Standard Webhooks specification), with the
  timestamp within 5 minutes; 401 if not.
- The body is read up to a limit (default 1 MiB), 413 beyond it, and within ``NB2KFP_SERVE_BODY_TIMEOUT`` seconds
  (30), 408 after; malformed JSON or a body that is no push is 400, with a short reason; nothing is queued for any of
  these. Header deadline and connection cap: :mod:`nb2kfp.delivery.guard`.
- Events of projects not configured, and other event kinds, are answered 202 and ignored (GitLab disables hooks
  that keep failing), and counted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nb2kfp import git
from nb2kfp.delivery.queue import QUEUED, Event, EventQueue
from nb2kfp.errors import UsageError

EVENTS = ("Push Hook", "Tag Push Hook")
MAX_BODY = 1 << 20
HEADER_TIMEOUT = 10.0  # seconds from a connection's start to its request's complete headers
BODY_TIMEOUT = 30.0  # seconds to read a body
SIGNATURE_TOLERANCE = 300.0
MIN_SECRET = 16


def _read_secret(name: str, env: Mapping[str, str], file: Path | None = None) -> str | None:
    """A secret from ``file``, else ``$NAME_FILE``, else ``$NAME``; None when none is set."""
    path = file or (Path(env[f"{name}_FILE"]) if env.get(f"{name}_FILE") else None)
    if path is not None:
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
        if not value:
            raise UsageError(f"{path} is empty")
        return value
    return env.get(name) or None


def signing_key(token: str) -> bytes:
    """The HMAC key of a GitLab signing token (``whsec_`` + base64 of the key)."""
    try:
        return base64.b64decode(token.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("the webhook signing token must look like whsec_<base64>") from None


def sign(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value GitLab sends (one ``v1`` signature)."""
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_ok(key: bytes, headers: Mapping[str, str], body: bytes, now: float | None = None) -> bool:
    webhook_id, stamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    try:
        age = abs((time.time() if now is None else now) - int(stamp))
    except ValueError:
        return False
    if not webhook_id or age > SIGNATURE_TOLERANCE:
        return False
    expected = sign(key, webhook_id, stamp, body).encode()
    return any(hmac.compare_digest(given.encode(), expected) for given in headers.get("webhook-signature", "").split())


def default_max_connections() -> int:
    """Open connections ``serve`` accepts at once: up to 512, leaving 128 of the process's file descriptors for the
    queue, git and the workers."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(16, min(512, (4096 if soft == resource.RLIM_INFINITY else soft) - 128))


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 1e6:
        raise UsageError(f"{name}={text[:40]!r}: give a positive number")
    return value


@dataclass(frozen=True)
class ServeConfig:
    secret: str | None
    projects: frozenset[str]  # project ids and/or paths (group/name)
    signing_key: bytes | None = None
    max_body: int = MAX_BODY
    git_token: str | None = field(default=None, repr=False)  # for fetching; never in a URL, argv or log
    ci_registry: str | None = None
    ci_host: str | None = None
    allow_local_repos: bool = False  # a local folder / file:// as gitlab_url (tests, mirrors)
    gitlab_url: str | None = None  # where projects are fetched from (checked: git.check_server_url); never a payload's
    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    max_connections: int = 0  # open at once; 0: from the process's file descriptor limit (default_max_connections)

    @classmethod
    def load(
        cls,
        secret_file: Path | None,
        projects: list[str],
        env: Mapping[str, str] | None = None,
        *,
        allow_weak_secret: bool = False,
    ) -> ServeConfig:
        env = os.environ if env is None else env
        secret = _read_secret("NB2KFP_WEBHOOK_SECRET", env, secret_file)
        if secret is not None and len(secret) < MIN_SECRET and not allow_weak_secret:
            raise UsageError(
                f"the webhook secret has {len(secret)} characters: use {MIN_SECRET} or more "
                "(e.g. openssl rand -hex 32), or --allow-weak-secret"
            )
        signing = _read_secret("NB2KFP_WEBHOOK_SIGNING_TOKEN", env)
        if secret is None and signing is None:
            raise UsageError(
                "set a webhook secret: --secret-file, NB2KFP_WEBHOOK_SECRET or NB2KFP_WEBHOOK_SIGNING_TOKEN"
            )
        if not projects:
            raise UsageError("name the projects to serve: --project ID_OR_PATH (one or more)")
        served = frozenset(p.strip().strip("/") for p in projects)
        for project in served:
            try:
                if not project.isdigit():
                    git.check_project_path(project)
            except ValueError as exc:
                raise UsageError(f"--project {project[:80]!r}: {exc}") from None
        allow_local = env.get("NB2KFP_SERVE_ALLOW_LOCAL_REPOS") == "1"
        gitlab_url = env.get("NB2KFP_SERVE_GITLAB_URL") or None
        try:
            gitlab_url = None if gitlab_url is None else git.check_server_url(gitlab_url, allow_local=allow_local)
        except ValueError as exc:
            raise UsageError(f"NB2KFP_SERVE_GITLAB_URL: {exc}") from None
        return cls(
            secret=secret,
            projects=served,
            signing_key=signing_key(signing) if signing else None,
            max_body=int(env.get("NB2KFP_WEBHOOK_MAX_BODY") or MAX_BODY),
            git_token=_read_secret("NB2KFP_GIT_TOKEN", env),
            ci_registry=env.get("NB2KFP_SERVE_REGISTRY") or None,
            ci_host=env.get("NB2KFP_SERVE_KFP_HOST") or None,
            allow_local_repos=allow_local,
            gitlab_url=gitlab_url,
            header_timeout=_number(env, "NB2KFP_SERVE_HEADER_TIMEOUT", HEADER_TIMEOUT),
            body_timeout=_number(env, "NB2KFP_SERVE_BODY_TIMEOUT", BODY_TIMEOUT),
            max_connections=int(_number(env, "NB2KFP_SERVE_MAX_CONNECTIONS", default_max_connections())),
        )

    def serves(self, event: Event) -> bool:
        return event.project in self.projects or (bool(event.project_path) and event.project_path in self.projects)

    def repository_url(self, event: Event) -> str:
        """Where the server fetches ``event``'s project: its own GitLab URL and the project path it serves, never a
        URL of the payload (whoever holds the shared secret could name any host: it would receive the git token).
        ValueError (short reason) when the server cannot tell."""
        if self.gitlab_url is None:
            raise ValueError("the server has no GitLab URL to fetch projects from: set NB2KFP_SERVE_GITLAB_URL")
        if not event.project_path or event.project_path not in self.projects:
            raise ValueError(
                f"project {event.project} is served by its id: the server fetches only projects it serves by path "
                "(--project group/name)"
            )
        base = git.check_server_url(self.gitlab_url, allow_local=self.allow_local_repos)
        return f"{base}/{git.check_project_path(event.project_path)}.git"

    def server_url(self) -> str | None:
        """The GitLab web URL the ci runs report to (``CI_SERVER_URL``): the server's own, when it is one."""
        return self.gitlab_url if self.gitlab_url and self.gitlab_url.startswith(("https:", "http:")) else None


class Metrics:
    """Counters shared by the request handler and the workers (one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, float] = {}
        self.degraded: str | None = None  # why /healthz answers 503 (the queue cannot be written), or None

    def inc(self, name: str, amount: float = 1.0) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0.0) + amount

    def processed(self, seconds: float, *, ok: bool) -> None:
        self.inc("processed" if ok else "failed")
        self.inc("seconds_sum", seconds)
        self.inc("seconds_count")

    def render(self, queued: int) -> str:
        with self._lock:
            c = dict(self.counts)
        p = "nb2kfp_webhook_events"
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            out.extend((f"# HELP {p}_{name} {help_text}", f"# TYPE {p}_{name} {kind}"))
            out.extend(f"{p}_{name}{suffix} {value:g}" for suffix, value in samples)

        metric("received_total", "counter", "Webhook requests received.", [("", c.get("received", 0))])
        metric("deduplicated_total", "counter", "Deliveries already queued (retries).", [("", c.get("dup", 0))])
        ignored = sorted((k.split(":", 1)[1], v) for k, v in c.items() if k.startswith("ignored:"))
        metric(
            "ignored_total",
            "counter",
            "Events answered 2xx and ignored.",
            [(f'{{reason="{r}"}}', v) for r, v in ignored],
        )
        rejected = sorted((k.split(":", 1)[1], v) for k, v in c.items() if k.startswith("rejected:"))
        metric("rejected_total", "counter", "Requests refused.", [(f'{{code="{r}"}}', v) for r, v in rejected])
        metric("queued", "gauge", "Events waiting for a worker.", [("", queued)])
        metric("processed_total", "counter", "Events processed successfully.", [("", c.get("processed", 0))])
        metric("failed_total", "counter", "Events whose processing failed.", [("", c.get("failed", 0))])
        metric("store_errors_total", "counter", "Queue writes that failed (retried).", [("", c.get("store_errors", 0))])
        metric(
            "processing_seconds",
            "summary",
            "Time to process an event.",
            [("_sum", c.get("seconds_sum", 0)), ("_count", c.get("seconds_count", 0))],
        )
        return "\n".join(out) + "\n"


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit`` (checked on the header and while reading)."""
    try:
        if int(request.headers.get("content-length") or 0) > limit:
            return None
    except ValueError:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class _Refused(Exception):
    """A delivery refused (4xx, or 503: GitLab retries it); nothing is queued."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class _Ignored(Exception):
    """A delivery answered 202 but not queued: another event kind, or a project not served here."""

    def __init__(self, counter: str, reason: str) -> None:
        super().__init__(reason)
        self.counter, self.reason = counter, reason


async def _authentic_body(config: ServeConfig, request: Request) -> bytes:
    """The request's body, once its token, size, arrival time and signature are good."""
    if config.secret is not None:
        given = request.headers.get("x-gitlab-token", "").encode()
        if not hmac.compare_digest(given, config.secret.encode()):
            raise _Refused(401, "missing or wrong X-Gitlab-Token")
    try:
        body = await asyncio.wait_for(_read_limited(request, config.max_body), config.body_timeout)
    except asyncio.TimeoutError:
        raise _Refused(408, f"body not received within {config.body_timeout:g} s") from None
    if body is None:
        raise _Refused(413, f"body over {config.max_body} bytes")
    if config.signing_key is not None and not signature_ok(config.signing_key, request.headers, body):
        raise _Refused(401, "missing, stale or wrong webhook-signature")
    return body


def _event(headers: Mapping[str, str], body: bytes) -> Event:
    """The push (or tag push) a delivery's headers and body describe."""
    kind = headers.get("x-gitlab-event", "")
    if kind not in EVENTS:
        raise _Ignored("event", f"event {kind[:40]!r} is not handled")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(400, f"malformed JSON: {str(exc)[:80]}") from None
    except RecursionError:
        raise _Refused(400, "malformed JSON: nested too deeply") from None
    key = headers.get("idempotency-key") or headers.get("x-gitlab-event-uuid") or None
    try:
        if not isinstance(payload, dict):
            raise ValueError("the body is not a JSON object")
        return Event.from_payload(payload, key)
    except ValueError as exc:
        raise _Refused(400, str(exc)) from None


@dataclass(frozen=True)
class _Receiver:
    """The app's request handlers."""

    config: ServeConfig
    queue: EventQueue
    stats: Metrics

    async def gitlab(self, request: Request) -> Response:
        self.stats.inc("received")
        try:
            event_id, duplicate = await self._queued(request)
        except _Refused as refused:
            self.stats.inc(f"rejected:{refused.code}")
            return JSONResponse({"status": "rejected", "reason": refused.reason}, status_code=refused.code)
        except _Ignored as ignored:
            self.stats.inc(f"ignored:{ignored.counter}")
            return JSONResponse({"status": "ignored", "reason": ignored.reason}, status_code=202)
        if duplicate:
            self.stats.inc("dup")
        return JSONResponse({"status": "duplicate" if duplicate else "queued", "id": event_id}, status_code=202)

    async def _queued(self, request: Request) -> tuple[int, bool]:
        """Queue the push a delivery brings: (its event id, whether it was in the queue already)."""
        event = _event(request.headers, await _authentic_body(self.config, request))
        if not self.config.serves(event):
            raise _Ignored("project", "project not served here")
        try:
            return await run_in_threadpool(self.queue.put, event)
        except Exception:  # the queue could not commit: let GitLab retry
            raise _Refused(503, "queue unavailable") from None

    async def healthz(self, request: Request) -> Response:  # noqa: ARG002 - Starlette's handler signature
        try:
            counts = await run_in_threadpool(self.queue.counts)
        except sqlite3.Error as exc:
            return JSONResponse({"status": "degraded", "reason": f"queue unreadable: {exc}"}, status_code=503)
        if self.stats.degraded:
            return JSONResponse({"status": "degraded", "reason": self.stats.degraded}, status_code=503)
        return JSONResponse({"status": "ok", "queued": counts.get(QUEUED, 0)})

    async def metrics_page(self, request: Request) -> Response:  # noqa: ARG002 - Starlette's handler signature
        counts = await run_in_threadpool(self.queue.counts)
        return PlainTextResponse(self.stats.render(counts.get(QUEUED, 0)), media_type="text/plain; version=0.0.4")


def create_app(config: ServeConfig, queue: EventQueue, metrics: Metrics | None = None) -> Starlette:
    receiver = _Receiver(config, queue, metrics or Metrics())
    return Starlette(
        routes=[
            Route("/webhooks/gitlab", receiver.gitlab, methods=["POST"]),
            Route("/healthz", receiver.healthz, methods=["GET"]),
            Route("/metrics", receiver.metrics_page, methods=["GET"]),
        ]
    )
