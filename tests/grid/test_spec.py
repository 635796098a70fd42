"""Grid files: the shipped ones validate, and a bad one is refused before anything runs, naming
the key at fault."""

from __future__ import annotations

import copy

import pytest
import yaml

from erase_jax.cli import main
from erase_jax.grid.spec import GridError, build_grid, load_grid
from erase_jax.unlearn import build_method, method_names
from tests.conftest import REPO_ROOT

GRIDS = REPO_ROOT / "experiments" / "grids"
BASELINES = ("Pop", "ItemKNN", "EASE", "Random")  # the CF grids' non-learned models
SMOKE = yaml.safe_load((GRIDS / "smoke.yaml").read_text())


def grid_with(**changes) -> dict:
    values = copy.deepcopy(SMOKE)
    values.update(changes)
    return values


def test_the_smoke_grid_resolves_every_layer_of_settings():
    grid = load_grid(GRIDS / "smoke.yaml")
    assert [(c.dataset, c.model, c.scenario, c.method, c.seed) for c in grid.cells] == [
        ("synthetic", "BPR", "horror", "untouched", 2), ("synthetic", "BPR", "horror", "scif", 2)]
    run = grid.cells[1].run
    assert (run.model, run.data.dataset, run.seed, run.train.epochs, run.train.batch_size) == ("BPR", "synthetic", 2, 1, 256)
    assert run.data.synthetic == {"n_users": 100, "n_items": 50, "avg_interactions": 12}
    assert run.model_params["embedding_size"] == 8 and "reg_weight" in run.model_params  # the model's defaults filled
    unlearn = grid.cells[1].unlearn
    assert (unlearn.method, unlearn.scenario, unlearn.category, unlearn.fraction) == ("scif", "sensitive", "Horror", 0.01)
    assert unlearn.method_options["cg_iterations"] == 100  # every option explicit


def test_layers_merge_in_order_and_spam_ratio_poisons_the_trained_model():
    grid = build_grid(grid_with(
        settings={"train.epochs": 3, "train": {"learning_rate": 0.01}},
        models={"BPR": {"train.epochs": 5}, "lgcn": {"model": "LightGCN"}},
        scenarios={"spam": {"scenario": "spam", "spam_ratio": 0.05}},
        methods=["original"],  # a list: labels without settings of their own
    ), "g")
    by_model = {c.model: c.run for c in grid.cells}
    assert by_model["BPR"].train.epochs == 5 and by_model["lgcn"].train.epochs == 3
    assert by_model["BPR"].train.learning_rate == 0.01 and by_model["lgcn"].model == "LightGCN"
    assert by_model["BPR"].data.spam_ratio == 0.05 and grid.cells[0].unlearn.scenario == "spam"
    assert [c.method for c in grid.cells] == ["original", "original"]


def test_the_full_cf_ml100k_grid_has_every_approximate_method():
    grid = load_grid(GRIDS / "cf_ml-100k_full.yaml")
    approximate = {name for name in method_names() if not hasattr(build_method(name), "start")}  # exact ones build shards
    assert {build_method(c.unlearn.method).name for c in grid.cells} == approximate  # `original`: untouched
    assert {c.model for c in grid.cells} == {"BPR", "LightGCN", "SGL", *BASELINES}
    assert {c.method for c in grid.cells if c.model in BASELINES} == {"original"}  # the no-op alone: recomputed
    assert {c.unlearn.scenario for c in grid.cells} == {"sensitive", "spam", "random"}
    assert len({c.seed for c in grid.cells}) == 3


def test_the_full_cf_ml100k_dry_run_prints_the_plan(tmp_path, capsys):
    assert main(["grid", str(GRIDS / "cf_ml-100k_full.yaml"), "--dry-run", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    # 7 models x 3 seeds x (clean, poisoned); 63 (model, scenario, seed) with 4 retrains each; 8 methods for
    # each of the 27 of the learned models, the no-op alone for the 36 of the baselines
    assert "609 tasks (42 train, 252 retrain, 63 reference, 252 unlearn)" in text
    assert "estimated cost" in text and not any(tmp_path.iterdir())  # nothing written


BAD_GRIDS = {
    "top-level key": (dict(seed=[2]), "unknown keys ['seed']"),
    "run setting": (dict(models={"BPR": {"train.epoch": 3}}), "unknown config keys ['train.epoch']"),
    "model": (dict(models={"Bert": {}}), "unknown model 'Bert'"),
    "model parameter": (dict(models={"BPR": {"model_params.embedding": 8}}), "unknown model_params ['embedding']"),
    "method option": (dict(methods={"original": {}, "scif": {"dampin": 0.1}}), "methods.scif: method scif: unknown options ['dampin']"),
    "method": (dict(methods={"sicf": {}}), "methods.sicf: unknown unlearning method 'sicf'"),
    "scenario field": (dict(scenarios={"h": {"scenario": "sensitive", "categori": "Horror"}}),
                       "unknown config keys ['scenarios.h.categori']"),
    "spam without a ratio": (dict(scenarios={"spam": {"scenario": "spam"}}), "scenarios.spam: the spam scenario needs spam_ratio"),
    "seeds": (dict(seeds=2), "seeds must be a non-empty list"),
    "retrain seeds": (dict(retrain_seeds=[3, "4"]), "retrain_seeds must be a non-empty list of integers"),
    "a retrain seed twice": (dict(retrain_seeds=[3, 3]), "retrain_seeds has a seed twice: [3, 3]"),
    "a baseline without the no-op": (dict(models={"Pop": {}}, methods={"scif": {}}),
                                     "models.Pop: Pop is not learned, so the grid runs it only with the no-op method"),
    "audit key": (dict(audit={"shadow": 9}), "audit: unknown keys ['shadow']"),
    "audit removal": (dict(audit={"removals": ["untouched", "scfi"]}), "audit: unknown unlearning method 'scfi'"),
    "audit shadows": (dict(audit={"shadows": 4}), "audit: audit: --shadows must be at least 9"),
}


def test_the_audit_section_audits_the_default_methods_under_their_labels():
    grid = build_grid(grid_with(methods={"original": {}, "scif": {}, "scif-strong": {"method": "scif", "damping": 0.5}},
                                audit={"shadows": 9}), "audited")
    assert grid.audit["shadows"] == 9 and grid.audit["removals"] == ["untouched", "retrain", "scif"]
    # the no-op's rows take the grid's label for it; a method with other options is not audited
    assert dict(grid.audit_labels) == {"untouched": "original", "retrain": "retrain", "scif": "scif"}
    assert build_grid(grid_with(), "plain").audit is None


@pytest.mark.parametrize("case", BAD_GRIDS)
def test_a_bad_grid_is_refused_naming_the_key(case):
    changes, message = BAD_GRIDS[case]
    with pytest.raises(GridError) as error:
        build_grid(grid_with(**changes), "bad")
    assert message in str(error.value)


def test_the_command_refuses_a_bad_grid_before_anything_runs(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    bad = grid_with(methods={"original": {}, "scif": {"damping": 0.1, "cg_iterationz": 5}})
    path.write_text(yaml.safe_dump(bad))
    out = tmp_path / "out"
    assert main(["grid", str(path), "--out", str(out), "--quiet"]) == 2
    assert "unknown options ['cg_iterationz']" in capsys.readouterr().err
    assert main(["grid", str(GRIDS / "smoke.yaml"), "--out", str(out), "--executor", "slurm", "--quiet"]) == 2
    assert "unknown executor 'slurm'; available: ['local', 'ray']" in capsys.readouterr().err
    assert main(["grid", str(GRIDS / "smoke.yaml"), "--out", str(out), "--address", "auto", "--quiet"]) == 2
    assert "only --executor ray joins one" in capsys.readouterr().err
    assert not out.exists()
