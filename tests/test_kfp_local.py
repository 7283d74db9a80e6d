"""The one adapter over kfp.local's internals (local_run/kfp_local.py): everything nb2kfp swaps, calls or
overrides in kfp.local's private modules is listed there, checked against the installed kfp, and swapped only
through it. A kfp release that renames or reshapes one of them fails these tests (and a local run) loudly."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nb2kfp.backends import kfp_spec
from nb2kfp.errors import RunError
from nb2kfp.frontend.builder import build
from nb2kfp.local_run import kfp_local, runner

Make = Callable[..., Path]
ROOT = Path(__file__).resolve().parent.parent


def _current(internal: str) -> Any:
    module, _, path = internal.partition(":")
    found: Any = importlib.import_module(f"kfp.local.{module}")
    for name in path.split("."):
        found = getattr(found, name)
    return found


def test_the_installed_kfp_has_every_internal_nb2kfp_relies_on_as_it_expects() -> None:
    import kfp

    assert kfp.__version__ == kfp_local.TESTED
    kfp_local.check_all()


def test_kfp_is_pinned_to_the_release_the_adapter_was_written_for() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"kfp=={kfp_local.TESTED}"' in pyproject


def test_no_module_but_the_adapter_swaps_a_kfp_local_function() -> None:
    """Swaps are assignments to kfp.local modules' attributes: only kfp_local.py makes them."""
    offenders = []
    for path in (ROOT / "src" / "nb2kfp").rglob("*.py"):
        if path.name == "kfp_local.py":
            continue
        text = path.read_text(encoding="utf-8")
        for internal in kfp_local.INTERNALS:
            name = internal.rpartition(":")[2].rpartition(".")[2]
            if f".{name} = " in text:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_a_reshaped_internal_fails_loudly_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from kfp.local import task_dispatcher

    def run_single_task_implementation(component_name: str, *, spec: object) -> None:  # kfp "changed" it
        raise AssertionError("never called")

    monkeypatch.setattr(task_dispatcher, "run_single_task_implementation", run_single_task_implementation)
    with pytest.raises(RunError) as changed:
        kfp_local.check_all()
    message = str(changed.value)
    assert message.startswith("kfp 2.17.3 changed kfp.local.task_dispatcher.run_single_task_implementation, ")
    assert "found (component_name, spec)" in message and message.endswith(
        f"install kfp=={kfp_local.TESTED} (the release nb2kfp is tested with)"
    )
    with pytest.raises(RunError), kfp_local.swapped("task_dispatcher:run_single_task_implementation", lambda f: f):
        pass
    assert task_dispatcher.run_single_task_implementation is run_single_task_implementation  # nothing swapped


def test_a_missing_internal_fails_loudly_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from kfp.local import cache

    monkeypatch.delattr(cache, "get_local_cache")
    with pytest.raises(RunError, match=r"changed kfp\.local\.cache\.get_local_cache, .*: it is gone \(AttributeError"):
        kfp_local.check("cache:get_local_cache")


def test_a_local_run_goes_through_the_swaps_and_puts_kfp_back(make_nb: Make, tmp_path: Path) -> None:
    """In this process: the steps' events come from the swapped task entry, two steps run through the swapped
    run_dag (jobs=2), the cache through the swapped get_local_cache; afterwards kfp.local is as it was."""
    before = {internal: _current(internal) for internal in kfp_local.INTERNALS}
    nb = make_nb([(["step:a"], "x = 1"), (["step:b"], "y = 2"), (["step:c", "prev:a", "prev:b"], "z = x + y")])
    pipeline = build(nb).pipeline
    spec = tmp_path / "p.yaml"
    spec.write_text(kfp_spec.render(pipeline), encoding="utf-8")
    events: list[tuple[str, str]] = []
    result = runner.run(
        spec, pipeline, {}, tmp_path / "run", lambda s, st, _: events.append((s, st)), cache=tmp_path / "cache", jobs=2
    )
    assert result.status == "succeeded", json.dumps(result.as_dict())
    assert sorted(events) == sorted([(s, st) for s in "abc" for st in ("running", "succeeded")])
    assert events.index(("c", "running")) > max(events.index(("a", "succeeded")), events.index(("b", "succeeded")))
    assert {internal: _current(internal) for internal in kfp_local.INTERNALS} == before


def test_swaps_nest_and_checks_see_kfps_own_function_meanwhile() -> None:
    from kfp.local import subprocess_task_handler as handler

    internal = "subprocess_task_handler:run_local_subprocess"
    own = handler.run_local_subprocess
    calls: list[str] = []

    def outer(original: Callable[..., int]) -> Callable[..., int]:
        return lambda *args, **kwargs: calls.append("outer") or original(*args, **kwargs)

    def inner(original: Callable[..., int]) -> Callable[..., int]:
        return lambda *args, **kwargs: calls.append("inner") or original(*args, **kwargs)

    with kfp_local.swapped(internal, outer):
        kfp_local.check_all()  # the lambda's (*args, **kwargs) is not what is checked
        with kfp_local.swapped(internal, inner):
            kfp_local.check_all()
            assert handler.run_local_subprocess(["true"]) == 0
        assert handler.run_local_subprocess(["true"]) == 0
    assert calls == ["inner", "outer", "outer"] and handler.run_local_subprocess is own


def test_without_the_docker_package_the_docker_handler_is_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "kfp.local.docker_task_handler", raising=False)
    monkeypatch.setitem(sys.modules, "docker", None)  # import docker fails, as without nb2kfp[containers]
    assert not kfp_local.available("docker_task_handler:run_docker_container")
    kfp_local.check_all()
    with pytest.raises(RunError, match="it is gone"):
        kfp_local.check("docker_task_handler:run_docker_container")
