"""Small differences between a kernel and a pipeline that the machine-learning corpus (tests/corpus/) found, each
fixed where it was a wrong refusal or a failed run, with the notebook that showed it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nb2kfp.frontend.builder import build

Make = Callable[..., Path]


def test_seaborns_hide_tag_is_a_foreign_tag_not_an_error(make_nb: Make) -> None:
    """seaborn/aesthetics, color_palettes: seaborn's docs leave cells tagged `hide` out (nbconvert's
    TagRemovePreprocessor); nb2kfp refused the notebook (NB010, unknown tag)."""
    result = build(make_nb([(["imports", "hide"], "import numpy as np"), (["step:a", "hide"], "x = np.int64(1)")]))
    assert not result.diagnostics
