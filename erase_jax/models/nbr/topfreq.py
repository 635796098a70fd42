"""Frequency baselines of next-basket recommendation: G-TopFreq, P-TopFreq, GP-TopFreq.

Li, Jannach, Zhao, Ren, de Rijke, "A Next Basket Recommendation Reality Check", TOIS 2023
(RC, `methods/g-p-gp-topfreq/`; next-basket spec 2.3). Non-learned: `prepare` counts, the
parameters are empty, and every score is a jittable function of the query's history
occurrences and the context. With c_i = occurrences of item i in the user's history baskets
(an item repeated inside a basket counts twice, spec 5.19) and g_i the global frequency:

    GTopFreq   score_i = G_i / max_j G_j                       NBR's "Pop": the same list for everyone
    PTopFreq   score_i = c_i + g_i  if c_i > 0,  else 0         the user's own items by frequency
    GPTopFreq  score_i = c_i + g_i                              P-TopFreq, then the popular items

G_i counts item i's occurrences over the training examples' histories and target baskets;
g_i = G_i / (max_j G_j + 1) lies in [0, 1), so it only breaks ties between items of equal
count c (equally often bought items rank by global popularity, so rankings are deterministic)
and every bought item (c >= 1) scores above every unbought one. Deviation from RC: RC's
P-TopFreq list holds only the history items and is shorter than k when the history has fewer
distinct items; a full ranking needs every item scored, so here the unbought items all score
0 and fill the tail of the top k in `lax.top_k`'s tie order (lowest item id first), which can
only add chance hits. GP-TopFreq fills that tail with the globally popular items, as RC does.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from erase_jax.data.baskets import BasketRows
from erase_jax.models.base import register
from erase_jax.models.nbr.base import BasketModel


@struct.dataclass
class FrequencyContext:
    """global_counts: float32 [n_items], item occurrences over the training histories and targets."""

    global_counts: jax.Array
    n_items: int = struct.field(pytree_node=False)


def global_counts(train: BasketRows) -> np.ndarray:
    """Occurrences of every item over the examples' history occurrences and target baskets."""
    history = train.items[np.arange(train.items.shape[1])[None, :] < train.lengths[:, None]]
    target = train.targets[np.arange(train.targets.shape[1])[None, :] < train.target_sizes[:, None]]
    return np.bincount(np.concatenate([history, target]), minlength=train.n_items)[: train.n_items].astype(np.float32)


def history_counts(query: dict[str, jax.Array], n_items: int) -> jax.Array:
    """c [b, n_items]: occurrences of each item in the query's history (padding dropped). Jittable."""
    items, lengths = query["items"], query["lengths"]
    b, width = items.shape
    items = jnp.where(jnp.arange(width)[None, :] < lengths[:, None], items, n_items)
    return jnp.zeros((b, n_items + 1), jnp.float32).at[jnp.arange(b)[:, None], items].add(1.0)[:, :n_items]


class FrequencyBaseline(BasketModel):
    """The shared part of the three baselines: counting in `prepare`, empty parameters, no loss."""

    trainable: ClassVar[bool] = False
    output_loss: ClassVar[None] = None
    prefers_gauss_newton: ClassVar[bool] = False

    def prepare(self, train: BasketRows, capacity: int | None = None) -> FrequencyContext:
        del capacity
        return FrequencyContext(jnp.asarray(global_counts(train)), train.n_items)

    def init(self, key: jax.Array, context: FrequencyContext):
        return {}

    def loss(self, params, context, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
        return jnp.zeros((), jnp.float32)

    def tie_breaker(self, context: FrequencyContext) -> jax.Array:
        """g = G / (max G + 1), in [0, 1)."""
        return context.global_counts / (jnp.max(context.global_counts) + 1.0)


@register
@dataclasses.dataclass(frozen=True)
class GTopFreq(FrequencyBaseline):
    """G-TopFreq (module docstring): global item frequency, NBR's Pop."""

    name: ClassVar[str] = "GTopFreq"

    def logits(self, params, context, query, key=None, n_steps=None):
        popularity = context.global_counts / jnp.maximum(jnp.max(context.global_counts), 1.0)
        return jnp.broadcast_to(popularity, (query["items"].shape[0], context.n_items))


@register
@dataclasses.dataclass(frozen=True)
class PTopFreq(FrequencyBaseline):
    """P-TopFreq (module docstring): the user's history items by frequency; unbought items score 0."""

    name: ClassVar[str] = "PTopFreq"

    def logits(self, params, context, query, key=None, n_steps=None):
        counts = history_counts(query, context.n_items)
        return jnp.where(counts > 0, counts + self.tie_breaker(context), 0.0)


@register
@dataclasses.dataclass(frozen=True)
class GPTopFreq(FrequencyBaseline):
    """GP-TopFreq (module docstring): P-TopFreq, then the remaining items by global frequency."""

    name: ClassVar[str] = "GPTopFreq"

    def logits(self, params, context, query, key=None, n_steps=None):
        return history_counts(query, context.n_items) + self.tie_breaker(context)
