"""What `nb2kfp build` prints while the engine pushes (issue 26): progress never reads more done than there is."""

from __future__ import annotations

import time
from typing import Any

import pytest

from nb2kfp.images import step_image
from nb2kfp.masking import Masker


def test_push_progress_is_capped_at_each_layers_total(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's push stream reports a layer's current bytes past its total (compressed estimate vs sent):
    the build printed "533.0 / 523.8 MB". The stream below is the shape docker-py yields for a push."""
    clock = iter(range(0, 100, 3))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))  # a report every item
    stream: list[dict[str, Any]] = [
        {"status": "Pushing", "id": "l1", "progressDetail": {"current": 300_000_000, "total": 280_000_000}},
        {"status": "Pushing", "id": "l2", "progressDetail": {"current": 233_000_000, "total": 243_800_000}},
        {"status": "Pushed", "id": "l1"},
    ]
    lines: list[str] = []
    aux = step_image._stream(iter(stream), lines.append, Masker(), quiet=False)
    shown = [line for line in lines if "pushing" in line]
    assert shown, lines
    for line in shown:
        done, total = (float(x) for x in line.split(": ")[1].removesuffix(" MB").split(" / "))
        assert done <= total, line
    assert aux["pushed_bytes"] == 280_000_000 + 243_800_000
