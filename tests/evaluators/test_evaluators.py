"""Evaluator plug-ins: found by name, selected by `UnlearnConfig.evaluators`, their numbers in the rows.

A toy evaluator defined here (not in `erase_jax/evaluators/`) is registered for this module
only, selected through the configuration, and must appear in the rows the protocol writes;
the default selection serialises as before the field existed, so old run folders resume.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import yaml

from erase_jax import config as config_lib
from erase_jax.config import load_config
from erase_jax.evaluators.base import DEFAULT_EVALUATORS, EVALUATORS, Checkpoint, ScoredModel
from erase_jax.run import load_run, train_run
from erase_jax.unlearn.protocol import jobs, results
from erase_jax.unlearn.protocol.run import CONFIG_FILE, UnlearnConfig, build_protocol

SMALL_SYNTHETIC = "data.synthetic={n_users: 300, n_items: 150, avg_interactions: 20}"
SCENARIO = dict(scenario="sensitive", category="Horror", fraction=0.02)  # 20 requests


@dataclasses.dataclass(frozen=True)
class ToyEvaluator:
    """Counts what the protocol hands it: the checkpoint, its unlearned users, the reference."""

    name: ClassVar[str] = "toy_counts"

    def evaluate(self, checkpoint: Checkpoint) -> dict:
        return {
            "toy_checkpoint": checkpoint.k,
            "toy_unlearned_users": int(len(checkpoint.unlearned_users)),
            "toy_has_reference": int(checkpoint.reference is not None),
        }


@dataclasses.dataclass(frozen=True)
class ClashingEvaluator:
    name: ClassVar[str] = "toy_clash"

    def evaluate(self, checkpoint: Checkpoint) -> dict:
        return {"toy_checkpoint": -99}


@pytest.fixture(scope="module", autouse=True)
def toy_evaluators():
    """Registers the toy evaluators for this module only (other tests see the real registry)."""
    for cls in (ToyEvaluator, ClashingEvaluator):
        EVALUATORS.register(cls)
    yield
    for cls in (ToyEvaluator, ClashingEvaluator):
        EVALUATORS._classes.pop(cls.name.lower(), None)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluators") / "bpr"
    config = load_config(None, [
        "model=BPR", "dataset=synthetic", SMALL_SYNTHETIC, "train.epochs=2", "train.batch_size=256",
        "model_params.embedding_size=16",
    ])
    train_run(config, out, quiet=True)
    return out


def test_the_toy_evaluator_is_found_by_name():
    assert EVALUATORS.get("toy_counts") is ToyEvaluator
    assert EVALUATORS.get("Toy_Counts") is ToyEvaluator
    assert {"toy_counts", *DEFAULT_EVALUATORS} <= set(EVALUATORS.names())


def test_the_configuration_selects_evaluators_and_rejects_unknown_names():
    assert UnlearnConfig().evaluators == DEFAULT_EVALUATORS == ("utility", "exposure", "agreement", "forgetting")
    assert UnlearnConfig(evaluators=["toy_counts", "utility"]).evaluators == ("toy_counts", "utility")
    assert config_lib.from_dict(UnlearnConfig, {"evaluators": ["toy_counts"]}).evaluators == ("toy_counts",)
    with pytest.raises(ValueError, match=r"unknown evaluators \['privacy'\]; available: .*'utility'"):
        UnlearnConfig(evaluators=("utility", "privacy"))
    with pytest.raises(ValueError, match="more than once"):
        UnlearnConfig(evaluators=("utility", "Utility"))


def test_the_default_selection_serialises_as_before_the_field_existed():
    assert "evaluators" not in config_lib.to_dict(UnlearnConfig(**SCENARIO))
    chosen = config_lib.to_dict(UnlearnConfig(**SCENARIO, evaluators=("toy_counts",)))
    assert chosen["evaluators"] == ["toy_counts"]
    assert config_lib.from_dict(UnlearnConfig, chosen) == UnlearnConfig(**SCENARIO, evaluators=("toy_counts",))


def test_evaluators_run_in_the_configured_order_and_may_not_share_columns(trained_run):
    experiment, params = load_run(trained_run)
    model = ScoredModel(experiment.model, params, experiment.context)
    protocol = build_protocol(experiment, UnlearnConfig(**SCENARIO, evaluators=("toy_counts", "utility")))
    row = results.evaluate_model(protocol, 1, model)
    n_users = len(protocol.stream.users_through(protocol.stream.checkpoint_batches[1]))
    assert list(row)[:3] == ["toy_checkpoint", "toy_unlearned_users", "toy_has_reference"]
    utility = [key for key in row if key.startswith("test_")]
    assert list(row) == ["toy_checkpoint", "toy_unlearned_users", "toy_has_reference", *utility,
                         "n_unlearned_users", "n_removed"]
    assert utility and not any(key.startswith(("users_with_sensitive", "forgotten_", "agree_")) for key in row)
    assert row["toy_checkpoint"] == 1 and row["toy_has_reference"] == 0
    assert row["toy_unlearned_users"] == row["n_unlearned_users"] == n_users

    clashing = build_protocol(experiment, UnlearnConfig(**SCENARIO, evaluators=("toy_counts", "toy_clash")))
    with pytest.raises(ValueError, match=r"'toy_clash' returns columns another evaluator already wrote: \['toy_checkpoint'\]"):
        results.evaluate_model(clashing, 1, model)


def test_the_selected_evaluators_fill_the_result_rows_and_a_folder_is_re_evaluated_with_others(trained_run, tmp_path):
    """The toy's numbers reach unlearning.csv; the same folder is then re-evaluated with the
    default evaluators (the selection is not one of the folder's settings)."""
    scenario_dir = tmp_path / "scenario"
    toy = UnlearnConfig(method="untouched", **SCENARIO, evaluators=("toy_counts",))
    rows = jobs.unlearn(trained_run, toy, out=str(scenario_dir), quiet=True)
    assert [(row["eval_type"], row["checkpoint_idx"]) for row in rows] == [
        *(("trained", k) for k in (-1, 0, 1, 2, 3)), *(("unlearning", k) for k in (0, 1, 2, 3))
    ]
    for row in rows:
        assert row["toy_checkpoint"] == row["checkpoint_idx"]
        assert row["toy_unlearned_users"] == row["n_unlearned_users"]
        assert not any(key.startswith("test_") for key in row)
    with (scenario_dir / "untouched" / "unlearning.csv").open() as handle:
        header = next(csv.reader(handle))
    assert header[9:14] == ["toy_checkpoint", "toy_unlearned_users", "toy_has_reference", "n_unlearned_users", "n_removed"]
    assert "evaluators" not in yaml.safe_load((scenario_dir / "untouched" / CONFIG_FILE).read_text())

    default = dataclasses.replace(toy, evaluators=DEFAULT_EVALUATORS)
    rows = jobs.unlearn(trained_run, default, out=str(scenario_dir), eval_only=True, quiet=True)
    assert all("test_recall@20" in row and "forgotten_hit@20" in row and "toy_checkpoint" not in row for row in rows)
    assert np.isfinite([row["test_recall@20"] for row in rows]).all()
