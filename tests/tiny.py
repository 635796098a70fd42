"""Tiny runs, one model per task, on the embedded synthetic data (with item categories, so the
sensitive "Horror" scenario has requests): what the conformance tests and the plug-in test train.
"""

from __future__ import annotations

from pathlib import Path

from erase_jax.config import load_config
from erase_jax.models import get_model_class
from erase_jax.run import train_run

SYNTHETIC = "data.synthetic={n_users: 100, n_items: 50, avg_interactions: 12}"
# One tiny model per task (`get_model_class(name).task`): its hyperparameters, then its task's
# data and training settings (any model of that task trains on them).
TINY_MODELS = {
    "BPR": (["model_params.embedding_size=8"], ["train.batch_size=256"]),
    "GRU4Rec": (["model_params={embedding_size: 8, hidden_size: 8}"],
                ["data.min_user_interactions=0", "data.min_item_interactions=0", "train.valid_metric=mrr@10",
                 "train.batch_size=64"]),
    "DNNTSP": (["model_params={embedding_size: 8, n_heads: 2}"],
               ["basket.max_history_baskets=8", "train.valid_metric=recall@10", "train.batch_size=32"]),
}
SCENARIO = dict(scenario="sensitive", category="Horror", fraction=0.01)  # 1 % of the rows: a few requests


def task_settings(task_name: str) -> list[str]:
    """The data and training settings of the task's tiny model."""
    for name, (_, settings) in TINY_MODELS.items():
        if get_model_class(name).task.lower() == task_name.lower():
            return settings
    raise KeyError(f"no tiny model for task {task_name!r} in TINY_MODELS")


def tiny_config(model_name: str, extra=()):
    """A tiny `model_name` (its TINY_MODELS hyperparameters, else its defaults) on synthetic data
    with item categories, one epoch, with its task's settings."""
    hyperparameters = TINY_MODELS.get(model_name, ([], []))[0]
    return load_config(None, [
        f"model={model_name}", *hyperparameters, "dataset=synthetic", SYNTHETIC,
        *task_settings(get_model_class(model_name).task), "train.epochs=1", *extra,
    ])


def tiny_run(model_name: str, folder: Path, extra=()) -> Path:
    """`tiny_config(model_name, extra)` trained through `train_run` in `folder`."""
    train_run(tiny_config(model_name, extra), folder, quiet=True)
    return folder
