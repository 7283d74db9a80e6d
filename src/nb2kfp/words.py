"""Words for messages: counted nouns (``1 step``, ``2 steps``) and text from outside made safe to show."""


def count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def printable(text: str) -> str:
    """``text`` on one line with every character that is not printable escaped (``\\n``, ``\\r``, ``\\x1b``, bidi
    controls, ...): text from outside (registry labels, file names, payloads) can then neither move the terminal's
    cursor, clear what is shown, nor start a line of its own in a message, a log or a Markdown note."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
