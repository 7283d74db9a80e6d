"""The one way nb2kfp reads YAML it did not write in this run (parameter files, catalog components, specs and
manifests given by path, the user's config files): PyYAML's safe loader with bounds.

A 1 KB file of nested aliases (``b: [*a, *a, ...]``, each level repeating the one before) stands for billions of
values: whoever walks it (checks, copies, JSON) spends minutes and gigabytes. A deeply nested document overflows
PyYAML's recursive composer (a traceback). So a text is refused, with a located one-line :class:`YamlError`, when it
is over :data:`MAX_CHARS` characters, uses more than :data:`MAX_ALIASES` aliases, nests more than :data:`MAX_DEPTH`
levels (aliases expanded) or stands for more than :data:`MAX_NODES` values once its aliases are expanded (a
recursive alias stands for endless ones). Every check happens while or right after composing, before a single value
is built.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_CHARS = 16 << 20
MAX_ALIASES = 1000
MAX_DEPTH = 100
MAX_NODES = 1_000_000


class YamlError(ValueError):
    """Not YAML, or over a bound: ``line L, column C: what`` (never the text itself)."""


def _refuse(problem: str, mark: Mark | None) -> ComposerError:
    return ComposerError(None, None, problem, mark)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expanded(root: Node) -> None:
    """Refuse a document whose aliases expand to too many values, too deep, or endlessly (iterative: no recursion)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()  # begun, not finished: the path from the root (a child among them is a cycle)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            kids = [id(k) for k in _children(node)]
            size[key] = 1 + sum(size[k] for k in kids)
            depth[key] = 1 + max((depth[k] for k in kids), default=0)
            open_nodes.discard(key)
            if size[key] > MAX_NODES:
                raise _refuse(f"aliases expand to more than {MAX_NODES:,} values", node.start_mark)
            if depth[key] > MAX_DEPTH:
                raise _refuse(f"aliases nest values more than {MAX_DEPTH} levels deep", node.start_mark)
        elif key not in size:
            if key in open_nodes:
                raise _refuse("a recursive alias (a value holding itself)", node.start_mark)
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((kid, False) for kid in _children(node) if id(kid) not in size)


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _refuse(f"more than {MAX_ALIASES} aliases (*name)", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _refuse(f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if self._aliases and node is not None:
            _check_expanded(node)
        return node


def _error(exc: yaml.YAMLError) -> YamlError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or "not YAML"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return YamlError(where + " ".join(str(problem).split()))


def load_all(text: str) -> list[Any]:
    """Every document of ``text`` (None for an empty one); YamlError when it is no YAML or over a bound."""
    if len(text) > MAX_CHARS:
        raise YamlError(f"over {MAX_CHARS >> 20} MiB")
    try:
        return list(yaml.load_all(text, Loader=_BoundedLoader))
    except yaml.YAMLError as exc:
        raise _error(exc) from None
    except RecursionError:  # not expected (depth is bounded), but never a traceback
        raise YamlError(f"nested more than {MAX_DEPTH} levels deep") from None


def load(text: str) -> Any:
    """The one document of ``text`` (None when empty); YamlError when it is no YAML, holds several documents or is
    over a bound."""
    docs = load_all(text)
    if len(docs) > 1:
        raise YamlError("expected one document, found several (---)")
    return docs[0] if docs else None
