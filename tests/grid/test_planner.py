"""The planner: each task once, keyed by the content of its settings, so nothing runs twice."""

from __future__ import annotations

from erase_jax.grid.planner import make_plan
from erase_jax.grid.spec import build_grid
from tests.grid.test_spec import grid_with


def plan_of(**changes):
    return make_plan(build_grid(grid_with(**changes), "g"))


def kinds(plan) -> dict[str, int]:
    return {kind: plan.count(kind) for kind in ("train", "retrain", "reference", "unlearn")}


def test_methods_share_one_trained_model_and_one_set_of_retrains():
    plan = plan_of(methods={"untouched": {}, "scif": {}, "kookmin": {}})
    assert kinds(plan) == {"train": 1, "retrain": 4, "reference": 1, "unlearn": 3}
    train, reference = {c.train for c in plan.cells}, {c.reference for c in plan.cells}
    assert len(train) == 1 and len(reference) == 1
    retrains = plan.tasks[reference.pop()].deps
    assert sorted(plan.tasks[r].spec["k"] for r in retrains) == [0, 1, 2, 3]
    assert all(plan.tasks[r].deps == tuple(train) for r in retrains)
    assert len({plan.tasks[r].spec["folder"] for r in retrains}) == 1  # one scenario folder, where each method finds them
    assert list(plan.tasks).index(next(iter(train))) == 0  # dependencies come first


def test_keys_follow_the_resolved_settings_not_how_they_are_written():
    plain = plan_of()
    explicit = plan_of(methods={"untouched": {}, "scif": {"cg_iterations": 100}},  # the default, spelled out
                       settings={"train.epochs": 1, "train.batch_size": 256})
    assert list(plain.tasks) == list(explicit.tasks)
    other = plan_of(methods={"untouched": {}, "scif": {"cg_iterations": 50}})
    changed = set(other.tasks) - set(plain.tasks)
    assert [other.tasks[t].kind for t in changed] == ["unlearn"]  # only the method's own run


def test_an_overlapping_grid_plans_the_shared_tasks_with_the_same_ids():
    first = plan_of()
    second = plan_of(methods={"untouched": {}, "scif": {}, "fanchuan": {}}, seeds=[2, 3])
    assert set(first.tasks) < set(second.tasks)
    new = set(second.tasks) - set(first.tasks)
    # seed 3: a train, its retrains and reference, three methods; seed 2: only fanchuan
    assert len(new) == 1 + 4 + 1 + 3 + 1


def test_what_shapes_the_request_stream_decides_the_retrains():
    plan = plan_of(scenarios={
        "horror": {"scenario": "sensitive", "category": "Horror", "fraction": 0.01},
        "horror-2": {"scenario": "sensitive", "category": "Horror", "fraction": 0.02},
        "random": {"scenario": "random", "fraction": 0.01},
        "spam": {"scenario": "spam", "spam_ratio": 0.05},
    }, unlearn={"max_hours": 1.0})
    trains = {c.cell.scenario: c.train for c in plan.cells}
    assert trains["horror"] == trains["horror-2"] == trains["random"] != trains["spam"]  # spam: a poisoned model
    references = {c.cell.scenario: c.reference for c in plan.cells}
    assert len(set(references.values())) == 4
    assert "max_hours" not in plan.tasks[references["horror"]].spec["unlearn"]  # a method's budget, not the stream's
    assert kinds(plan) == {"train": 2, "retrain": 16, "reference": 4, "unlearn": 8}


def test_retrain_seeds_add_retrains_the_reference_evaluates_in_a_scenario_folder_of_their_own():
    plain, seeded = plan_of(), plan_of(retrain_seeds=[3, 4])
    assert kinds(seeded) == {"train": 1, "retrain": 12, "reference": 1, "unlearn": 2}
    reference = seeded.tasks[seeded.cells[0].reference]
    assert reference.spec["retrain_seeds"] == [3, 4] and len(reference.deps) == 12
    retrains = [seeded.tasks[r].spec for r in reference.deps]
    assert [(r.get("seed"), r["k"]) for r in retrains] == [(s, k) for s in (None, 3, 4) for k in range(4)]
    assert {r["folder"] for r in retrains} == {reference.spec["folder"]}
    # the trained model is shared; the reference is another one, so a grid without seeds never reads their rows
    assert set(seeded.tasks) & set(plain.tasks) == {seeded.cells[0].train}
