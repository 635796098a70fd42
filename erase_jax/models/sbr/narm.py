"""NARM: a GRU encoder with a global (last state) and an attentive local session summary.

Li et al., "Neural Attentive Session-based Recommendation", CIKM 2017 (eqs. 7-9), in RecBole
1.2.1's form (`NARM`), as the original benchmark trains it (spec 2.2):

    h_t = GRU(dropout(E[x_t]), h_{t-1})                embedding 64, dropout 0.25, GRU(100, no biases)
    c_global = h_T                                      the state at the last item T
    alpha_j = v^T sigmoid(A1 h_j + A2 c_global)         over the valid positions j (eq. 8)
    c_local = sum_j alpha_j h_j                         (eq. 7)
    s = B dropout([c_local; c_global])                  dropout 0.5, B bias-free back to 64 (eq. 9)
    score(i) = <s, E[i]>                                every item, CE over all items

Initialisation as RecBole: xavier_normal for embeddings and linear maps, torch's default
U(+-1/sqrt(hidden)) for the GRU. RecBole's GRU here has `bias=False` (so does this one).
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
)
from erase_jax.models.sbr.base import SequenceModel, SequenceShape


class NARMNetwork(nn.Module):
    """The NARM network (module docstring); call on (items [n, L], lengths [n], dropout_key)."""

    n_items: int
    embedding_size: int
    hidden_size: int
    embedding_dropout: float
    context_dropout: float
    init_key: jax.Array | None = None  # draws the parameters, tensor i from split(init_key, 7)[i]

    def setup(self):
        d, h = self.embedding_size, self.hidden_size
        keys = split_keys(self.init_key, 7)
        gru_init = uniform(1.0 / np.sqrt(h))
        # row n_items of the item embedding is the padding
        self.item_embedding = self.param("item_embedding", keyed(xavier_normal, keys[0]), (self.n_items + 1, d))
        self.w_ih = self.param("w_ih", keyed(gru_init, keys[1]), (d, 3 * h))
        self.w_hh = self.param("w_hh", keyed(gru_init, keys[2]), (h, 3 * h))
        self.a_1 = self.param("a_1", keyed(xavier_normal, keys[3]), (h, h))
        self.a_2 = self.param("a_2", keyed(xavier_normal, keys[4]), (h, h))
        self.v_t = self.param("v_t", keyed(xavier_normal, keys[5]), (h, 1))
        self.b = self.param("b", keyed(xavier_normal, keys[6]), (2 * h, d))

    def __call__(self, items: jax.Array, lengths: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
        embedding_key, context_key = (None, None) if dropout_key is None else jax.random.split(dropout_key)
        # time-major [L, n, .] throughout: the GRU scans over the leading axis without transposes
        embedded = dropout(self.item_embedding[items.T], self.embedding_dropout, embedding_key)
        zeros = jnp.zeros(3 * self.hidden_size)  # no GRU biases (RecBole: bias=False)
        states = gru_time_major(self.w_ih, self.w_hh, zeros, zeros, embedded, self.hidden_size)  # [L, n, h]
        c_global = jnp.take_along_axis(states, (lengths - 1)[None, :, None], axis=0)[0]
        valid = (jnp.arange(items.shape[1])[:, None] < lengths[None, :])[..., None]
        gate = valid * jax.nn.sigmoid(dense(states, self.a_1) + (c_global @ self.a_2)[None])
        alpha = dense(gate, self.v_t)  # [L, n, 1]; 0 at padding, as RecBole's mask gives
        c_local = jnp.sum(alpha * states, axis=0)
        c_t = dropout(jnp.concatenate([c_local, c_global], axis=-1), self.context_dropout, context_key)
        return c_t @ self.b


@register
@dataclasses.dataclass(frozen=True)
class NARM(SequenceModel):
    name: ClassVar[str] = "NARM"
    influence_targets: ClassVar[tuple] = (("params", "item_embedding"), ("params", "b"))  # the original's SCIF target_params

    embedding_size: int = 64
    hidden_size: int = 100
    embedding_dropout: float = 0.25
    context_dropout: float = 0.5

    def network(self, context: SequenceShape, init_key: jax.Array | None = None) -> NARMNetwork:
        return NARMNetwork(context.n_items, self.embedding_size, self.hidden_size, self.embedding_dropout,
                           self.context_dropout, init_key)
