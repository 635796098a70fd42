"""GRU4Rec: a GRU over the session's item embeddings, its last state scores the next item.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016;
here in RecBole 1.2.1's form (`GRU4Rec`), which the original benchmark trains (spec 2.2):

    e_t = dropout(E[x_t])                          embedding 64, dropout 0.3
    h_t = GRU(e_t, h_{t-1}),  h_0 = 0              one layer of 128 units without biases
    s   = W h_T + b                                dense back to 64 at the last item T
    score(i) = <s, E[i]>                           every item, CE over all items

GRU gates in torch's order (r, z, n): r = sigmoid(W_ir e + W_hr h), z = sigmoid(W_iz e + W_hz h),
n = tanh(W_in e + r * W_hn h), h' = (1 - z) n + z h. Initialisation as RecBole: xavier_normal
embeddings, xavier_uniform GRU weights, torch's default U(+-1/sqrt(128)) for the dense layer.
The ERASE config's `n_layers: 1` is an unused key there.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.models.base import register
from erase_jax.models.layers import (
    dense,
    dropout,
    gru_time_major,
    keyed,
    split_keys,
    uniform,
    xavier_normal,
    xavier_uniform,
)
from erase_jax.models.sbr.base import SequenceModel, SequenceShape


class GRU4RecNetwork(nn.Module):
    """The GRU4Rec network (module docstring); call on (items [n, L], lengths [n], dropout_key)."""

    n_items: int
    embedding_size: int
    hidden_size: int
    dropout_prob: float
    init_key: jax.Array | None = None  # draws the parameters, tensor i from split(init_key, 5)[i]

    def setup(self):
        d, h = self.embedding_size, self.hidden_size
        keys = split_keys(self.init_key, 5)
        dense_init = uniform(1.0 / np.sqrt(h))  # torch Linear default: U(+-1/sqrt(fan_in))
        # row n_items of the item embedding is the padding
        self.item_embedding = self.param("item_embedding", keyed(xavier_normal, keys[0]), (self.n_items + 1, d))
        self.w_ih = self.param("w_ih", keyed(xavier_uniform, keys[1]), (d, 3 * h))
        self.w_hh = self.param("w_hh", keyed(xavier_uniform, keys[2]), (h, 3 * h))
        self.dense_w = self.param("dense_w", keyed(dense_init, keys[3]), (h, d))
        self.dense_b = self.param("dense_b", keyed(dense_init, keys[4]), (d,))

    def __call__(self, items: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
        # time-major [L, n, d]: the GRU scans over the leading axis without transposes
        embedded = dropout(self.item_embedding[items.T], self.dropout_prob, dropout_key)
        zeros = jnp.zeros(3 * self.hidden_size)  # the GRU has no biases (RecBole: bias=False)
        last = gru_time_major(self.w_ih, self.w_hh, zeros, zeros, embedded, self.hidden_size, lengths)
        # Dense after the gather: RecBole applies it to every step, then gathers; same result.
        return last @ self.dense_w + self.dense_b

    def every_position(self, items: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
        """[n, L, d]: the representation after each position (the GRU is causal)."""
        del lengths  # a state depends on earlier items only; padding comes after the last item
        embedded = dropout(self.item_embedding[items.T], self.dropout_prob, dropout_key)
        zeros = jnp.zeros(3 * self.hidden_size)
        states = gru_time_major(self.w_ih, self.w_hh, zeros, zeros, embedded, self.hidden_size)  # [L, n, h]
        return jnp.swapaxes(dense(states, self.dense_w) + self.dense_b, 0, 1)


@register
@dataclasses.dataclass(frozen=True)
class GRU4Rec(SequenceModel):
    name: ClassVar[str] = "GRU4Rec"
    causal: ClassVar[bool] = True  # `represent_positions`: every prefix in one pass
    influence_targets: ClassVar[tuple] = (  # the original's SCIF target_params
        ("params", "item_embedding"), ("params", "dense_w"), ("params", "dense_b"))

    embedding_size: int = 64
    hidden_size: int = 128
    dropout_prob: float = 0.3

    def network(self, context: SequenceShape, init_key: jax.Array | None = None) -> GRU4RecNetwork:
        return GRU4RecNetwork(context.n_items, self.embedding_size, self.hidden_size, self.dropout_prob, init_key)

    def represent_positions(self, params, context: SequenceShape, items, lengths, key):
        return self.network(context).apply(params, items, lengths, key, method=GRU4RecNetwork.every_position)
