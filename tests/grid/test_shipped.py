"""The shipped grid files: each validates and plans, and each trains its models exactly as the
experiment configuration it cites (`experiments/configs/`), resolved independently of the grid
code (`load_config` with the overrides the old experiment scripts passed)."""

from __future__ import annotations

import pytest
import yaml

from erase_jax import config as config_lib
from erase_jax.grid.planner import make_plan
from erase_jax.grid.spec import load_grid
from tests.conftest import REPO_ROOT
from tests.grid.test_spec import GRIDS

CONFIGS = REPO_ROOT / "experiments" / "configs"
# grid file -> (the config each model's runs follow, the overrides the replaced script passed)
CITED = {
    "cf_ml-100k": ("{model}_ml-100k.yaml", []),
    "cf_ml-100k_full": ("{model}_ml-100k.yaml", []),
    "cf_exact_ml-100k": ("{model}_ml-100k.yaml", []),
    "receraser_ml-1m": ("{model}_ml-1m-receraser-shards.yaml", []),
    "method_distance_ml-100k": ("{model}_ml-100k.yaml", ["train.stopping_step=100"]),
    "method_distance_sasrec_ml-100k": ("{model}_ml-100k-seq.yaml", ["sequence.objective=all_positions", "train.batch_size=32",
                                                                   "train.epochs=10", "train.stopping_step=10"]),
    "sbr_ml-100k": ("{model}_ml-100k-seq.yaml", ["train.epochs=12"]),
    "nbr_tafeng": ("{model}_tafeng.yaml", ["train.epochs=20", "train.eval_step=5",
                                           "data.category_file=experiments/grids/tafeng/synthetic.txt"]),
}


@pytest.mark.parametrize("path", sorted(GRIDS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_grid_validates_and_plans_each_task_once(path):
    plan = make_plan(load_grid(path))
    assert len(plan.cells) == len(plan.grid.cells) and plan.count("unlearn") == len(plan.grid.cells)
    assert all(set(task.deps) <= set(plan.tasks) for task in plan.tasks.values())


def test_the_cf_grid_that_ran_is_a_part_of_the_full_one():
    ran, full = (make_plan(load_grid(GRIDS / f"{name}.yaml")).tasks for name in ("cf_ml-100k", "cf_ml-100k_full"))
    assert set(ran) < set(full)  # the full grid reuses every task of the one that ran


@pytest.mark.parametrize("name", CITED)
def test_a_shipped_grid_trains_as_the_configuration_it_cites(name):
    pattern, overrides = CITED[name]
    for cell in load_grid(GRIDS / f"{name}.yaml").cells:
        extra = [f"seed={cell.seed}"] + (["data.spam_ratio=0.01"] if cell.unlearn.scenario == "spam" else [])
        expected = config_lib.resolve(config_lib.load_config(CONFIGS / pattern.format(model=cell.model.lower()),
                                                             overrides + extra))
        assert config_lib.to_dict(cell.run) == config_lib.to_dict(expected), (cell.model, cell.scenario)


# an exact-unlearning grid -> the methods YAML whose shard options it runs (chosen on validation)
CHOSEN = {"cf_exact_ml-100k": "bpr_ml-100k-shards-methods.yaml", "receraser_ml-1m": "bpr_ml-1m-receraser-shards-methods.yaml"}


@pytest.mark.parametrize("name", CHOSEN)
def test_an_exact_grid_runs_the_shard_options_chosen_on_validation(name):
    chosen = yaml.safe_load((CONFIGS / CHOSEN[name]).read_text())
    cells = [cell for cell in load_grid(GRIDS / f"{name}.yaml").cells if cell.method in chosen]
    assert {cell.method for cell in cells} == {"sisa", "receraser"}
    for cell in cells:
        assert {k: cell.unlearn.method_options[k] for k in chosen[cell.method]} == chosen[cell.method]


def test_the_exact_grid_shares_the_cf_grids_model_and_retrains():
    exact, cf = (make_plan(load_grid(GRIDS / f"{name}.yaml")) for name in ("cf_exact_ml-100k", "cf_ml-100k"))
    shared = {task for task in exact.tasks if not task.startswith("unlearn")}
    assert shared <= set(cf.tasks)  # only the methods' own tasks are new
