"""The interaction rows each part of a shard ensemble trains on, given the rows removed so far.

A row is an index into `experiment.data.interactions`. `shard_of_row` [n_rows] is the shard of
every training row (-1 for validation and test rows), fixed when the ensemble is built;
`removed` [n_rows] marks the rows removed by the requests so far. A shard trains on its rows
that are not removed, the aggregator on every training row that is not removed; both padded
to shapes that do not change from request to request, so a retrain reuses the compiled epoch.
"""

from __future__ import annotations

import numpy as np

from erase_jax.train import TrainConfig
from erase_jax.unlearn.exact.shards import ShardData


def remaining_shard_rows(shard_of_row: np.ndarray, removed: np.ndarray, shard: int) -> np.ndarray:
    """The interaction rows of `shard` that are not removed."""
    return np.nonzero((shard_of_row == shard) & ~removed)[0]


def remaining_train_rows(experiment, removed: np.ndarray) -> np.ndarray:
    rows = experiment.data.split.train
    return rows[~removed[rows]]


def remaining_valid_rows(experiment, removed: np.ndarray) -> np.ndarray:
    rows = experiment.data.split.valid
    return rows[~removed[rows]]


def shard_data(experiment, shard_of_row: np.ndarray, removed: np.ndarray, shards: np.ndarray):
    """The padded training data of `shards` and, per shard, the interaction rows in it: the
    shard's rows minus every removed row. Padded to the largest shard at partition time, so
    every retrain of the same number of shards reuses one compiled epoch."""
    inter = experiment.data.interactions
    width = int(np.bincount(shard_of_row[shard_of_row >= 0]).max())
    rows = [remaining_shard_rows(shard_of_row, removed, s) for s in shards]
    data = ShardData.build(
        inter.n_users, inter.n_items, [inter.users[r] for r in rows], [inter.items[r] for r in rows], width
    )
    return data, rows


def aggregator_data(experiment, removed: np.ndarray):
    """The aggregator's one "shard": every remaining training row, padded to all of them."""
    inter, rows = experiment.data.interactions, remaining_train_rows(experiment, removed)
    data = ShardData.build(inter.n_users, inter.n_items, [inter.users[rows]], [inter.items[rows]], len(experiment.data.split.train))
    return data, rows


def n_batches_for(experiment, config: TrainConfig) -> int:
    """Batches per epoch over all training rows (the shape of an untrained ensemble's optimiser state)."""
    return -(-len(experiment.data.split.train) // config.batch_size)
