"""Score functions and the on-device ranking that the exposure and forgetting measures share.

Score functions. `scores_fn(users: int32 [B]) -> [B, n_items]` gives raw scores. Build it
with `model_scores_fn(model, params, context)`: that is a `jax.tree_util.Partial`, so params
and context are traced arguments (one compilation serves every checkpoint of a model) instead
of constants baked into the program. Any other hashable callable works as well.

Host and device. Measures that start from top-k lists or ranks are exact numpy arithmetic on
host arrays (compute the lists with `erase_jax.evaluators.cf_ranking.top_k_items`). Those that
need the scores of all items run on device like `top_k_items`: users are scored in fixed-size
blocks (`user_blocks`) inside one jitted `lax.map`, so peak memory is about
`block_size x n_items` scores, never `n_users x n_items`.

Ranks are 1-based over all items: 1 + the number of items with a strictly higher score, so
ties are broken in the ranked item's favour (an item tied with the best one has rank 1). An
item counts as "in the top-k" when its rank is <= k; with ties, more than k items can count.
Unlike RecBole there is no padding item 0 here, so "all items" means the real items.

Key scheme. Every measure returns a flat dict whose keys are CSV column names: `name@k` for a
value at cut-off k (`users_with_sensitive@10`, `jaccard@20`), plain `name` otherwise
(`scored_users`, `mean_target_rank`). `prefix_keys` prepends a role (`forgotten_`,
`reference_forgotten_`, `spam_`...) so one summary serves several models in one row. Counts
are ints, everything else is a float; an average over nothing is NaN.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.evaluators.cf_ranking import _next_power_of_two

ScoresFn = Callable[[jax.Array], jax.Array]


def model_scores_fn(model, params, context) -> jax.tree_util.Partial:
    """The scores function `users -> model.scores(params, context, {"users": users})`."""
    return jax.tree_util.Partial(_UserQueryScores(model), params, context)


@dataclasses.dataclass(frozen=True)
class _UserQueryScores:
    model: Any

    def __call__(self, params, context, users: jax.Array) -> jax.Array:
        return self.model.scores(params, context, {"users": users})


def prefix_keys(prefix: str, metrics: dict) -> dict:
    """`{"mean_rank": x}` -> `{prefix + "mean_rank": x}`, e.g. with prefix "forgotten_"."""
    return {prefix + key: value for key, value in metrics.items()}


def ranks_among(scores: jax.Array, values: jax.Array) -> jax.Array:
    """1 + how many entries of each row of `scores` [R, n] exceed each of `values` [R, m].

    One column of `values` at a time, so the comparison never holds more than R x n.
    """

    def count_above(column):
        return jnp.sum(scores > column[:, None], axis=1, dtype=jnp.int32)

    return 1 + jax.lax.map(count_above, values.T).T


def as_pytree(scores_fn: ScoresFn) -> jax.tree_util.Partial:
    """`scores_fn` as a jit argument: a Partial's arrays are traced, its function is static."""
    if isinstance(scores_fn, jax.tree_util.Partial):
        return scores_fn
    return jax.tree_util.Partial(scores_fn)


SMALLEST_BLOCK = 64  # users: checkpoints with 7, 16 or 29 unlearned users share one compiled shape
SMALLEST_PAIR_WIDTH = 256  # pairs per block, likewise


def user_blocks(users: np.ndarray, block_size: int) -> tuple[np.ndarray, int]:
    """Users as [n_blocks, block] (padded with the first user), block bucketed to 2^j, at least
    SMALLEST_BLOCK (fewer shapes, so fewer compilations of a scoring program that can take
    minutes to compile, e.g. a basket model's bucket branches) and at most `block_size`."""
    block = min(block_size, max(_next_power_of_two(len(users)), SMALLEST_BLOCK))
    n_blocks = -(-len(users) // block)
    padded = np.full(n_blocks * block, users[0], np.int32)
    padded[: len(users)] = users
    return padded.reshape(n_blocks, block), block


def pack_by_block(rows: np.ndarray, items: np.ndarray, block: int, n_blocks: int):
    """Groups (row, item) pairs by the block of their row.

    Returns [n_blocks, width] rows within the block (padding: row = block, out of range, so
    scatters drop it) and items, width a power of two of at least SMALLEST_PAIR_WIDTH, and each
    pair's slot in its block.
    """
    block_of = rows // block
    order = np.argsort(block_of, kind="stable")
    counts = np.bincount(block_of, minlength=n_blocks)
    width = _next_power_of_two(max(int(counts.max(initial=0)), SMALLEST_PAIR_WIDTH))
    slots = np.empty(len(rows), np.int64)
    slots[order] = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    packed_rows = np.full((n_blocks, width), block, np.int32)
    packed_items = np.zeros((n_blocks, width), np.int32)
    packed_rows[block_of, slots] = rows % block
    packed_items[block_of, slots] = items
    return packed_rows, packed_items, slots


def rows_in(users: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position of each query user in `users` (distinct), -1 where absent."""
    order = np.argsort(users)
    sorted_users = users[order]
    positions = np.minimum(np.searchsorted(sorted_users, query), len(users) - 1)
    return np.where(sorted_users[positions] == query, order[positions], -1)


def checked_ks(top_items: np.ndarray, ks: Iterable[int]) -> list[int]:
    """The cut-offs, sorted and distinct; top-k lists must be [users, >= max(ks)]."""
    ks = sorted(set(ks))
    if np.ndim(top_items) != 2 or np.shape(top_items)[1] < ks[-1]:
        raise ValueError(f"top-k lists must be [users, >= {ks[-1]}], got shape {np.shape(top_items)}")
    return ks


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0."""
    return numerator / denominator if denominator else float("nan")
