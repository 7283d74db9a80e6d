"""The webhook's workers: threads that claim queued pushes, fetch the project and run ``nb2kfp ci all`` on the commit.

For each push a worker fetches the project's repository into ``DATA/repos/<project id>`` from the server's own
GitLab (``NB2KFP_SERVE_GITLAB_URL`` + the project path it serves + ``.git``; never a URL of the payload: https, plain
http only to loopback, a local folder or ``file://`` only with ``NB2KFP_SERVE_ALLOW_LOCAL_REPOS=1``); a token from
``NB2KFP_GIT_TOKEN`` goes to git as an ``http.<that URL>.extraHeader`` through ``GIT_CONFIG_*`` environment variables:
never in the URL, the command line or a log, never to another host), checks out ``after`` and runs
``nb2kfp ci all`` there in a subprocess that ends with the server (:mod:`nb2kfp.delivery.tethered`; its own
environment: ``CI_COMMIT_SHA``, ``CI_COMMIT_BEFORE_SHA``, ...), writing to ``DATA/out/<event id>``. A branch or tag
deletion builds nothing; a new branch builds everything; otherwise the files changed between the push's base and
``after`` (git diff in the fetched repository, never the payload's ``commits[]``, which holds only 20). The result
(ok or failed, with each failed notebook's located errors from the ``ci.json`` the run wrote) is recorded in the
queue (:mod:`nb2kfp.delivery.queue`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from nb2kfp import git
from nb2kfp.delivery import tethered
from nb2kfp.delivery.ci import State
from nb2kfp.delivery.queue import Event, EventQueue
from nb2kfp.delivery.webhook import Metrics, ServeConfig
from nb2kfp.errors import Nb2KfpError, RunError
from nb2kfp.masking import Masker

Report = Callable[[str], None]
T = TypeVar("T")
CI_TIMEOUT = 3600
# A claim's lease outlasts any processing (at most 12 git calls, each killed after GIT_TIMEOUT, then the ci run, killed
# after CI_TIMEOUT): when it runs out the worker is gone or stuck, and the event is queued again for another.
LEASE_SECONDS = CI_TIMEOUT + 16 * git.GIT_TIMEOUT
STORE_TRIES = 5  # tries of one queue write (backoff from STORE_BACKOFF seconds, doubling)
STORE_BACKOFF = 0.1
MAX_ATTEMPTS = 3  # an event claimed more often than this (it crashed the server each time) is marked failed
_SECRET_VARIABLES = ("NB2KFP_WEBHOOK_SECRET", "NB2KFP_WEBHOOK_SIGNING_TOKEN", "NB2KFP_GIT_TOKEN")


def checkout(event: Event, repos: Path, config: ServeConfig) -> tuple[Path, str]:
    """Fetch the project's repository from the server's GitLab (:meth:`ServeConfig.repository_url`) and check out the
    pushed commit; (work tree, full commit id). Payload values reach git only validated (:func:`git.fetch_commit`)."""
    try:
        url = config.repository_url(event)
        after = git.check_sha(event.after, "after")
    except ValueError as exc:
        raise RunError(f"push: {exc}") from None
    tree = repos / event.project
    return tree, git.fetch_commit(tree, url, after, config.git_token)


def changed_files(tree: Path, base: str, commit: str) -> list[str] | None:
    """Files changed from ``base`` to ``commit``; None means everything (new branch, or base not in the clone)."""
    if git.is_zero(base) or not git.has_commit(git.check_sha(base, "before"), tree):
        return None
    return git.changed_files(base, commit, tree)


def _ci_env(event: Event, commit: str, server_url: str | None) -> dict[str, str]:
    """The ci run's environment; ``CI_SERVER_URL`` (where its report phase sends the GitLab token) is the server's
    own GitLab, never a URL of the payload."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", *_SECRET_VARIABLES))}
    name = event.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    env.update(
        CI_COMMIT_SHA=commit,
        CI_COMMIT_BEFORE_SHA=event.base or event.before,
        CI_COMMIT_REF_NAME=name,
        CI_PROJECT_ID=event.project,
        CI_PROJECT_PATH=event.project_path,
        CI_PIPELINE_SOURCE="push",
        NB2KFP_EVENT_ID=str(event.id),
        NB2KFP_CATALOG_ALLOWED_URLS=os.environ.get("NB2KFP_SERVE_CATALOG_URLS", ""),  # the pushed repo cannot choose
    )
    if event.kind == "tag_push":
        env["CI_COMMIT_TAG"] = name
    else:
        env["CI_COMMIT_BRANCH"] = name
    if server_url:
        env["CI_SERVER_URL"] = server_url
    return env


class Workers:
    """Threads that claim events, process them and record the result."""

    def __init__(self, queue: EventQueue, config: ServeConfig, data: Path, metrics: Metrics, report: Report) -> None:
        self.queue, self.config, self.data, self.metrics, self.report = queue, config, data, metrics, report
        self.stop = threading.Event()
        self.mask = Masker(config.secret, config.git_token)
        self._children: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self, count: int) -> None:
        for n in range(count):
            thread = threading.Thread(target=self._loop, args=(f"worker-{os.getpid()}-{n}",), daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop claiming; kill running ci subprocesses (their events stay in progress and are redone on restart)."""
        self.stop.set()
        with self._lock:
            for child in self._children:
                child.kill()
        for thread in self._threads:
            thread.join(timeout)

    def _loop(self, name: str) -> None:
        result: tuple[int, str, str, bool] | None = None  # processed, not yet recorded (the queue refused the write)
        pause = STORE_BACKOFF
        while not self.stop.is_set():
            try:
                if result is not None:
                    self._store(self._record, result)
                    result = None
                event = self._store(self.queue.claim, name, LEASE_SECONDS)
            except sqlite3.Error as exc:  # the worker lives on: /healthz says degraded until a write succeeds
                self.report(f"{name}: queue {self.queue.path} cannot be written ({exc}); retrying in {pause:.0f}s")
                self.stop.wait(pause)
                pause = min(pause * 2, 60.0)
                continue
            pause = STORE_BACKOFF
            if event is None:
                self.queue.wait(1.0)
                continue
            started = time.monotonic()
            if event.attempts > MAX_ATTEMPTS:  # it stopped the server (or its worker) every time: stop trying
                ok, message = False, f"failed: given up after {MAX_ATTEMPTS} attempts"
            else:
                ok, message = self._process(event)
            if self.stop.is_set():
                return  # interrupted: left in progress, recovered on the next start
            result = (event.id, name, message, ok)
            self.metrics.processed(time.monotonic() - started, ok=ok)
            self.report(f"event {event.id}: {event.ref} {event.after[:12]}: {'ok' if ok else 'failed'}")
        if result is not None:
            with contextlib.suppress(sqlite3.Error):
                self._record(result)

    def _record(self, result: tuple[int, str, str, bool]) -> bool:
        """Write a processed event's outcome: (event id, worker, message, ok)."""
        event_id, worker, message, ok = result
        return self.queue.done(event_id, worker, message, ok=ok)

    def _store(self, write: Callable[..., T], *args: Any) -> T:
        """A queue write, retried with backoff (SQLITE_BUSY, a full disk, an I/O error); each failure is counted
        and degrades /healthz until a write succeeds again."""
        delay = STORE_BACKOFF
        for attempt in range(1, STORE_TRIES + 1):
            try:
                done = write(*args)
            except sqlite3.Error as exc:
                self.metrics.inc("store_errors")
                self.metrics.degraded = f"queue writes fail: {exc}"
                if attempt == STORE_TRIES or self.stop.wait(delay):
                    raise
                delay *= 2
            else:
                self.metrics.degraded = None
                return done
        raise AssertionError("unreachable")

    def _process(self, event: Event) -> tuple[bool, str]:
        try:
            return self.process(event)
        except Nb2KfpError as exc:
            return False, self.mask(str(exc))
        except Exception as exc:  # a bug must not kill the worker; the event records it
            return False, self.mask(f"internal error: {type(exc).__name__}: {exc}")

    def process(self, event: Event) -> tuple[bool, str]:
        if git.is_zero(event.after):
            return True, f"{event.ref} deleted: nothing to build"
        tree, commit = checkout(event, self.data / "repos", self.config)
        files = changed_files(tree, event.base or event.before, commit)
        scope = "everything" if files is None else f"{len(files)} changed file(s)"
        out = self.data / "out" / str(event.id)
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-I", "-m", tethered.__name__, "ci", "all", "--output-dir", str(out)]
        if self.config.ci_registry:
            command += ["--registry", self.config.ci_registry]
        if self.config.ci_host:
            command += ["--host", self.config.ci_host]
        code, output = self._run(command, tree, _ci_env(event, commit, self.config.server_url()))
        state = State.written(out)  # each failed notebook with its located errors, as the run recorded them
        failures = [line for entry in (state.notebooks.values() if state else ()) for line in entry.failure_lines()]
        lines = failures or [line for line in output.splitlines() if line.strip()][-20:]  # else: how the run ended
        tail = [self.mask(line) for line in lines]
        head = f"{'ok' if code == 0 else f'failed (exit code {code})'}: {commit[:12]}, {scope}, output {out}"
        return code == 0, "\n".join([head, *tail])

    def _run(self, command: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
        with self._child(command, cwd, env) as child:
            timer = threading.Timer(CI_TIMEOUT, child.kill)
            timer.start()
            try:
                assert child.stdout is not None
                output = child.stdout.read().decode("utf-8", "replace")
                code = child.wait()
            finally:
                timer.cancel()
        return code, output

    @contextmanager
    def _child(self, command: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
        with self._lock:
            if self.stop.is_set():
                raise RunError("server stopping")
            child = subprocess.Popen(
                command, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            self._children.add(child)
        try:
            yield child
        finally:
            with self._lock:
                self._children.discard(child)
            if child.stdin is not None:
                child.stdin.close()
            if child.poll() is None:
                child.kill()
                child.wait()
