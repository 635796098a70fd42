"""GRU4Rec: a GRU over the session's item embeddings, its last state scores the next item.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016;
here in RecBole 1.2.1's form (`GRU4Rec`), which the original benchmark trains (spec 2.2):
embedding 64 -> dropout 0.3 -> one GRU layer of 128 units without biases -> a dense layer back
to 64 -> the state at the last item, scored against every item embedding, CE over all items.
Initialisation as RecBole: xavier_normal embeddings, xavier_uniform GRU weights, torch's
default for the dense layer. The ERASE config's `n_layers: 1` is an unused key there.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.models.base import register
from erase_jax.models.layers import (
    dropout,
    gru_time_major,
    uniform,
    xavier_normal,
    xavier_uniform,
)
from erase_jax.models.sbr.base import SequenceModel, SequenceShape


@register
@dataclasses.dataclass(frozen=True)
class GRU4Rec(SequenceModel):
    name: ClassVar[str] = "GRU4Rec"
    influence_targets: ClassVar[tuple] = (("item_embedding",), ("dense_w",), ("dense_b",))  # the original's SCIF target_params

    embedding_size: int = 64
    hidden_size: int = 128
    dropout_prob: float = 0.3

    def init(self, key: jax.Array, context: SequenceShape):
        keys = jax.random.split(key, 5)
        d, h = self.embedding_size, self.hidden_size
        dense_bound = 1.0 / np.sqrt(h)  # torch Linear default: U(+-1/sqrt(fan_in))
        return {
            "item_embedding": xavier_normal(keys[0], (context.n_items + 1, d)),  # row n_items = padding
            "w_ih": xavier_uniform(keys[1], (d, 3 * h)),
            "w_hh": xavier_uniform(keys[2], (h, 3 * h)),
            "dense_w": uniform(keys[3], (h, d), dense_bound),
            "dense_b": uniform(keys[4], (d,), dense_bound),
        }

    def represent(self, params, context, items, lengths, key):
        # time-major [L, n, d]: the GRU scans over the leading axis without transposes
        embedded = dropout(params["item_embedding"][items.T], self.dropout_prob, key)
        zeros = jnp.zeros(3 * self.hidden_size)  # the GRU has no biases (RecBole: bias=False)
        last = gru_time_major(params["w_ih"], params["w_hh"], zeros, zeros, embedded, self.hidden_size, lengths)
        # Dense after the gather: RecBole applies it to every step, then gathers; same result.
        return last @ params["dense_w"] + params["dense_b"]

    def output_items(self, params):
        return params["item_embedding"][:-1]
