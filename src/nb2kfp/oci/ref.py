"""Image references: the one parser for every image name that enters nb2kfp (tags, notebook metadata,
settings, command-line flags, catalog components) and the policy's prefix match.

The grammar is the OCI distribution reference grammar (github.com/distribution/reference):
``[domain[:port]/]path[:tag][@algorithm:hex]``. Anything else (whitespace, newlines, shell or Dockerfile
syntax) is refused before it can reach a Dockerfile, a registry URL or a spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nb2kfp.errors import UsageError

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII,
)
_HOST_PORT = re.compile(rf"(?P<host>{_HOST})(?::(?P<port>[0-9]+))?", re.ASCII)
_REGISTRY = re.compile(rf"(?P<domain>{_DOMAIN})(?:/(?P<path>{_COMPONENT}(?:/{_COMPONENT})*))?", re.ASCII)
NAME_MAX = 255


class BadReference(UsageError):
    """Not an image reference; the message says why without repeating the text (exit code 2)."""


@dataclass(frozen=True)
class ImageRef:
    domain: str  # "" when the reference names none (Docker Hub)
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def name(self) -> str:
        return "/".join(p for p in (self.domain, self.path) if p)

    @property
    def pinned(self) -> bool:
        return bool(self.digest)

    def __str__(self) -> str:
        return self.name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def _looks_like_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.lower() != first


def parse(text: str) -> ImageRef:
    """``text`` as an image reference, or BadReference."""
    if not isinstance(text, str) or not text:
        raise BadReference("an image reference is a non-empty string")
    m = _REFERENCE.fullmatch(text)
    if m is None:
        raise BadReference(
            "not an image reference (REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]: lower-case letters, digits, "
            "'.', '_', '-' and '/', no spaces or line breaks)"
        )
    domain, path = m.group("domain") or "", m.group("path")
    if domain and not _looks_like_domain(domain):  # "library/python": both parts are the path
        domain, path = "", f"{domain}/{path}"
    ref = ImageRef(domain, path, m.group("tag") or "", m.group("digest") or "")
    if len(ref.name) > NAME_MAX:
        raise BadReference(f"an image name is at most {NAME_MAX} characters")
    return ref


def host(text: str) -> str:
    """The registry (``host[:port]``) an image reference or repository names; "" for Docker Hub."""
    return parse(text).domain


def split_domain(domain: str) -> tuple[str, str]:
    """A registry's ``host[:port]`` as (host, port); an IPv6 host without its brackets (``[::1]:5000`` -> ``::1``)."""
    m = _HOST_PORT.fullmatch(domain)
    if m is None:
        raise BadReference("give host[:port]")
    return m.group("host").removeprefix("[").removesuffix("]"), m.group("port") or ""


def check(text: str, what: str, *, prefix: bool = False) -> str:
    """``text`` unchanged when it is an image reference (with ``prefix``: a policy entry, which may also be a
    registry or repository prefix ending in '/'); else BadReference naming ``what``."""
    try:
        _prefix(text) if prefix else parse(text)
    except BadReference as exc:
        raise BadReference(f"{what}: {exc}") from None
    return text


def parse_registry(text: str) -> tuple[str, str]:
    """``host[:port][/path]`` (a registry and an optional repository prefix) as (domain, path)."""
    m = _REGISTRY.fullmatch(text)
    if m is None or not _looks_like_domain(m.group("domain")):
        raise BadReference("give host[:port][/path], e.g. registry.example.com/ml")
    return m.group("domain"), m.group("path") or ""


def _prefix(prefix: str) -> ImageRef:
    """A policy entry as a reference; ``host:port`` and anything ending in '/' are registries (or namespaces)."""
    head = prefix.rstrip("/")
    try:
        host, port = split_domain(head)
    except BadReference:  # a repository or an image: not host:port
        host, port = "", ""
    if prefix.endswith("/") or (port and ("." in host or ":" in host or host == "localhost")):
        return ImageRef(*parse_registry(head))
    return parse(head)


def allowed_by(image: str, prefix: str) -> bool:
    """Does policy entry ``prefix`` allow ``image``? Entries match on name boundaries, never mid-component:

    ``registry.example.com/ml`` (or ``.../ml/``) allows ``registry.example.com/ml`` and ``.../ml/anything``,
    not ``registry.example.com/ml-evil``; ``python:3.11-slim`` allows that tag without a digest only (an engine
    pulls ``python:3.11-slim@sha256:D`` by D and ignores the tag, so D could be any image of the repository),
    not ``python:3.11-slim-evil``; ``python@sha256:...`` allows that digest only.
    """
    try:
        ref = parse(image)
    except BadReference:
        return False
    try:
        want = _prefix(prefix)
    except BadReference:
        return False
    if want.digest:
        return ref.name == want.name and ref.digest == want.digest
    if want.tag:
        return ref.name == want.name and ref.tag == want.tag and not ref.digest
    return ref.name == want.name or ref.name.startswith(want.name + "/")
