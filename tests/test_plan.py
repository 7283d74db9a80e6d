"""backends.plan: steps added / removed / changed, and which steps KFP's cache serves (downstream invalidation)."""

from __future__ import annotations

import json

from clirun import Make
from nb2kfp.backends import plan as planner
from nb2kfp.backends.plan import Plan, StepPlan
from nb2kfp.frontend.builder import build
from nb2kfp.ir import CodeCell, Pipeline, Step, VariableEdge
from nbfactory import Cell


def cells(
    prep: str = "clean = [x * 2 for x in data]",
    lr: str = "0.1",
    train_tags: tuple[str, ...] = (),
    extra: list[Cell] | None = None,
    with_report: bool = True,
) -> list[Cell]:
    out: list[Cell] = [
        (["imports"], "import json"),
        (["pipeline-parameters"], f"lr = {lr}\nn = 3"),
        (["step:load"], "data = list(range(n))"),
        (["step:prep", "prev:load"], prep),
        (["step:train", "prev:prep", *train_tags], "model = sum(clean) * lr"),
    ]
    if with_report:
        out.append((["step:report", "prev:load"], "size = len(data)"))
        out.append((["step:evaluate", "prev:train", "prev:report"], "score = model + size\nprint(json.dumps(score))"))
    else:
        out.append((["step:evaluate", "prev:train"], "score = model\nprint(json.dumps(score))"))
    return out + (extra or [])


def compiled(make_nb: Make, name: str, **kw: object) -> Pipeline:
    return build(make_nb(cells(**kw), name=name)).pipeline  # type: ignore[arg-type]


def by_name(plan: Plan) -> dict[str, StepPlan]:
    return {s.name: s for s in plan.steps}


def test_same_notebook_everything_unchanged_and_served(make_nb: Make) -> None:
    old = compiled(make_nb, "a.ipynb")
    new = compiled(make_nb, "a.ipynb")
    plan = planner.diff(old, new)
    assert [s.status for s in plan.steps] == ["unchanged"] * 5
    assert all(s.cached for s in plan.steps)
    assert plan.runs == 0 and plan.cached == 5
    assert plan.summary().endswith(
        "0 added, 0 removed, 0 changed, 5 unchanged; 0 of 5 step(s) run, 5 served from cache"
    )


def test_no_base_means_everything_added_and_run(make_nb: Make) -> None:
    plan = planner.diff(None, compiled(make_nb, "a.ipynb"))
    assert {s.status for s in plan.steps} == {"added"}
    assert not any(s.cached for s in plan.steps)
    assert plan.has_base is False
    assert plan.rows()[0] == ("load", "added", "-", "runs (new step)")


def test_changed_code_reruns_the_step_and_everything_downstream(make_nb: Make) -> None:
    old = compiled(make_nb, "a.ipynb")
    new = build(make_nb(cells(prep="clean = [x * 3 for x in data]"), name="a.ipynb")).pipeline
    steps = by_name(planner.diff(old, new))
    assert steps["prep"].status == "changed" and steps["prep"].changes == ("code",)
    assert steps["prep"].reason == "changed: code"
    assert steps["train"].status == "unchanged" and not steps["train"].cached
    assert steps["train"].reason == "upstream re-runs: prep"
    assert steps["evaluate"].reason == "upstream re-runs: train"
    assert steps["load"].cached and steps["report"].cached  # not downstream of prep


def test_parameter_default_change_invalidates_its_readers_only(make_nb: Make) -> None:
    old = compiled(make_nb, "a.ipynb")
    new = build(make_nb(cells(lr="0.2"), name="a.ipynb")).pipeline
    plan = planner.diff(old, new)
    steps = by_name(plan)
    assert steps["train"].changes == ("parameters",) and not steps["train"].cached
    assert steps["prep"].cached and steps["load"].cached and steps["report"].cached
    assert not steps["evaluate"].cached
    assert plan.parameters == ("lr: default 0.1 -> 0.2",)


def test_added_and_removed_steps(make_nb: Make) -> None:
    old = compiled(make_nb, "a.ipynb")
    extra: list[Cell] = [(["step:publish", "prev:evaluate"], "published = score")]
    new = build(make_nb(cells(extra=extra, with_report=False), name="a.ipynb")).pipeline
    plan = planner.diff(old, new)
    steps = by_name(plan)
    assert steps["publish"].status == "added" and not steps["publish"].cached
    assert steps["report"].status == "removed"
    assert plan.steps[-1].name == "report"  # removed steps come last
    assert steps["evaluate"].status == "changed" and "inputs" in steps["evaluate"].changes
    assert steps["train"].cached  # untouched upstream stays served
    assert ("report", "removed", "-", "-") in plan.rows()


def test_image_resources_and_caching_changes(make_nb: Make) -> None:
    old = compiled(make_nb, "a.ipynb")
    new = build(make_nb(cells(train_tags=("image:python:3.12-slim", "limit:cpu:2")), name="a.ipynb")).pipeline
    steps = by_name(planner.diff(old, new))
    assert steps["train"].changes == ("image", "resources")
    assert not steps["train"].cached

    off = build(make_nb(cells(train_tags=("cache:disabled",)), name="a.ipynb")).pipeline
    steps = by_name(planner.diff(old, off))
    assert steps["train"].reason == "caching disabled" and "caching" in steps["train"].changes
    assert steps["evaluate"].reason == "upstream re-runs: train"
    assert steps["prep"].cached


def _step(name: str, source: str, **kw: object) -> Step:
    return Step(name=name, cells=(CodeCell(1, source),), **kw)  # type: ignore[arg-type]


def _pipe(*steps: Step) -> Pipeline:
    return Pipeline(name="hand", source="hand.ipynb", source_hash="x", steps=steps)


def test_hand_built_ir_pod_settings_do_not_touch_the_cache() -> None:
    a = _step("a", "x = 1", outputs=("x",))
    b = _step("b", "y = x", inputs=(VariableEdge("x", "a"),))
    labelled = _step("a", "x = 1", outputs=("x",), labels=(("team", "ml"),))
    plan = planner.diff(_pipe(a, b), _pipe(labelled, b))
    steps = by_name(plan)
    assert steps["a"].status == "changed" and steps["a"].changes == ("pod settings",)
    assert steps["a"].cached and steps["b"].cached


def test_hand_built_ir_prelude_change_touches_every_step() -> None:
    a, b = _step("a", "x = 1", outputs=("x",)), _step("b", "y = x", inputs=(VariableEdge("x", "a"),))
    old = _pipe(a, b)
    new = Pipeline(name="hand", source="hand.ipynb", source_hash="y", steps=(a, b), prelude=(CodeCell(1, "import os"),))
    steps = by_name(planner.diff(old, new))
    assert steps["a"].changes == ("code",) and steps["b"].changes == ("code",)
    assert not steps["a"].cached and steps["b"].reason == "changed: code"


def test_renderings_are_stable(make_nb: Make) -> None:
    old = compiled(make_nb, "a.ipynb")
    new = build(make_nb(cells(prep="clean = [x * 3 for x in data]"), name="a.ipynb")).pipeline
    plan = planner.diff(old, new)
    text = planner.text(plan)
    assert text.splitlines()[0].split() == ["step", "status", "changes", "cache"]
    assert "prep      changed    code     runs (changed: code)" in text
    md = planner.markdown(plan)
    assert "| `prep` | changed | code | runs (changed: code) |" in md
    assert "| `load` | unchanged | - | served from cache |" in md
    assert md == planner.markdown(planner.diff(old, new))
    data = json.loads(json.dumps(plan.as_dict()))
    assert data["steps"][1] == {
        "step": "prep",
        "status": "changed",
        "changes": ["code"],
        "cached": False,
        "reason": "changed: code",
    }
