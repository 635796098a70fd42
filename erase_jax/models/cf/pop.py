"""Pop: recommend the most interacted-with items to everyone (a non-learned baseline).

score(u, i) = count(i in train) / max_j count(j in train), the same for every user (RecBole
1.2.1 `Pop.full_sort_predict`). Differs from RecBole in how the counts are made: RecBole
increments `item_cnt[batch_items] += 1` once per training batch, so an item repeated within a
batch of 2048 counts once there; here every training interaction (repeats included) counts.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from erase_jax.data.cf import CFTrainData
from erase_jax.models.base import Batch, register
from erase_jax.models.cf.base import NonLearnedCFModel


@struct.dataclass
class PopContext:
    """item_popularity: float32 [n_items], count / max count."""

    item_popularity: jax.Array


@register
@dataclasses.dataclass(frozen=True)
class Pop(NonLearnedCFModel):
    """Item popularity; everything is computed by `prepare`, the parameters are empty."""

    name: ClassVar[str] = "Pop"

    def prepare(self, train: CFTrainData, capacity: int | None = None) -> PopContext:
        del capacity  # the context's shape depends on n_items only
        counts = np.bincount(train.items, minlength=train.n_items).astype(np.float64)
        return PopContext(jnp.asarray(counts / max(counts.max(), 1.0), jnp.float32))

    def scores(self, params, context: PopContext, query: Batch) -> jax.Array:
        n_queries = query["users"].shape[0]
        return jnp.broadcast_to(context.item_popularity, (n_queries, context.item_popularity.shape[0]))
