"""Full-ranking evaluation: scores over all items, computed on device in user blocks.

For each block of queries the model scores every item, already-seen items are set to -inf,
and `lax.top_k` keeps the best k. Only the [n_queries, k] item ids leave the device; the
metrics are then exact numpy arithmetic (`erase_jax.metrics`). Peak device memory is about
`block_size x n_items` floats, whatever the number of users. All blocks run inside one
jitted `lax.map`, and block sizes and mask lengths are bucketed to powers of two so that a
data set compiles a handful of shapes, not one per call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.data.cf import CFEvalSet
from erase_jax.metrics import METRICS, per_row_metrics, ranking_metrics


def top_k_items(
    model,
    params,
    context,
    users: np.ndarray,
    k: int,
    exclude_users: np.ndarray | None = None,
    exclude_items: np.ndarray | None = None,
    block_size: int = 1024,
) -> np.ndarray:
    """The k best-scored item ids for each user, best first, as int32 [len(users), k].

    Pairs (exclude_users[j], exclude_items[j]) are masked (the user's history); pairs whose
    user is not in `users` are ignored. `users` must not repeat.
    """
    users = np.asarray(users, np.int32)
    n = len(users)
    if n == 0:
        return np.zeros((0, k), np.int32)
    block = min(block_size, _next_power_of_two(n))
    n_blocks = -(-n // block)
    padded_users = np.full(n_blocks * block, users[0], np.int32)
    padded_users[:n] = users

    row_of_user = np.full(max(int(users.max()), 0) + 1, -1, np.int64)
    row_of_user[users] = np.arange(n)
    if exclude_users is None or len(exclude_users) == 0:
        exclude_rows = np.zeros(0, np.int64)
        exclude_items = np.zeros(0, np.int32)
    else:
        exclude_users = np.asarray(exclude_users)
        known = exclude_users <= users.max()
        rows = np.where(known, row_of_user[np.where(known, exclude_users, 0)], -1)
        keep = rows >= 0
        exclude_rows, exclude_items = rows[keep], np.asarray(exclude_items)[keep]
    mask_rows, mask_items = _per_block_pairs(exclude_rows, exclude_items, block, n_blocks)

    top = _ranked_blocks(
        model,
        k,
        params,
        context,
        jnp.asarray(padded_users.reshape(n_blocks, block)),
        jnp.asarray(mask_rows),
        jnp.asarray(mask_items),
    )
    return np.asarray(top).reshape(-1, k)[:n]


@functools.partial(jax.jit, static_argnames=("model", "k"))
def _ranked_blocks(model, k, params, context, block_users, mask_rows, mask_items):
    def one_block(args):
        users, rows, items = args
        scores = model.scores(params, context, {"users": users})
        scores = scores.at[rows, items].set(-jnp.inf, mode="drop")
        return jax.lax.top_k(scores, k)[1].astype(jnp.int32)

    return jax.lax.map(one_block, (block_users, mask_rows, mask_items))


def _per_block_pairs(rows: np.ndarray, items: np.ndarray, block: int, n_blocks: int):
    """Groups (row, item) pairs by block as [n_blocks, L] arrays padded with row = block.

    The padding row is out of range, so the device scatter drops it.
    """
    block_of = rows // block
    order = np.argsort(block_of, kind="stable")
    rows, items, block_of = rows[order], items[order], block_of[order]
    counts = np.bincount(block_of, minlength=n_blocks)
    width = _next_power_of_two(max(int(counts.max(initial=0)), 1))
    out_rows = np.full((n_blocks, width), block, np.int32)
    out_items = np.zeros((n_blocks, width), np.int32)
    position = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    out_rows[block_of, position] = rows % block
    out_items[block_of, position] = items
    return out_rows, out_items


def _next_power_of_two(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def hit_matrix(users: np.ndarray, top: np.ndarray, target_users: np.ndarray, target_items: np.ndarray, n_items: int):
    """hits[r, j] = (users[r], top[r, j]) is a target pair, plus the target count per user."""
    target_keys = np.unique(target_users.astype(np.int64) * n_items + target_items)
    keys = users.astype(np.int64)[:, None] * n_items + top
    position = np.searchsorted(target_keys, keys)
    hits = target_keys[np.minimum(position, len(target_keys) - 1)] == keys
    n_positives = np.bincount(target_users, minlength=int(users.max(initial=0)) + 1)[users]
    return hits, n_positives


def evaluate_cf(
    model,
    params,
    context,
    eval_set: CFEvalSet,
    ks=(10, 20),
    metrics=METRICS,
    block_size: int = 1024,
    per_user: bool = False,
):
    """Full-ranking metrics of a CF model on one evaluation set (history items masked).

    Returns ``{"recall@20": ..., ...}``; with ``per_user=True`` also the per-user values
    (dict of arrays aligned with ``eval_set.users``) as a second result.
    """
    if len(eval_set.users) == 0:
        raise ValueError("the evaluation set has no users with targets")
    k_max = max(ks)
    if k_max > eval_set.n_items:
        raise ValueError(f"top-{k_max} asked for but there are only {eval_set.n_items} items")
    top = top_k_items(
        model, params, context, eval_set.users, k_max,
        eval_set.history_users, eval_set.history_items, block_size,
    )
    hits, n_positives = hit_matrix(eval_set.users, top, eval_set.target_users, eval_set.target_items, eval_set.n_items)
    summary = ranking_metrics(hits, n_positives, ks, metrics)
    if per_user:
        return summary, per_row_metrics(hits, n_positives, ks)
    return summary
