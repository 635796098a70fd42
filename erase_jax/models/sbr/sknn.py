"""SKNN: session-based k-nearest neighbours, a non-learned baseline.

Jannach and Ludewig, "When Recurrent Neural Networks meet the Neighborhood for Session-Based
Recommendation", RecSys 2017: score(i | s) = sum over the k most similar past sessions n
that contain i of sim(s, n). The original benchmark's SKNN_SBR settings (spec 2.2): k 100,
candidates = the 1000 most recent past sessions sharing an item with s, Jaccard similarity
of item sets, scores divided by their maximum, no remind / popularity boost / extension.

"Past sessions" are the training sequences: each sequence's items that occur in its training
rows (all training prefixes and targets), dated by its last training interaction. They are
held as a dense binary [n_sequences, n_items] matrix, so one block of queries is two matmuls
and two top-k; fine for the benchmark's data sizes (Diginetica sample: 2,986 x 7,139).
A query's own training sequence is not excluded from its neighbours: with per-user sequences
it is the nearest one, so already-seen items rank first (ML-100K test NDCG@10 0.007); the
material at hand does not say whether the original's SKNN_SBR excludes it.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from erase_jax.data.sequences import SequenceRows
from erase_jax.models.base import register


@struct.dataclass
class SessionIndex:
    session_items: jax.Array  # float32 [n_sessions, n_items], 1 where the session holds the item
    session_sizes: jax.Array  # float32 [n_sessions], distinct items per session
    recency: jax.Array  # float32 [n_sessions], rank of the session's last training time (larger = later)
    n_items: int = struct.field(pytree_node=False)


@register
@dataclasses.dataclass(frozen=True)
class SKNN:
    name: ClassVar[str] = "SKNN"
    task: ClassVar[str] = "SBR"
    trainable: ClassVar[bool] = False

    k: int = 100
    sample_size: int = 1000
    normalize: bool = True

    def prepare(self, train: SequenceRows, capacity: int | None = None) -> SessionIndex:
        del capacity
        sessions, session_of_row = np.unique(train.sequences, return_inverse=True)
        matrix = np.zeros((len(sessions), train.n_items + 1), np.float32)  # column n_items catches padding
        rows = np.repeat(session_of_row, train.max_length)
        matrix[rows, train.prefixes.reshape(-1)] = 1.0
        matrix[session_of_row, train.targets] = 1.0
        matrix = matrix[:, : train.n_items]
        last_time = np.full(len(sessions), -np.inf)
        np.maximum.at(last_time, session_of_row, train.target_times)
        recency = np.argsort(np.argsort(last_time, kind="stable"), kind="stable").astype(np.float32)
        return SessionIndex(jnp.asarray(matrix), jnp.asarray(matrix.sum(1)), jnp.asarray(recency), train.n_items)

    def epoch_context(self, context, key):
        del key
        return context

    def init(self, key, context):
        return {}

    def loss(self, params, context, batch, key):
        return jnp.zeros((), jnp.float32)

    def scores(self, params, context: SessionIndex, query) -> jax.Array:
        items, lengths = query["items"], query["lengths"]
        n, width = items.shape
        valid = jnp.arange(width)[None, :] < lengths[:, None]
        query_set = jnp.zeros((n, context.n_items + 1)).at[jnp.arange(n)[:, None], jnp.where(valid, items, context.n_items)].set(1.0)
        query_set = query_set[:, : context.n_items]
        overlap = query_set @ context.session_items.T  # [n, n_sessions]
        union = query_set.sum(1, keepdims=True) + context.session_sizes[None, :] - overlap
        similarity = overlap / jnp.maximum(union, 1.0)
        candidate = overlap > 0
        n_sessions = overlap.shape[1]
        if n_sessions > self.sample_size:  # keep the most recent candidates only
            recency = jnp.where(candidate, context.recency[None, :], -1.0)
            threshold = jax.lax.top_k(recency, self.sample_size)[0][:, -1:]
            candidate = candidate & (recency >= threshold)
        k = min(self.k, n_sessions)
        top_similarity, neighbours = jax.lax.top_k(jnp.where(candidate, similarity, 0.0), k)
        weights = jnp.zeros_like(similarity).at[jnp.arange(n)[:, None], neighbours].set(top_similarity)
        scores = weights @ context.session_items
        if self.normalize:
            scores = scores / jnp.maximum(scores.max(axis=1, keepdims=True), 1e-12)
        return scores
