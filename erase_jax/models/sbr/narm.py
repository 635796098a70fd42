"""NARM: a GRU encoder with a global (last state) and an attentive local session summary.

Li et al., "Neural Attentive Session-based Recommendation", CIKM 2017 (eqs. 7-9), in RecBole
1.2.1's form (`NARM`), as the original benchmark trains it (spec 2.2): embedding 64 ->
dropout 0.25 -> GRU(100, no biases) -> c_global = last state, c_local = sum_j alpha_j h_j with
alpha_j = v^T sigmoid(A1 h_j + A2 c_global) over the valid positions -> dropout 0.5 on
[c_local; c_global] -> B (bias-free) back to 64, scored against every item embedding.
Initialisation as RecBole: xavier_normal for embeddings and linear maps, torch's default
U(+-1/sqrt(hidden)) for the GRU. RecBole's GRU here has `bias=False` (so does this one).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.models.base import register
from erase_jax.models.layers import (
    dense,
    dropout,
    gru_time_major,
    uniform,
    xavier_normal,
)
from erase_jax.models.sbr.base import SequenceModel, SequenceShape


@register
@dataclasses.dataclass(frozen=True)
class NARM(SequenceModel):
    name: ClassVar[str] = "NARM"
    influence_targets: ClassVar[tuple] = (("item_embedding",), ("b",))  # the original's SCIF target_params

    embedding_size: int = 64
    hidden_size: int = 100
    embedding_dropout: float = 0.25
    context_dropout: float = 0.5

    def init(self, key: jax.Array, context: SequenceShape):
        keys = jax.random.split(key, 7)
        d, h = self.embedding_size, self.hidden_size
        gru_bound = 1.0 / np.sqrt(h)
        return {
            "item_embedding": xavier_normal(keys[0], (context.n_items + 1, d)),
            "w_ih": uniform(keys[1], (d, 3 * h), gru_bound),
            "w_hh": uniform(keys[2], (h, 3 * h), gru_bound),
            "a_1": xavier_normal(keys[3], (h, h)),
            "a_2": xavier_normal(keys[4], (h, h)),
            "v_t": xavier_normal(keys[5], (h, 1)),
            "b": xavier_normal(keys[6], (2 * h, d)),
        }

    def represent(self, params, context, items, lengths, key):
        embedding_key, context_key = (None, None) if key is None else jax.random.split(key)
        # time-major [L, n, .] throughout: the GRU scans over the leading axis without transposes
        embedded = dropout(params["item_embedding"][items.T], self.embedding_dropout, embedding_key)
        zeros = jnp.zeros(3 * self.hidden_size)  # no GRU biases (RecBole: bias=False)
        states = gru_time_major(params["w_ih"], params["w_hh"], zeros, zeros, embedded, self.hidden_size)  # [L, n, h]
        c_global = jnp.take_along_axis(states, (lengths - 1)[None, :, None], axis=0)[0]
        valid = (jnp.arange(items.shape[1])[:, None] < lengths[None, :])[..., None]
        gate = valid * jax.nn.sigmoid(dense(states, params["a_1"]) + (c_global @ params["a_2"])[None])
        alpha = dense(gate, params["v_t"])  # [L, n, 1]; 0 at padding, as RecBole's mask gives
        c_local = jnp.sum(alpha * states, axis=0)
        c_t = dropout(jnp.concatenate([c_local, c_global], axis=-1), self.context_dropout, context_key)
        return c_t @ params["b"]

    def output_items(self, params):
        return params["item_embedding"][:-1]
