"""``nb2kfp serve``: the webhook receiver (uvicorn) and a pool of worker threads that process its queue.

For each push a worker fetches the project's repository into ``DATA/repos/<project id>`` (from the payload's
``project.git_http_url``: https, http, ssh or git only, local paths and ``file://`` only with
``NB2KFP_SERVE_ALLOW_LOCAL_REPOS=1``; a token from ``NB2KFP_GIT_TOKEN`` goes to git as an ``http.extraHeader`` through
``GIT_CONFIG_*`` environment variables: never in the URL, the command line or a log), checks out ``after`` and runs
``nb2kfp ci all`` there in a subprocess (its own environment: ``CI_COMMIT_SHA``, ``CI_COMMIT_BEFORE_SHA``, ...),
writing to ``DATA/out/<event id>``. A branch or tag deletion builds nothing; a new branch builds everything;
otherwise the files changed between the push's base and ``after`` (git diff in the fetched repository, never the
payload's ``commits[]``, which holds only 20). The result (ok or failed, with the located errors) is recorded in
``DATA/queue.sqlite3``. Only one server may use a data folder (``DATA/serve.lock``).
"""

from __future__ import annotations

import base64
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

from nb2kfp.delivery.queue import Event, EventQueue
from nb2kfp.delivery.webhook import Metrics, ServeConfig, create_app
from nb2kfp.errors import Nb2KfpError, RunError, UsageError
from nb2kfp.git import check_remote_url, check_sha, is_zero
from nb2kfp.security.masking import Masker

Report = Callable[[str], None]
T = TypeVar("T")
GIT_TIMEOUT = 600
CI_TIMEOUT = 3600
STORE_TRIES = 5  # tries of one queue write (backoff from STORE_BACKOFF seconds, doubling)
STORE_BACKOFF = 0.1
MAX_ATTEMPTS = 3  # an event claimed more often than this (it crashed the server each time) is marked failed
_SECRET_VARIABLES = ("NB2KFP_WEBHOOK_SECRET", "NB2KFP_WEBHOOK_SIGNING_TOKEN", "NB2KFP_GIT_TOKEN")
# Runs `nb2kfp ...` and exits when its stdin closes, i.e. when the server died (even by kill -9): no orphan keeps
# writing into a checkout or output folder that a retry of the same event then uses.
_GUARD = (
    "import os, sys, threading, runpy\n"
    "threading.Thread(target=lambda: (os.read(0, 1), os._exit(70)), daemon=True).start()\n"
    "sys.argv = ['nb2kfp', *sys.argv[1:]]\n"
    "runpy.run_module('nb2kfp', run_name='__main__', alter_sys=True)\n"
)


def git_env(token: str | None, allow_local: bool = False) -> dict[str, str]:
    """Environment for git: no prompts, only network transports (and local ones when the server allows them),
    and the token (if any) as an HTTP header that git never logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SECRET_VARIABLES)}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true", GIT_PROTOCOL_FROM_USER="0")
    env["GIT_ALLOW_PROTOCOL"] = "https:http:ssh:git" + (":file" if allow_local else "")
    if token:
        basic = base64.b64encode(f"oauth2:{token}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
        )
    return env


class _Git:
    def __init__(self, cwd: Path, token: str | None, allow_local: bool = False) -> None:
        self.cwd, self.env, self.mask = cwd, git_env(token, allow_local), Masker(token)

    def __call__(self, *args: str, check: bool = True) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=GIT_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RunError(self.mask(f"git {args[0]}: {exc}")) from None
        if check and done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()] or [f"exit code {done.returncode}"]
            raise RunError(self.mask(f"git {args[0]}: {lines[-1].strip()}"))
        return done.stdout


def checkout(event: Event, repos: Path, token: str | None, allow_local: bool = False) -> tuple[Path, str]:
    """Fetch the project's repository and check out the pushed commit; (work tree, full commit id).
    Payload values reach git only validated, and after ``--end-of-options`` where git takes options."""
    project = event.payload.get("project") or {}
    try:
        url = check_remote_url(project.get("git_http_url") if isinstance(project, dict) else None, allow_local)
        after = check_sha(event.after, "after")
    except ValueError as exc:
        raise RunError(f"push: {exc}") from None
    tree = repos / event.project
    tree.mkdir(parents=True, exist_ok=True)
    git = _Git(tree, token, allow_local)
    if not (tree / ".git").is_dir():
        git("init", "-q")
    git("remote", "remove", "origin", check=False)
    git("remote", "add", "origin", "--end-of-options", url)
    git(
        "fetch", "-q", "--prune", "--force", "origin", "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"
    )
    if not _has(git, after):
        git("fetch", "-q", "--end-of-options", "origin", after, check=False)  # pushed over since: ask for it
        if not _has(git, after):
            raise RunError(f"commit {after[:12]} is no longer in the repository")
    commit = git("rev-parse", "--verify", "--end-of-options", f"{after}^{{commit}}").strip()
    git("checkout", "-q", "--force", "--detach", commit)
    git("clean", "-q", "-ffdx")
    return tree, commit


def _has(git: _Git, sha: str) -> bool:
    try:
        git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{sha}^{{commit}}")
    except RunError:
        return False
    return True


def changed_files(tree: Path, base: str, commit: str, token: str | None = None) -> list[str] | None:
    """Files changed from ``base`` to ``commit``; None means everything (new branch, or base not in the clone)."""
    git = _Git(tree, token)
    if is_zero(base) or not _has(git, check_sha(base, "before")):
        return None
    return sorted(git("diff", "--name-only", "--no-renames", "--end-of-options", base, commit).splitlines())


def _ci_env(event: Event, commit: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CI_", *_SECRET_VARIABLES))}
    name = event.ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    project = event.payload.get("project") or {}
    web = str(project.get("web_url") or "") if isinstance(project, dict) else ""
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
    if event.project_path and web.endswith("/" + event.project_path):
        env["CI_SERVER_URL"] = web.removesuffix("/" + event.project_path)
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
        result: tuple[int, bool, str] | None = None  # processed, not yet recorded (the queue refused the write)
        pause = STORE_BACKOFF
        while not self.stop.is_set():
            try:
                if result is not None:
                    self._store(self.queue.done, *result)
                    result = None
                event = self._store(self.queue.claim, name)
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
            result = (event.id, ok, message)
            self.metrics.processed(ok, time.monotonic() - started)
            self.report(f"event {event.id}: {event.ref} {event.after[:12]}: {'ok' if ok else 'failed'}")
        if result is not None:
            with contextlib.suppress(sqlite3.Error):
                self.queue.done(*result)

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
        if is_zero(event.after):
            return True, f"{event.ref} deleted: nothing to build"
        tree, commit = checkout(event, self.data / "repos", self.config.git_token, self.config.allow_local_repos)
        files = changed_files(tree, event.base or event.before, commit, self.config.git_token)
        scope = "everything" if files is None else f"{len(files)} changed file(s)"
        out = self.data / "out" / str(event.id)
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-I", "-c", _GUARD, "ci", "all", "--output-dir", str(out)]
        if self.config.ci_registry:
            command += ["--registry", self.config.ci_registry]
        if self.config.ci_host:
            command += ["--host", self.config.ci_host]
        code, output = self._run(command, tree, _ci_env(event, commit))
        lines = [self.mask(line) for line in output.splitlines() if line.strip()]
        errors = [line for line in lines if ": error:" in line or line.startswith(("error:", "Error:"))]
        tail = errors or lines[-20:]
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


@contextmanager
def _exclusive(data: Path) -> Iterator[None]:
    import fcntl

    try:
        handle = open(data / "serve.lock", "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise RunError(f"--data {data}: cannot write {data / 'serve.lock'}: {exc.strerror}") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UsageError(f"another nb2kfp serve is using {data}") from None
        yield


def run(
    host: str,
    port: int,
    data_dir: Path,
    secret_file: Path | None,
    projects: list[str],
    workers: int,
    report: Report,
    allow_weak_secret: bool = False,
) -> int:
    import uvicorn

    if workers < 0:
        raise UsageError("--workers must be 0 or more")
    config = ServeConfig.load(secret_file, projects, allow_weak_secret=allow_weak_secret)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"--data {data_dir}: {exc.strerror}") from None
    with _exclusive(data_dir):
        queue = EventQueue(data_dir / "queue.sqlite3")
        recovered = queue.recover()
        metrics = Metrics()
        pool = Workers(queue, config, data_dir, metrics, report)
        pool.start(workers)
        report(
            f"nb2kfp serve: http://{host}:{port}/webhooks/gitlab, {workers} worker(s), queue {queue.path}"
            + (f", {recovered} interrupted event(s) queued again" if recovered else "")
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(config, queue, metrics), host=host, port=port, log_level="warning", access_log=False
            )
        )
        try:
            server.run()
        finally:
            pool.shutdown()
            queue.close()
    return 0 if server.started else 1
