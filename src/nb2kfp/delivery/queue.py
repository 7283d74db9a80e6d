"""The webhook receiver's durable queue: one embedded SQLite file (WAL, ``synchronous=FULL``).

Every accepted push is committed (and so fsync'd) before the receiver answers 2xx, so an acknowledged event survives
a crash. Events are deduplicated by their delivery key (GitLab's ``Idempotency-Key``, the same on retries, or
``X-Gitlab-Event-UUID``) through a unique index, and by what they say (project, ref, before, after): the same push
delivered again under another key (a replay) is a duplicate too. A newer push to the same project and ref supersedes
the older ones still queued (never one already in progress); it inherits the oldest superseded ``before`` as its
base, so the files those pushes changed are still rebuilt. Workers claim events one project at a time (they share
the project's checkout), each claim with a lease: an event whose lease ran out is queued again at the next claim.
``recover()``, run when the server starts, puts events left in progress by a crash back in the queue: processing is
at least once, and re-running an event is idempotent (same commit, same outputs).

One server process owns the file (``serve`` holds a lock beside it); all writes go through one connection.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nb2kfp.errors import RunError
from nb2kfp.git import check_ref, check_sha, is_zero

QUEUED, IN_PROGRESS, DONE, FAILED, SUPERSEDED = "queued", "in_progress", "done", "failed", "superseded"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT,
    kind TEXT NOT NULL,
    project TEXT NOT NULL,
    project_path TEXT NOT NULL,
    ref TEXT NOT NULL,
    before TEXT NOT NULL,
    after TEXT NOT NULL,
    base TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until REAL,
    received REAL NOT NULL,
    started REAL,
    finished REAL,
    superseded_by INTEGER,
    message TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events(key);
CREATE INDEX IF NOT EXISTS events_status ON events(status, id);
CREATE INDEX IF NOT EXISTS events_ref ON events(project, ref, status);
"""


@dataclass(frozen=True)
class Event:
    """One push (or tag push) as GitLab delivered it, plus what the queue knows about it."""

    kind: str  # "push" or "tag_push"
    project: str  # GitLab project id, as text
    project_path: str
    ref: str
    before: str
    after: str
    payload: dict[str, Any] = field(default_factory=dict)
    key: str | None = None
    id: int = 0
    base: str = ""  # diff base: `before`, or the oldest `before` of the pushes this one superseded
    attempts: int = 0

    @classmethod
    def from_payload(cls, payload: dict[str, Any], key: str | None) -> Event:
        """Read a push / tag push hook body; ValueError (short reason) when it is not one."""
        kind = payload.get("object_kind")
        if kind not in ("push", "tag_push"):
            raise ValueError(f"object_kind {kind!r} is not push or tag_push")
        project = payload.get("project")
        project = project if isinstance(project, dict) else {}
        project_id = payload.get("project_id", project.get("id"))
        texts = {name: payload.get(name) for name in ("ref", "before", "after")}
        if not isinstance(project_id, int) or any(not isinstance(v, str) or not v for v in texts.values()):
            raise ValueError("project_id, ref, before and after are required")
        check_ref(texts["ref"])
        check_sha(texts["before"], "before")
        check_sha(texts["after"], "after")
        path = project.get("path_with_namespace")
        if not isinstance(path, str):
            path = ""
        elif any(0xD800 <= ord(c) <= 0xDFFF for c in path):
            raise ValueError("project.path_with_namespace is not valid UTF-8 text")
        return cls(
            kind=kind,
            project=str(project_id),
            project_path=path,
            ref=str(texts["ref"]),
            before=str(texts["before"]),
            after=str(texts["after"]),
            payload=payload,
            key=key,
        )


@dataclass(frozen=True)
class Record:
    """A row of the queue, for status pages and tests."""

    id: int
    key: str | None
    status: str
    attempts: int
    message: str | None


class EventQueue:
    def __init__(self, path: Path, busy_timeout: float = 30.0) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._wake = threading.Condition(threading.Lock())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("BEGIN IMMEDIATE")  # a read-only file fails here, at start-up, not on the first push
            try:
                self._db.execute("UPDATE events SET id = id WHERE 0")
            finally:
                self._db.execute("ROLLBACK")
        except (sqlite3.Error, OSError) as exc:
            raise RunError(f"queue {path}: cannot be written: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def put(self, event: Event) -> tuple[int, bool]:
        """Commit ``event``; returns (id, duplicate). A duplicate (same key, or same push) returns the first id."""
        with self._tx() as db:
            if event.key is not None:
                row = db.execute("SELECT id FROM events WHERE key = ?", (event.key,)).fetchone()
                if row is not None:
                    return int(row[0]), True
            # The delivery key is an unsigned header: a captured delivery replayed under a new key says the same
            # push again (same project, ref, before and after), which is built once.
            row = db.execute(
                "SELECT id FROM events WHERE ref = ? AND before = ? AND after = ? AND kind = ?"
                " AND (project = ? OR (project_path != '' AND project_path = ?)) ORDER BY id LIMIT 1",
                (event.ref, event.before, event.after, event.kind, event.project, event.project_path),
            ).fetchone()
            if row is not None:
                return int(row[0]), True
            older = db.execute(
                "SELECT id, base FROM events WHERE project = ? AND ref = ? AND status = ? ORDER BY id",
                (event.project, event.ref, QUEUED),
            ).fetchall()
            # a new branch builds everything; otherwise diff from where the oldest superseded push started
            base = older[0][1] if older and not is_zero(event.before) else event.before
            cursor = db.execute(
                "INSERT INTO events (key, kind, project, project_path, ref, before, after, base, payload, status,"
                " received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.key,
                    event.kind,
                    event.project,
                    event.project_path,
                    event.ref,
                    event.before,
                    event.after,
                    base,
                    json.dumps(event.payload, separators=(",", ":")),
                    QUEUED,
                    time.time(),
                ),
            )
            new_id = int(cursor.lastrowid or 0)
            if older:
                db.execute(
                    f"UPDATE events SET status = ?, superseded_by = ?, finished = ?, message = ?"
                    f" WHERE id IN ({','.join('?' * len(older))})",
                    (SUPERSEDED, new_id, time.time(), f"superseded by event {new_id}", *[r[0] for r in older]),
                )
        with self._wake:
            self._wake.notify_all()
        return new_id, False

    def claim(self, worker_id: str, lease_seconds: float) -> Event | None:
        """The oldest queued event whose project has nothing in progress, now in progress for ``worker_id`` until
        ``lease_seconds`` from now; None if none. An event whose lease ran out (its worker died or hangs) is queued
        again first, so one lost worker does not hold its project up until the server restarts."""
        with self._tx() as db:
            now = time.time()
            db.execute(
                "UPDATE events SET status = ?, worker = NULL, lease_until = NULL WHERE status = ? AND lease_until < ?",
                (QUEUED, IN_PROGRESS, now),
            )
            row = db.execute(
                "SELECT id FROM events WHERE status = ? AND project NOT IN"
                " (SELECT project FROM events WHERE status = ?) ORDER BY id LIMIT 1",
                (QUEUED, IN_PROGRESS),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE events SET status = ?, worker = ?, lease_until = ?, started = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (IN_PROGRESS, worker_id, now + lease_seconds, now, row[0]),
            )
            return self._event(db, int(row[0]))

    @staticmethod
    def _event(db: sqlite3.Connection, event_id: int) -> Event:
        row = db.execute(
            "SELECT id, key, kind, project, project_path, ref, before, after, base, payload, attempts"
            " FROM events WHERE id = ?",
            (event_id,),
        ).fetchone()
        return Event(
            id=row[0],
            key=row[1],
            kind=row[2],
            project=row[3],
            project_path=row[4],
            ref=row[5],
            before=row[6],
            after=row[7],
            base=row[8],
            payload=json.loads(row[9]),
            attempts=row[10],
        )

    def done(self, event_id: int, worker_id: str, message: str, *, ok: bool) -> bool:
        """Record the result of ``worker_id``'s claim; False (nothing written) when it no longer holds the event
        (its lease ran out and the event was queued again)."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE events SET status = ?, finished = ?, message = ?, lease_until = NULL"
                " WHERE id = ? AND status = ? AND worker = ?",
                (DONE if ok else FAILED, time.time(), message, event_id, IN_PROGRESS, worker_id),
            )
        with self._wake:
            self._wake.notify_all()
        return cursor.rowcount == 1

    def recover(self) -> int:
        """Put events a crashed server left in progress back in the queue; how many."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE events SET status = ?, worker = NULL, lease_until = NULL WHERE status = ?",
                (QUEUED, IN_PROGRESS),
            )
            return cursor.rowcount

    def wait(self, timeout: float) -> None:
        """Sleep until an event is put or finished (or ``timeout``)."""
        with self._wake:
            self._wake.wait(timeout)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) FROM events GROUP BY status").fetchall()
        return {str(status): int(n) for status, n in rows}

    def records(self) -> list[Record]:
        with self._lock:
            rows = self._db.execute("SELECT id, key, status, attempts, message FROM events ORDER BY id").fetchall()
        return [Record(*row) for row in rows]
