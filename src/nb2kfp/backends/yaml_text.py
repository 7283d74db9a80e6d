"""A small, deterministic block-style YAML writer for pipeline specs (dicts, lists, str, int, float, bool, None).

PyYAML's pure-Python emitter was most of a compile's time (the step runtime's source sits in every executor),
and its C emitter is not guaranteed to write the same bytes. This writer's output depends on nothing but the
data: keys sorted, block style as KFP's compiler writes it (list items at their key's indentation), multi-line
strings as literal blocks, other strings plain when YAML 1.1 reads them back as the same string, JSON-quoted
otherwise. Tests hold it to ``yaml.safe_load(dump(doc)) == doc`` on generated documents.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./@:+=-]*")  # fullmatch: no spaces or leading indicators
# What YAML 1.1 (PyYAML, KFP's loader) reads as something other than a string: such text must be quoted.
_IMPLICIT = re.compile(
    r"""(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|y|Y|n|N
    |[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
    |[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+
    |<<|~|null|Null|NULL|=
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[\ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
     (?:[\ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)""",
    re.X,
)
# ... and what YAML 1.2's core schema (KFP's Go backend) reads as a number, bool or null.
_IMPLICIT12 = re.compile(
    r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)|true|True|TRUE|false|False|FALSE|null|Null|NULL|~"
)


def dump(doc: dict[str, Any]) -> str:
    out: list[str] = []
    _mapping(doc, 0, out)
    return "".join(out)


def _mapping(doc: dict[str, Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for key in sorted(doc):
        _entry(f"{pad}{_scalar(str(key))}:", doc[key], indent, out)


def _entry(head: str, value: Any, indent: int, out: list[str]) -> None:
    """``head`` is ``key:`` (or ``-`` in a list); the value follows on the same line or below it."""
    if isinstance(value, dict):
        if value:
            out.append(head + "\n")
            _mapping(value, indent + 2, out)
        else:
            out.append(head + " {}\n")
    elif isinstance(value, list):
        if value:
            out.append(head + "\n")
            _sequence(value, indent if head.rstrip().endswith(":") else indent + 2, out)
        else:
            out.append(head + " []\n")
    elif isinstance(value, str) and _block_ok(value):
        out.append(head + " " + _block(value, indent + 2) + "\n")
    else:
        out.append(f"{head} {_scalar(value)}\n")


def _sequence(items: list[Any], indent: int, out: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, dict) and item:
            first, *rest = sorted(item)
            _entry(f"{pad}- {_scalar(str(first))}:", item[first], indent + 2, out)
            if rest:
                _mapping({k: item[k] for k in rest}, indent + 2, out)
        else:
            _entry(f"{pad}-", item, indent, out)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    text = str(value)
    if (
        _PLAIN.fullmatch(text)
        and not text.endswith(":")
        and not _IMPLICIT.fullmatch(text)
        and not _IMPLICIT12.fullmatch(text)
    ):
        return text
    return _quoted(text)


def _float(value: float) -> str:
    """As PyYAML writes floats, so YAML 1.1 reads them back as floats."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value).lower()
    if "." not in text and "e" in text:
        text = text.replace("e", ".0e", 1)
    elif "." not in text:
        text += ".0"
    return text


def _quoted(text: str) -> str:
    """A JSON string is a YAML double-quoted scalar; escape what YAML would read as a line break or drop."""
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(c if c.isprintable() or c in "\t" else _escape(c) for c in quoted)


def _escape(c: str) -> str:
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"


def _block_ok(text: str) -> bool:
    if "\n" not in text or not text.strip("\n"):
        return False
    return all(c.isprintable() or c in "\n\t" for c in text) and "\r" not in text


def _block(text: str, indent: int) -> str:
    body = text.rstrip("\n")
    trailing = len(text) - len(body)
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    first = next((line for line in body.split("\n") if line), "")
    indicator = "2" if first[:1] in (" ", "\t") else ""  # content sits 2 past its key or dash
    pad = " " * indent
    lines = body.split("\n") + [""] * (trailing - 1 if trailing > 1 else 0)
    rendered = "\n".join(pad + line if line else "" for line in lines)
    return f"|{indicator}{chomp}\n{rendered}"
