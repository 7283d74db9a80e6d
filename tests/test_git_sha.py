"""Commit ids from payloads: the one all-zeros test (nb2kfp.git.is_zero) and the commit-id check."""

from __future__ import annotations

import pytest

from nb2kfp import git


@pytest.mark.parametrize("sha", ["0" * 40, "0" * 64, "", None])
def test_no_base_commit(sha: str | None) -> None:
    assert git.is_zero(sha)


@pytest.mark.parametrize("sha", ["0" * 39 + "1", "a" * 40, "1" + "0" * 63])
def test_a_base_commit(sha: str) -> None:
    assert not git.is_zero(sha)
    assert git.check_sha(sha, "before") == sha


@pytest.mark.parametrize("text", ["0" * 39, "A" * 40, "g" * 40, "--upload-pack=x", 40])
def test_not_a_commit_id(text: object) -> None:
    with pytest.raises(ValueError, match="before is not a commit id"):
        git.check_sha(text, "before")
