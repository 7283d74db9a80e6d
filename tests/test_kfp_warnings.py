"""kfp.local's warnings as nb2kfp notes; every other warning shown as Python shows it."""

from __future__ import annotations

import threading
import warnings

from nb2kfp.local_run import kfp_warnings


def _run(body: list[tuple[str, type[Warning]]], notes: list[str]) -> None:
    with kfp_warnings.translated(notes.append, {"train-model": "train_model"}):
        for message, category in body:
            warnings.warn(message, category, stacklevel=1)


def test_kfp_local_warnings_become_one_note_each_and_others_are_shown_once() -> None:
    notes: list[str] = []
    body = [
        ("Task 'train-model': settings ['cpu_limit'] have no effect in the current local runner", UserWarning),
        ("Task 'train-model': settings ['memory_limit'] have no effect in the current local runner", UserWarning),
        (
            'You may be attemping to run a task that uses custom or non-Python base image "img:1"',
            UserWarning,
        ),
        ("something else the user should see", UserWarning),
    ]
    # a warning that is not kfp.local's used to be shown inside the recording context: recorded again, for ever
    with warnings.catch_warnings(record=True) as shown:
        worker = threading.Thread(target=_run, args=(body, notes), daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "translated() never finished"
    assert notes == [
        "note: kfp.local does not apply cpu limit, memory limit (step train_model); a cluster run does",
        "note: steps run in this Python environment, not in img:1 (--docker uses it)",
    ]
    assert [str(w.message) for w in shown] == ["something else the user should see"]


def test_other_warnings_keep_pythons_filters() -> None:
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("ignore", DeprecationWarning)
        _run([("an old API", DeprecationWarning)], notes)
    assert notes == [] and shown == []
