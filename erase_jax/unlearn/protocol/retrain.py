"""Retraining from scratch: the reference every unlearning method is judged against.

For checkpoint k the model is trained with the trained run's configuration and seed on the
data without the interactions of the first c_k + 1 requests (c = the quarter checkpoints),
with the vocabulary kept and the split recomputed (data-and-evaluation spec 4.5). Each
retrain is an ordinary run folder (`retrain/k<k>/`), so it resumes like any training run.

Two options make the retrain a reference that can be trusted (issue 20):

* `epochs` (the training budget): None trains with the run's configuration, early stopping
  included; a number trains exactly that many epochs with early stopping off, keeping the
  best validated parameters. `jobs.retrain_all` passes the original's trained epochs by
  default: on ML-100K BPR the early-stopped retrains of checkpoints 0-2 stopped after about
  25 epochs, where the original trained 100, and lost 0.03 of test Recall@20 to it
  (`experiments/results/unlearning_protocol_ml-100k.md`): a reference that differs from the
  original by its training budget measures the budget, not the forgetting.
* `seed`: a retrain with another seed (`retrain/k<k>_seed<s>/`; its rows are method
  `retrain@seed<s>`): the spread between such retrains and the reference is the noise floor of
  every gap to the retrain (`report.noise_floor`). The reference itself shares the original's
  seed (its initialisation and random streams), which inflates their agreement.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from erase_jax.run import (
    build_experiment,
    require_finished,
    restore_best_params,
    train_run,
    write_atomically,
)
from erase_jax.unlearn.protocol.run import UnlearningRun

RETRAIN_DIR = "retrain"
REMOVED_FILE = "removed.json"


def removal_mask(protocol: UnlearningRun, k: int):
    """Rows removed by the requests up to checkpoint k."""
    batch = protocol.checkpoint_batches[k]
    return protocol.stream.removal_mask_through(protocol.experiment.data.interactions, batch)


def retrain_dir(out_dir: Path, k: int, seed: int | None = None) -> Path:
    return Path(out_dir) / RETRAIN_DIR / (f"k{k}" if seed is None else f"k{k}_seed{seed}")


RETRAIN_BUDGETS = ("trained", "early_stopping")


def budget_epochs(run_dir, budget: str = "trained") -> int | None:
    """The `epochs` argument of `retrain` for a budget: "trained" (the default; "original" is
    its old name) the trained run's epochs, "early_stopping" None (the run's own stopping rule)."""
    budget = "trained" if budget == "original" else budget
    if budget not in RETRAIN_BUDGETS:
        raise ValueError(f"retrain budget must be one of {RETRAIN_BUDGETS}, got {budget!r}")
    return int(json.loads(require_finished(run_dir).read_text())["epochs"]) if budget == "trained" else None


def retrain_config(protocol: UnlearningRun, seed: int | None = None, epochs: int | None = None):
    """The run's configuration with another seed and / or a fixed budget of `epochs` (early
    stopping off, best validated parameters kept); see the module docstring."""
    config = protocol.experiment.config
    if seed is not None:
        config = dataclasses.replace(config, seed=int(seed))
    if epochs is not None and protocol.experiment.model.trainable:  # a non-learned model trains no epoch
        if epochs < 1:
            raise ValueError(f"retrain epochs must be >= 1, got {epochs}")
        # stopping_step = epochs: never more stale validations than that (0 would stop at the first)
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=int(epochs), stopping_step=int(epochs)))
    return config


def retrain(protocol: UnlearningRun, out_dir: Path, k: int, quiet: bool = False, seed: int | None = None,
            epochs: int | None = None) -> dict:
    """Trains (or resumes) the retrain matching checkpoint k (`seed`, `epochs`: the module
    docstring); returns its timing summary."""
    removed = removal_mask(protocol, k)
    data = protocol.data_at(k)
    folder = retrain_dir(out_dir, k, seed)
    started = time.perf_counter()
    result = train_run(retrain_config(protocol, seed, epochs), folder, quiet=quiet, data=data)
    train_seconds = float(sum(result["timing"]["train_seconds_per_epoch"]))
    if not protocol.experiment.model.trainable:  # computed by `prepare`: that is its training
        train_seconds += result["timing"].get("prepare_seconds", 0.0)
    summary = {
        "checkpoint_idx": k,
        "n_removed": int(removed.sum()),
        "n_unlearned_users": int(protocol.stream.n_requests_through(protocol.checkpoint_batches[k])),
        "train_seconds": train_seconds,
        "compile_seconds": result["timing"]["compile_seconds"],
        "wall_seconds_this_call": time.perf_counter() - started,
        "epochs": result["epochs"],
    }
    write_atomically(folder / REMOVED_FILE, json.dumps(summary, indent=2))
    return summary


def load_retrain(protocol: UnlearningRun, out_dir: Path, k: int, seed: int | None = None):
    """The retrained experiment (on the reduced data) and its best parameters, if it exists."""
    folder = retrain_dir(out_dir, k, seed)
    if not (folder / "result.json").exists():
        return None
    experiment = build_experiment(retrain_config(protocol, seed), protocol.data_at(k))
    summary = json.loads((folder / REMOVED_FILE).read_text()) if (folder / REMOVED_FILE).exists() else {}
    return experiment, restore_best_params(folder, experiment), summary
