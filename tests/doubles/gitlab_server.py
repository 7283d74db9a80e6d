"""A GitLab REST API v4 double: a real HTTP server on 127.0.0.1 (random port) for tests.

It speaks the documented shapes python-gitlab uses for:

- ``GET /api/v4/user`` (the token's user) and ``GET /api/v4/projects/:id`` (id or URL-encoded path);
- commit statuses: ``POST /projects/:id/statuses/:sha`` (state pending/running/success/failed/canceled/
  skipped; re-posting the state a status already has is a 400 "Cannot transition status", as GitLab
  answers; an unknown commit is a 404) and ``GET /projects/:id/repository/commits/:sha/statuses``
  (latest per name, or every one with ``all=true``);
- merge requests: ``GET /projects/:id/merge_requests/:iid`` (``diff_refs`` from the repository) and
  its notes, ``GET``/``POST /merge_requests/:iid/notes`` and ``GET``/``PUT .../notes/:note_id`` (only
  the author may edit a note: 403 otherwise; ``sort``/``order_by`` honoured);
- issues: ``GET``/``POST /projects/:id/issues`` (``state`` filter only) and ``GET``/``PUT .../issues/:iid``
  (title and description; anyone may edit);
- authentication by ``PRIVATE-TOKEN``, ``Authorization: Bearer`` or ``JOB-TOKEN`` headers: a missing
  or unknown token is a 401 ``{"message": "401 Unauthorized"}``.

Everything it receives is kept in memory (:attr:`GitLabDouble.statuses`, :attr:`notes`,
:attr:`requests`) for tests to assert on; :meth:`fail_next` makes the next matching request fail.

What it does NOT cover: pagination (every list is one page, no ``Link``/``X-Next-Page`` headers,
``per_page`` ignored); GitLab's permissions model (roles, token scopes, what a ``CI_JOB_TOKEN`` may
not do: every valid token may do everything, except editing another user's note); webhooks and
system hooks; rate limits (no 429 / ``RateLimit-*`` headers); projects other than the one it serves,
groups, branches/tags and repository compare endpoints; note features (discussions, threads,
resolvable notes, system notes it writes itself, emoji); pipelines, jobs and the ``pipeline_id``/``ref``
linkage of statuses; status transitions other than re-posting the same state; ETags, conditional requests and
HTTP/2.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

STATES = ("pending", "running", "success", "failed", "canceled", "skipped")
_EVENTS = {"pending": "enqueue", "running": "run", "success": "success", "failed": "drop", "canceled": "cancel"}
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class User:
    id: int
    username: str
    name: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "name": self.name or self.username, "state": "active"}


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    message: str


@dataclass
class GitLabDouble:
    """Serves one project backed by the bare repository ``repo``. Use as a context manager."""

    repo: Path
    project_id: int = 42
    path_with_namespace: str = "ml/notebooks"
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha -> every status posted
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # MR iid -> its notes
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # iid -> the issue
    merge_requests: dict[int, dict[str, str]] = field(default_factory=dict)  # iid -> source/target branch
    requests: list[dict[str, Any]] = field(default_factory=list)  # method, path, status, auth (kind)
    _tokens: dict[tuple[str, str], User] = field(default_factory=dict)
    _failures: list[_Failure] = field(default_factory=list)
    _ids: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- set-up -------------------------------------------------------------------------------------
    def add_token(self, token: str, user: User, kind: str = "private") -> None:
        """Accept ``token`` for ``user``; ``kind`` is private (PRIVATE-TOKEN), oauth (Bearer) or job."""
        self._tokens[(kind, token)] = user

    def add_merge_request(self, iid: int, source_branch: str, target_branch: str = "main") -> None:
        self.merge_requests[iid] = {"source_branch": source_branch, "target_branch": target_branch}

    def fail_next(self, method: str, path_pattern: str, status: int, message: str = "error") -> None:
        """The next ``method`` request whose path (after /api/v4) matches ``path_pattern`` gets ``status``."""
        self._failures.append(_Failure(method, re.compile(path_pattern), status, message))

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> GitLabDouble:
        double = self

        class Handler(_Handler):
            owner = double

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GitLabDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers --------------------------------------------------------------------------------------
    def _next(self) -> tuple[int, str]:
        self._ids += 1
        return self._ids, (_EPOCH + timedelta(seconds=self._ids)).isoformat().replace("+00:00", ".000Z")

    def git(self, *args: str) -> str | None:
        done = subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, text=True, check=False)
        return done.stdout if done.returncode == 0 else None

    def _commit(self, ref: str) -> str | None:
        out = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
        return out.strip() if out else None

    def project_json(self) -> dict[str, Any]:
        head = (self.git("symbolic-ref", "--short", "HEAD") or "main").strip()
        name = self.path_with_namespace.rsplit("/", 1)[-1]
        return {
            "id": self.project_id,
            "name": name,
            "path": name,
            "path_with_namespace": self.path_with_namespace,
            "default_branch": head,
            "web_url": f"{self.url}/{self.path_with_namespace}",
            "http_url_to_repo": f"{self.url}/{self.path_with_namespace}.git",
        }


class _Handler(BaseHTTPRequestHandler):
    owner: GitLabDouble
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self._record["status"] = status  # recorded before the client can see the answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        if not raw:
            return {}
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            data = json.loads(raw)
            return data if isinstance(data, dict) else {}
        return {k: v[-1] for k, v in parse_qs(raw).items()}

    def _user(self) -> tuple[User | None, str]:
        auth = self.headers.get("Authorization", "")
        for kind, value in (
            ("private", self.headers.get("PRIVATE-TOKEN")),
            ("oauth", auth[7:] if auth.startswith("Bearer ") else None),
            ("job", self.headers.get("JOB-TOKEN")),
        ):
            if value:
                return self.owner._tokens.get((kind, value)), kind
        return None, ""

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_GET

    def _dispatch(self) -> None:
        method = self.command
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        path = split.path.removeprefix("/api/v4")
        body = self._body() if method in ("POST", "PUT") else {}
        owner = self.owner
        user, kind = self._user()
        with owner._lock:
            self._record: dict[str, Any] = {
                "method": method,
                "path": path,
                "query": query,
                "auth": kind,
                "status": None,
            }
            owner.requests.append(self._record)
            for failure in list(owner._failures):
                if failure.method == method and failure.pattern.search(path):
                    owner._failures.remove(failure)
                    return self._send(failure.status, {"message": failure.message})
            if user is None:
                return self._send(401, {"message": "401 Unauthorized"})
            if path == "/user" and method == "GET":
                return self._send(200, user.as_json())
            m = re.fullmatch(r"/projects/([^/]+)(/.*)?", path)
            if not m or unquote(m.group(1)) not in (str(owner.project_id), owner.path_with_namespace):
                return self._send(404, {"message": "404 Project Not Found"})
            return self._project(method, m.group(2) or "", query, body, user)

    def _project(self, method: str, rest: str, query: dict[str, str], body: dict[str, Any], user: User) -> None:
        owner = self.owner
        if rest == "" and method == "GET":
            return self._send(200, owner.project_json())
        if (m := re.fullmatch(r"/statuses/([0-9a-fA-F]+)", rest)) and method == "POST":
            return self._post_status(m.group(1), body, user)
        if (m := re.fullmatch(r"/repository/commits/([^/]+)/statuses", rest)) and method == "GET":
            return self._list_statuses(m.group(1), query)
        if m := re.fullmatch(r"/issues(?:/(\d+))?", rest):
            return self._issues(method, int(m.group(1)) if m.group(1) else None, query, body, user)
        if m := re.fullmatch(r"/merge_requests/(\d+)(/notes(?:/(\d+))?)?", rest):
            iid = int(m.group(1))
            if iid not in owner.merge_requests:
                return self._send(404, {"message": "404 Not found"})
            if not m.group(2) and method == "GET":
                return self._send(200, self._mr_json(iid))
            if m.group(2):
                return self._notes(method, iid, int(m.group(3)) if m.group(3) else None, query, body, user)
        return self._send(404, {"error": "404 Not Found"})

    # -- statuses -----------------------------------------------------------------------------------
    def _post_status(self, sha: str, body: dict[str, Any], user: User) -> None:
        owner = self.owner
        state = body.get("state")
        if state not in STATES:
            return self._send(400, {"message": "state does not have a valid value"})
        commit = owner._commit(sha)
        if commit is None:
            return self._send(404, {"message": "404 Commit Not Found"})
        name = str(body.get("name") or body.get("context") or "default")
        history = owner.statuses.setdefault(commit, [])
        latest = next((s for s in reversed(history) if s["name"] == name), None)
        if latest is not None and latest["status"] == state:
            event = _EVENTS.get(state, state)
            return self._send(400, {"message": f"Cannot transition status via :{event} from :{state}"})
        ident, now = owner._next()
        status = {
            "id": ident,
            "sha": commit,
            "ref": body.get("ref") or (owner.git("symbolic-ref", "--short", "HEAD") or "main").strip(),
            "status": state,
            "name": name,
            "target_url": body.get("target_url"),
            "description": body.get("description"),
            "created_at": now,
            "started_at": now if state != "pending" else None,
            "finished_at": now if state in ("success", "failed", "canceled", "skipped") else None,
            "allow_failure": False,
            "coverage": body.get("coverage"),
            "author": user.as_json(),
        }
        history.append(status)
        return self._send(201, status)

    def _list_statuses(self, ref: str, query: dict[str, str]) -> None:
        commit = self.owner._commit(unquote(ref))
        if commit is None:
            return self._send(404, {"message": "404 Commit Not Found"})
        history = self.owner.statuses.get(commit, [])
        if query.get("all", "false").lower() != "true":
            latest = {s["name"]: s for s in history}
            history = [s for s in history if latest[s["name"]] is s]
        return self._send(200, history)

    # -- merge requests and notes -------------------------------------------------------------------
    def _mr_json(self, iid: int) -> dict[str, Any]:
        owner = self.owner
        mr = owner.merge_requests[iid]
        head = owner._commit(mr["source_branch"]) or ""
        start = owner._commit(mr["target_branch"]) or ""
        base = (owner.git("merge-base", start, head) or "").strip() if head and start else ""
        return {
            "id": 1000 + iid,
            "iid": iid,
            "project_id": owner.project_id,
            "title": f"Merge {mr['source_branch']}",
            "state": "opened",
            "source_branch": mr["source_branch"],
            "target_branch": mr["target_branch"],
            "sha": head,
            "diff_refs": {"base_sha": base, "head_sha": head, "start_sha": start},
            "web_url": f"{owner.url}/{owner.path_with_namespace}/-/merge_requests/{iid}",
        }

    def _notes(
        self, method: str, iid: int, note_id: int | None, query: dict[str, str], body: dict[str, Any], user: User
    ) -> None:
        owner = self.owner
        notes = owner.notes.setdefault(iid, [])
        if note_id is None and method == "GET":
            key = query.get("order_by", "created_at")
            ordered = sorted(notes, key=lambda n: (n.get(key) or "", n["id"]))
            return self._send(200, ordered if query.get("sort", "desc") == "asc" else ordered[::-1])
        if note_id is None and method == "POST":
            if not str(body.get("body") or "").strip():
                return self._send(400, {"message": {"note": ["can't be blank"]}})
            ident, now = owner._next()
            note = {"id": ident, "type": None, "body": body["body"], "author": user.as_json(), "system": False}
            note.update(created_at=now, updated_at=now, noteable_id=1000 + iid, noteable_type="MergeRequest")
            note.update(noteable_iid=iid, resolvable=False, confidential=False, internal=False)
            notes.append(note)
            return self._send(201, note)
        found = next((n for n in notes if n["id"] == note_id), None)
        if found is None:
            return self._send(404, {"message": "404 Not found"})
        if method == "GET":
            return self._send(200, found)
        if method == "PUT":
            if found["author"]["id"] != user.id:
                return self._send(403, {"message": "403 Forbidden"})
            found["body"] = body.get("body", found["body"])
            found["updated_at"] = owner._next()[1]
            return self._send(200, found)
        return self._send(405, {"message": "405 Method Not Allowed"})

    # -- issues -------------------------------------------------------------------------------------
    def _issues(self, method: str, iid: int | None, query: dict[str, str], body: dict[str, Any], user: User) -> None:
        owner = self.owner
        if iid is None and method == "GET":
            state = query.get("state", "all")
            listed = [i for i in owner.issues.values() if state == "all" or i["state"] == state]
            return self._send(200, sorted(listed, key=lambda i: -i["iid"]))
        if iid is None and method == "POST":
            if not str(body.get("title") or "").strip():
                return self._send(400, {"message": {"title": ["can't be blank"]}})
            ident, now = owner._next()
            number = len(owner.issues) + 1
            labels = [x for x in str(body.get("labels") or "").split(",") if x]
            issue = {"id": ident, "iid": number, "project_id": owner.project_id, "title": body["title"]}
            issue.update(description=body.get("description") or "", state="opened", labels=labels)
            issue.update(author=user.as_json(), created_at=now, updated_at=now)
            issue["web_url"] = f"{owner.url}/{owner.path_with_namespace}/-/issues/{number}"
            owner.issues[number] = issue
            return self._send(201, issue)
        found = owner.issues.get(iid or 0)
        if found is None:
            return self._send(404, {"message": "404 Not found"})
        if method == "GET":
            return self._send(200, found)
        if method == "PUT":
            for key in ("title", "description"):
                found[key] = body.get(key, found[key])
            found["updated_at"] = owner._next()[1]
            return self._send(200, found)
        return self._send(405, {"message": "405 Method Not Allowed"})
