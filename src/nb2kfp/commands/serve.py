"""``nb2kfp serve``: the webhook receiver (uvicorn) and a pool of worker threads that process its queue
(:mod:`nb2kfp.delivery.worker`). Pushes are queued durably in ``DATA/queue.sqlite3``; only one server may use a data
folder (``DATA/serve.lock``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from nb2kfp.delivery.guard import guarded
from nb2kfp.delivery.queue import EventQueue
from nb2kfp.delivery.webhook import Metrics, ServeConfig, create_app
from nb2kfp.delivery.worker import Workers
from nb2kfp.errors import RunError, UsageError

Report = Callable[[str], None]


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
    *,
    allow_weak_secret: bool = False,
) -> int:
    import uvicorn

    if workers < 0:
        raise UsageError("--workers must be 0 or more")
    config = ServeConfig.load(secret_file, projects, allow_weak_secret=allow_weak_secret)
    if workers and config.gitlab_url is None:
        raise UsageError("set NB2KFP_SERVE_GITLAB_URL (https://gitlab.example.com): the workers fetch projects from it")
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
        limits = guarded(
            config.max_connections, config.header_timeout, config.header_timeout + config.body_timeout + 60
        )
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(config, queue, metrics),
                host=host,
                port=port,
                log_level="warning",
                access_log=False,
                http=limits,
            )
        )
        try:
            server.run()
        finally:
            pool.shutdown()
            queue.close()
    return 0 if server.started else 1
