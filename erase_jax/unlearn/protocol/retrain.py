"""Retraining from scratch: the reference every unlearning method is judged against.

For checkpoint k the model is trained with the trained run's configuration and seed on the
data without the interactions of the first c_k + 1 requests (c = the quarter checkpoints),
with the vocabulary kept and the split recomputed (data-and-evaluation spec 4.5). Each
retrain is an ordinary run folder (`retrain/k<k>/`), so it resumes like any training run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from erase_jax.run import (
    build_experiment,
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


def retrain_dir(out_dir: Path, k: int) -> Path:
    return Path(out_dir) / RETRAIN_DIR / f"k{k}"


def retrain(protocol: UnlearningRun, out_dir: Path, k: int, quiet: bool = False) -> dict:
    """Trains (or resumes) the retrain matching checkpoint k; returns its timing summary."""
    removed = removal_mask(protocol, k)
    data = protocol.data_at(k)
    folder = retrain_dir(out_dir, k)
    started = time.perf_counter()
    result = train_run(protocol.experiment.config, folder, quiet=quiet, data=data)
    summary = {
        "checkpoint_idx": k,
        "n_removed": int(removed.sum()),
        "n_unlearned_users": int(protocol.stream.n_requests_through(protocol.checkpoint_batches[k])),
        "train_seconds": float(sum(result["timing"]["train_seconds_per_epoch"])),
        "compile_seconds": result["timing"]["compile_seconds"],
        "wall_seconds_this_call": time.perf_counter() - started,
        "epochs": result["epochs"],
    }
    write_atomically(folder / REMOVED_FILE, json.dumps(summary, indent=2))
    return summary


def load_retrain(protocol: UnlearningRun, out_dir: Path, k: int):
    """The retrained experiment (on the reduced data) and its best parameters, if it exists."""
    folder = retrain_dir(out_dir, k)
    if not (folder / "result.json").exists():
        return None
    experiment = build_experiment(protocol.experiment.config, protocol.data_at(k))
    summary = json.loads((folder / REMOVED_FILE).read_text()) if (folder / REMOVED_FILE).exists() else {}
    return experiment, restore_best_params(folder, experiment), summary
