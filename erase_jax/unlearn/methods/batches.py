"""Row helpers for the padded batches a request hands to a method (`base.RequestData`).

A batch is a dict of arrays with a leading row axis and a `weight` column that is 0 on padding
rows. The helpers do on device what the original's data loaders do: count the real rows,
reshuffle them, keep the first n, and cut the batch into loader batches of fixed size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from erase_jax.unlearn.influence.sharding import pad_rows
from erase_jax.unlearn.methods.base import Batch

LOADER_BATCH = 256  # the original's loader batch for F, C and R (train_batch_size forced to 256)


def real_rows(batch: Batch) -> jax.Array:
    """The number of rows with weight > 0."""
    return jnp.sum(batch["weight"] > 0)


def shuffle_rows(batch: Batch, key) -> Batch:
    """The real rows in random order, then the padding rows (a loader pass's reshuffle)."""
    priority = jnp.where(batch["weight"] > 0, jax.random.uniform(key, batch["weight"].shape), 2.0)
    order = jnp.argsort(priority)
    return jax.tree.map(lambda a: a[order], batch)


def keep_first(batch: Batch, n_rows) -> Batch:
    """The batch with only its first `n_rows` real rows kept (the others get weight 0)."""
    real = batch["weight"] > 0
    return {**batch, "weight": jnp.where(real & (jnp.cumsum(real) <= n_rows), batch["weight"], 0.0)}


def loader_batches(batch: Batch, size: int = LOADER_BATCH) -> Batch:
    """Consecutive loader batches of `size` rows, stacked: leaves [n_batches, size, ...]."""
    return jax.tree.map(lambda a: a.reshape(-1, size, *a.shape[1:]), pad_rows(batch, size))
