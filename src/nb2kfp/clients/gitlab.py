"""The GitLab REST API (v4) calls nb2kfp makes, through python-gitlab (imported only when used).

Configuration comes from GitLab CI's predefined variables: ``CI_SERVER_URL`` (or ``CI_API_V4_URL``),
``CI_PROJECT_ID``, and a token in ``NB2KFP_GITLAB_TOKEN`` or ``GITLAB_TOKEN`` (a project, group or
personal access token with the ``api`` scope: ``CI_JOB_TOKEN`` may not post statuses or notes).
Every failure is a one-line :class:`RunError`; the token is masked out of every message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Literal, TypeVar

from nb2kfp.errors import RunError
from nb2kfp.masking import Masker

if TYPE_CHECKING:
    import gitlab
    from gitlab.v4.objects import Project

MARKER = "<!-- nb2kfp:report -->"


def marker(key: str = "") -> str:
    """The first line of nb2kfp's note: one note per key (the CI component's ``job_prefix``, so two includes of
    the component keep two notes); :data:`MARKER` without one."""
    key = re.sub(r"[^A-Za-z0-9_.-]", "", key)
    return f"<!-- nb2kfp:report:{key} -->" if key else MARKER


STATES = ("pending", "running", "success", "failed", "canceled")
TOKEN_VARIABLES = ("NB2KFP_GITLAB_TOKEN", "GITLAB_TOKEN")
TokenKind = Literal["private", "oauth", "job"]
_T = TypeVar("_T")


class GitLabProject:
    """One GitLab project, addressed by id (``123``) or full path (``group/name``)."""

    def __init__(
        self, url: str, project_id: str, token: str, token_kind: TokenKind = "private", timeout: float = 15.0
    ) -> None:
        import gitlab as gitlab_module

        self.url = url.rstrip("/").removesuffix("/api/v4")
        self.project_id = project_id
        self._mask = Masker(token)
        self._gl: gitlab.Gitlab = gitlab_module.Gitlab(
            self.url,
            private_token=token if token_kind == "private" else None,
            oauth_token=token if token_kind == "oauth" else None,
            job_token=token if token_kind == "job" else None,
            timeout=timeout,
        )
        self._project: Project = self._gl.projects.get(project_id, lazy=True)
        self._user_id: int | Literal[False] | None = False  # False: not asked yet

    def close(self) -> None:
        """Close the HTTP session (connections are kept alive between calls)."""
        self._gl.session.close()

    def __enter__(self) -> GitLabProject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"GitLabProject({self.url!r}, {self.project_id!r})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GitLabProject | None:
        """The CI job's project, or None when no token is set (callers then only log what they would do)."""
        env = os.environ if env is None else env
        token = next((env[name] for name in TOKEN_VARIABLES if env.get(name)), None)
        if token is None:
            return None
        url = env.get("CI_SERVER_URL") or env.get("CI_API_V4_URL")
        project = env.get("CI_PROJECT_ID")
        if not url or not project:
            raise RunError("a GitLab token is set but CI_SERVER_URL (or CI_API_V4_URL) and CI_PROJECT_ID are not")
        return cls(url, project, token)

    def _call(self, what: str, action: Callable[[], _T]) -> _T:
        import gitlab.exceptions
        import requests

        try:
            return action()
        except gitlab.exceptions.GitlabAuthenticationError:
            problem = "401 unauthorized: the token was refused (check NB2KFP_GITLAB_TOKEN or GITLAB_TOKEN)"
        except gitlab.exceptions.GitlabError as exc:
            problem = _http_problem(exc.response_code, exc.error_message, self.project_id)
        except requests.RequestException as exc:
            problem = f"cannot reach {self.url} ({type(exc).__name__})"
        raise RunError(self._mask(f"GitLab: {what}: {problem}")) from None

    def set_status(
        self, sha: str, state: str, name: str, description: str, target_url: str | None = None
    ) -> dict[str, object]:
        """Set the commit status ``name`` of ``sha`` (POST /projects/:id/statuses/:sha)."""
        import gitlab.exceptions

        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, not {state!r}")
        data: dict[str, str] = {"state": state, "name": name, "description": description[:255]}
        if target_url:
            data["target_url"] = target_url

        def post() -> dict[str, object]:
            commit = self._project.commits.get(sha, lazy=True)
            try:
                return dict(commit.statuses.create(data).attributes)
            except gitlab.exceptions.GitlabCreateError as exc:
                # GitLab refuses to post the state a status already has ("Cannot transition status via
                # :run from :running"): that state is what we wanted, so it is not an error.
                if exc.response_code == 400 and "Cannot transition status" in str(exc.error_message):
                    return {"status": state, "name": name, "unchanged": True}
                raise

        return self._call(f"set status {name!r} of {sha[:12]} to {state}", post)

    def _bot_id(self) -> int | None:
        """Our own user id (GET /user), or None when the token may not ask (e.g. a job token)."""
        if self._user_id is False:
            import gitlab.exceptions

            try:
                self._gl.auth()
                self._user_id = self._gl.user.id if self._gl.user is not None else None
            except gitlab.exceptions.GitlabError:
                self._user_id = None
        return self._user_id

    def upsert_mr_note(self, mr_iid: int, body: str, key: str = "") -> int:
        """Write ``body`` as nb2kfp's one note (per ``key``) on merge request ``mr_iid``: update the note carrying
        :func:`marker` written by this token's user in place, or create it. Returns the note id.
        When the token may not tell its user (GET /user refused, e.g. a job token), any note carrying the marker
        may be someone else's (quoting it): none is edited, a new note is written each time."""
        mark = marker(key)
        if mark not in body:
            body = f"{mark}\n{body}"

        def upsert() -> int:
            bot = self._bot_id()
            mr = self._project.mergerequests.get(mr_iid, lazy=True)
            for note in [] if bot is None else mr.notes.list(get_all=True, sort="asc", order_by="created_at"):
                attrs = note.attributes
                mine = (attrs.get("author") or {}).get("id") == bot
                if mine and not attrs.get("system") and mark in str(attrs.get("body", "")):
                    if attrs.get("body") != body:
                        note.body = body
                        note.save()
                    return int(attrs["id"])
            return int(mr.notes.create({"body": body}).get_id() or 0)

        return self._call(f"note on merge request !{mr_iid}", upsert)

    def upsert_issue(self, title: str, body: str, key: str, labels: tuple[str, ...] = ()) -> tuple[int, bool]:
        """Write ``body`` into nb2kfp's one open issue for ``key`` (its description starts with :func:`marker`):
        update the open issue this token's user wrote with that marker in place, or open one titled ``title``.
        Returns the issue's iid and whether it was opened now."""
        mark = marker(key)
        body = f"{mark}\n{body}"

        def upsert() -> tuple[int, bool]:
            bot = self._bot_id()
            found = [] if bot is None else self._project.issues.list(state="opened", get_all=True)
            for issue in found:
                attrs = issue.attributes
                mine = (attrs.get("author") or {}).get("id") == bot
                if mine and str(attrs.get("description") or "").startswith(mark):
                    if attrs.get("description") != body or attrs.get("title") != title:
                        issue.description, issue.title = body, title
                        issue.save()
                    return int(attrs["iid"]), False
            data = {"title": title, "description": body, **({"labels": ",".join(labels)} if labels else {})}
            return int(self._project.issues.create(data).attributes["iid"]), True

        return self._call(f"issue {title!r}", upsert)


def _http_problem(code: int | None, message: object, project: str) -> str:
    text = " ".join(str(message).split())[:200]
    if code == 403:
        return f"403 forbidden: the token may not do this (it needs the api scope and Developer role): {text}"
    if code == 404:
        return f"404 not found (project {project}, or the commit / merge request in it): {text}"
    if code is None:
        return text or "unexpected answer"
    return f"{code}: {text}" if text else f"HTTP {code}"
