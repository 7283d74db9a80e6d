"""Credentials in notebook cells and outputs: found, located, named, never echoed.

Specific token formats are matched exactly; a generic ``password = "..."`` style assignment counts only
when the literal looks random (entropy), so placeholders like ``"changeme"`` or ``"<token>"`` pass.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")),
    ("a GitLab token", re.compile(r"\b(?:glpat|gldt|glrt|glcbt|glptt|glft|glsoat|glimt|glagent)-[0-9A-Za-z_\-]{20,}")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("a Google service-account key", re.compile(r'"private_key_id"\s*:\s*"[0-9a-f]{40}"')),
    ("a Slack token", re.compile(r"\bxox[abprs]-[0-9A-Za-z-]{10,}")),
    ("an OpenAI-style API key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{32,}")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("credentials in a URL", re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:[^\s@/'\"]{6,}@[^\s'\"]+")),
)
_NAME = r"[a-z0-9_]*(?:password|passwd|pwd|secret|token|api_?key|access_?key|private_?key|auth|credential)s?"
# name = "v", name: T = "v", {"name": "v"}, environ["NAME"] = "v", setdefault("NAME", "v")
_ASSIGNMENT = re.compile(
    rf"""(?ix)\b({_NAME})['"]?\]?
        \s*(?::\s*[\w\[\]., |]+?\s*=|[:=,])\s*(?:[rbuf]{{0,2}})(['"])([^'"\s]{{8,}})\2"""
)
_ENV_MAGIC = re.compile(rf"(?i)^\s*%(?:set_)?env\s+({_NAME}[a-z0-9_]*)(?:\s*=\s*|\s+)(\S{{8,}})\s*$")
_PLACEHOLDER = re.compile(
    r"(?i)^(?:x+|\*+|\.+|<.*>|\$\{?.*\}?|\{\{.*\}\}|%\(.*\)s|changeme|change_me|password|secret|"
    r"your[_-].*|example.*|dummy.*|test.*|placeholder.*|none|null|todo)$"
)


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def scan(text: str) -> Iterator[tuple[str, int]]:
    """(kind of credential, 1-based line) for each one found in ``text``."""
    for number, line in enumerate(text.splitlines(), start=1):
        found = next((kind for kind, pattern in _PATTERNS if pattern.search(line)), None)
        if found:
            yield found, number
            continue
        found_pairs = [(m.group(1), m.group(3)) for m in _ASSIGNMENT.finditer(line)]
        found_pairs += [(m.group(1), m.group(2)) for m in [_ENV_MAGIC.match(line)] if m]
        for name, value in found_pairs:
            if not _PLACEHOLDER.match(value) and _entropy(value) >= 3.0 and len(set(value)) >= 6:
                yield f"a hard-coded {name.lower()}", number
                break


def looks_secret(text: str) -> bool:
    """Might ``text`` (a tag, a name) be a credential? Known formats, or a long random-looking word: such text is
    never echoed in a message."""
    if any(True for _ in scan(text)):
        return True
    words = re.findall(r"[A-Za-z0-9_+/=.-]{16,}", text)
    return any(
        _entropy(w) >= 3.5 and re.search(r"[0-9]", w) and re.search(r"[A-Za-z]", w) and not re.search(r"[-.]", w)
        for w in words
    )


def output_text(output: object) -> str:
    """The text of a cell output (streams, text/plain and other text data, tracebacks)."""
    if not isinstance(output, dict):
        return ""
    parts: list[object] = [output.get("text", "")]
    data = output.get("data")
    if isinstance(data, dict):
        parts.extend(v for k, v in data.items() if k.startswith("text/") or k.endswith("json"))
    parts.extend(output.get("traceback", []) if isinstance(output.get("traceback"), list) else [])
    return "\n".join("".join(p) if isinstance(p, list) else str(p) for p in parts if p)
