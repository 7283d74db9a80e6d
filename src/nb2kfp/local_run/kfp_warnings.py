"""kfp.local's own warnings, said once each as one nb2kfp line.

kfp.local warns per task that resource settings "have no effect in the current local runner", and that a
step image without "python" in its name may not match the Python it runs in. Both are expected in a local
run; people need to hear each once, in nb2kfp's words. Other warnings are shown as Python shows them.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterator

_NO_EFFECT = re.compile(r"Task '([^']+)': settings \[([^\]]*)\] have no effect")
_IMAGE = re.compile(r'non-Python base image "([^"]+)"')
_FILTERS = (r"Task '[^']+': settings \[", r'.*non-Python base image "')  # warnings.filterwarnings: from the start


@contextlib.contextmanager
def translated(report: Callable[[str], None], task_to_step: dict[str, str]) -> Iterator[None]:
    """Collect kfp.local's warnings raised inside (every one: they name the step); afterwards report them
    as one line each. Other warnings keep Python's filters and are shown as Python shows them, after."""
    others: list[warnings.WarningMessage] = []
    settings: dict[str, set[str]] = {}
    images: set[str] = set()
    with warnings.catch_warnings(record=True) as caught:
        for pattern in _FILTERS:
            warnings.filterwarnings("always", message=pattern)
        try:
            yield
        finally:
            for w in caught:
                text = str(w.message)
                if m := _NO_EFFECT.search(text):
                    step = task_to_step.get(m.group(1), m.group(1))
                    settings.setdefault(step, set()).update(
                        s.strip(" '").replace("_", " ") for s in m.group(2).split(",")
                    )
                elif m := _IMAGE.search(text):
                    images.add(m.group(1))
                else:
                    others.append(w)
    for w in others:  # not inside: there, showing a warning records it again
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if settings:
        names = ", ".join(sorted({s for found in settings.values() for s in found}))
        steps = ("step " if len(settings) == 1 else "steps ") + ", ".join(sorted(settings))
        report(f"note: kfp.local does not apply {names} ({steps}); a cluster run does")
    if images:
        report(f"note: steps run in this Python environment, not in {', '.join(sorted(images))} (--docker uses it)")
