"""ItemKNN: item-based collaborative filtering with top-k cosine neighbourhoods (non-learned).

Sarwar et al., "Item-Based Collaborative Filtering Recommendation Algorithms", WWW 2001
(cosine item-item similarity, section 3.1.1); Deshpande & Karypis, "Item-Based Top-N
Recommendation Algorithms", TOIS 2004 (keep the k most similar items per item, score a
candidate by summing its similarities to the user's items, section 4).

Follows RecBole 1.2.1 (`ItemKNN` with `knn_method: item`, `ComputeSimilarity`):
  * R is the user-item count matrix: RecBole's CSR interaction matrix sums repeated pairs, so a
    pair seen twice has R[u, i] = 2 (kept here, in both the similarity and the scores);
  * sim(i, j) = <R_i, R_j> / (||R_i|| ||R_j|| + shrink + 1e-6) over item columns, sim(j, j) = 0;
  * for each item j only its k most similar items i keep W[i, j] = sim(i, j) (ties at the k-th
    place broken by `np.argpartition`, as in RecBole);
  * score(u, j) = sum_i R[u, i] W[i, j] = (R @ W)[u, j].
Only the item-based variant is implemented (the ERASE baseline's setting).

Memory: W is kept as a neighbour table (int32 + float32 [n_items, k]) instead of a dense
[n_items, n_items] matrix, and user histories as a padded table (int32 + float32
[n_users, longest history]); scoring Q users builds R_block^T and the result, each
[n_items, Q] float32. Host preparation works on blocks of items, O(n_items * block) memory.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from flax import struct

from erase_jax.data.cf import CFTrainData
from erase_jax.models.base import Batch, register
from erase_jax.models.cf.base import NonLearnedCFModel

SIMILARITY_BLOCK = 512  # items per block when computing similarities on the host


@struct.dataclass
class ItemKNNContext:
    """Attributes:
    neighbours, neighbour_weights: [n_items, k]; W[neighbours[j, t], j] = neighbour_weights[j, t].
    history_items, history_counts: [n_users, max history]; the distinct items of each user and
      how often the user interacted with them (count 0 on padding slots).
    """

    neighbours: jax.Array
    neighbour_weights: jax.Array
    history_items: jax.Array
    history_counts: jax.Array


def interaction_counts(train: CFTrainData) -> sp.csr_matrix:
    """R [n_users, n_items] float32, repeated pairs summed (RecBole's `inter_matrix(form="csr")`)."""
    ones = np.ones(len(train), np.float32)
    return sp.csr_matrix((ones, (train.users, train.items)), shape=(train.n_users, train.n_items))


def top_k_neighbours(counts: sp.csr_matrix, k: int, shrink: float) -> tuple[np.ndarray, np.ndarray]:
    """(neighbours, weights) [n_items, k]: the k items i with the largest sim(i, j), per item j."""
    n_items = counts.shape[1]
    k = min(k, n_items)
    by_item = counts.T.tocsr()
    item_norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=0)).ravel())
    neighbours = np.empty((n_items, k), np.int32)
    weights = np.empty((n_items, k), np.float32)
    for start in range(0, n_items, SIMILARITY_BLOCK):
        block = np.arange(start, min(start + SIMILARITY_BLOCK, n_items))
        # similarity[b, i] = sim(i, block[b])
        similarity = (by_item[block] @ by_item.T).toarray()
        similarity[np.arange(len(block)), block] = 0.0
        similarity /= item_norms[block, None] * item_norms[None, :] + shrink + 1e-6
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        neighbours[block] = top
        weights[block] = np.take_along_axis(similarity, top, axis=1)
    return neighbours, weights


def history_table(counts: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(items, counts) [n_users, longest history], each user's distinct items left-aligned."""
    lengths = np.diff(counts.indptr)
    width = max(int(lengths.max(initial=0)), 1)
    items = np.zeros((counts.shape[0], width), np.int32)
    values = np.zeros((counts.shape[0], width), np.float32)
    rows = np.repeat(np.arange(counts.shape[0]), lengths)
    slots = np.arange(counts.nnz) - np.repeat(counts.indptr[:-1], lengths)
    items[rows, slots] = counts.indices
    values[rows, slots] = counts.data
    return items, values


def query_count_columns(history_items: jax.Array, history_counts: jax.Array, users: jax.Array, n_items: int) -> jax.Array:
    """R_block^T, float32 [n_items, Q]: column q holds the interaction counts of user users[q]
    (from the padded history table of `history_table`; padding slots add 0)."""
    items = history_items[users]  # [Q, H]
    query_index = jnp.broadcast_to(jnp.arange(items.shape[0])[:, None], items.shape)
    return jnp.zeros((n_items, items.shape[0]), jnp.float32).at[items, query_index].add(history_counts[users])


@register
@dataclasses.dataclass(frozen=True)
class ItemKNN(NonLearnedCFModel):
    """Item-based top-k cosine CF (Sarwar et al. 2001; Deshpande & Karypis 2004), as in RecBole.

    Everything is computed by `prepare` on the host; the parameters are empty.
    """

    name: ClassVar[str] = "ItemKNN"

    k: int = 100
    shrink: float = 0.0

    def prepare(self, train: CFTrainData, capacity: int | None = None) -> ItemKNNContext:
        del capacity  # shapes depend on n_items, k and the longest history
        counts = interaction_counts(train)
        neighbours, neighbour_weights = top_k_neighbours(counts, self.k, self.shrink)
        history_items, history_counts = history_table(counts)
        return ItemKNNContext(
            neighbours=jnp.asarray(neighbours),
            neighbour_weights=jnp.asarray(neighbour_weights),
            history_items=jnp.asarray(history_items),
            history_counts=jnp.asarray(history_counts),
        )

    def scores(self, params, context: ItemKNNContext, query: Batch) -> jax.Array:
        n_items, k = context.neighbours.shape
        block_counts = query_count_columns(context.history_items, context.history_counts, query["users"], n_items)
        n_queries = block_counts.shape[1]

        def add_neighbour(t, scores_t):  # scores^T[j, q] += W[neighbours[j, t], j] * R[q, neighbours[j, t]]
            return scores_t + context.neighbour_weights[:, t, None] * block_counts[context.neighbours[:, t]]

        return jax.lax.fori_loop(0, k, add_neighbour, jnp.zeros((n_items, n_queries), jnp.float32)).T
