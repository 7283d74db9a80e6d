"""Counted nouns for messages: ``1 step``, ``2 steps``."""


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
