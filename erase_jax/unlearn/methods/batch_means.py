"""The original's sums of loader-batch means, which the compat="erase" modes of GIF, CEU and IDEA
reproduce (`gif_erase`, `ceu_erase`, `idea_erase`; detail spec sections 5-7).

The original computes a gradient or Hessian-vector product of a set of rows as a sum, or an
average, over its 256-row loader batches of the batch-MEAN loss's gradient or HVP, then divides
once more by a row count (the double normalisation, Q7). The correct modes use one mean over all
rows instead (`newton.removal_newton_system`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from erase_jax.unlearn.influence.hvp import hvp
from erase_jax.unlearn.influence.trees import tree_scale
from erase_jax.unlearn.methods.base import Batch
from erase_jax.unlearn.methods.batches import loader_batches


def grad_of_batch_means(model, params, context, batch: Batch, key, average: bool = False):
    """sum over the batch's 256-row loader batches of grad mean loss (divided by their number if
    `average`; the original's n_K is at least 1). Empty chunks contribute 0."""
    stacked = loader_batches(batch)
    n_chunks = jnp.maximum(jnp.sum(jnp.any(stacked["weight"] > 0, axis=1)), 1)

    def total(p):
        return jnp.sum(jax.vmap(lambda chunk: model.loss(p, context, chunk, key))(stacked))

    g = jax.grad(total)(params)
    return tree_scale(1.0 / n_chunks, g) if average else g


def batch_mean_hvp(model, params, context, batch: Batch, key):
    """v -> the average over non-empty 256-row batches of the batch-mean loss's HVP."""
    stacked = loader_batches(batch)
    nonempty = jnp.any(stacked["weight"] > 0, axis=1)
    n_chunks = jnp.maximum(jnp.sum(nonempty), 1)

    def total(p):
        losses = jax.vmap(lambda chunk: model.loss(p, context, chunk, key))(stacked)
        return jnp.sum(jnp.where(nonempty, losses, 0.0))

    return lambda v: tree_scale(1.0 / n_chunks, hvp(total, params, v))
