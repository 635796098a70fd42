"""Full-ranking evaluation: scores over all items, computed on device in user blocks.

For each block of queries the model scores every item, already-seen items are set to -inf,
and `lax.top_k` keeps the best k. Only the [n_queries, k] item ids leave the device; the
metrics are then exact numpy arithmetic (`erase_jax.metrics`). Peak device memory is about
`block x n_items` floats, whatever the number of users: the block is `block_size` users, cut
to a power of two so that a block holds at most `SCORES_PER_BLOCK` scores (a 1M-item
catalogue ranks 32 users at a time, not 1024 x 1M = 4 GB of scores). All blocks run inside one
jitted `lax.map`, and block sizes and mask lengths are bucketed to powers of two so that a
data set compiles a handful of shapes, not one per call.

Models whose scores are inner products of a user and an item table (the `score_factors`
hook) compute both tables once, not once per block (LightGCN's propagation over the whole
graph), and rank through `sharded_ranking`, which splits the item table over a device mesh
(`mesh`, default: one device).
"""

from __future__ import annotations

import dataclasses
import functools
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.data.cf import CFEvalSet
from erase_jax.evaluators import sharded_ranking
from erase_jax.evaluators.metrics import METRICS, per_row_metrics, ranking_metrics


@dataclasses.dataclass(frozen=True)
class RankingInputs:
    """Device arrays for ranking a fixed list of users: user blocks and per-block masks."""

    n_users: int
    block_users: jax.Array  # int32 [n_blocks, block]
    mask_rows: jax.Array  # int32 [n_blocks, L]: row within the block, `block` = padding
    mask_items: jax.Array  # int32 [n_blocks, L]


SCORES_PER_BLOCK = 1 << 25  # 128 MB of float32 scores per device block


def ranking_inputs(
    users, exclude_users=None, exclude_items=None, block_size: int = 1024, n_items: int | None = None
) -> RankingInputs:
    """Packs users into blocks and the (user, item) pairs to mask into per-block lists.

    Pairs whose user is not in `users` are ignored. `users` must not repeat. With `n_items`
    (the item columns one device scores), the block is cut to `block_for(...)`.
    """
    users = np.asarray(users, np.int32)
    n = len(users)
    block = min(block_for(block_size, n_items), _next_power_of_two(max(n, 1)))
    n_blocks = max(-(-n // block), 1)
    padded_users = np.full(n_blocks * block, users[0] if n else 0, np.int32)
    padded_users[:n] = users

    exclude_rows, items = np.zeros(0, np.int64), np.zeros(0, np.int32)
    if n and exclude_users is not None and len(exclude_users):
        row_of_user = np.full(int(users.max()) + 1, -1, np.int64)
        row_of_user[users] = np.arange(n)
        exclude_users = np.asarray(exclude_users)
        known = exclude_users <= users.max()
        rows = np.where(known, row_of_user[np.where(known, exclude_users, 0)], -1)
        keep = rows >= 0
        exclude_rows, items = rows[keep], np.asarray(exclude_items)[keep]
    mask_rows, mask_items = _per_block_pairs(exclude_rows, items, block, n_blocks)
    return RankingInputs(
        n, jnp.asarray(padded_users.reshape(n_blocks, block)), jnp.asarray(mask_rows), jnp.asarray(mask_items)
    )


def block_for(block_size: int, n_items: int | None) -> int:
    """The user block: `block_size`, cut to the largest power of two whose block of `n_items`
    scores fits `SCORES_PER_BLOCK` (at least 1)."""
    if n_items is None:
        return block_size
    fitting = max(SCORES_PER_BLOCK // max(n_items, 1), 1)
    return max(min(block_size, 1 << (fitting.bit_length() - 1)), 1)


def top_k_items(
    model,
    params,
    context,
    users: np.ndarray,
    k: int,
    exclude_users: np.ndarray | None = None,
    exclude_items: np.ndarray | None = None,
    block_size: int = 1024,
    inputs: RankingInputs | None = None,
    mesh=None,
) -> np.ndarray:
    """The k best-scored item ids for each user, best first, as int32 [len(users), k].

    Pairs (exclude_users[j], exclude_items[j]) are masked (the user's history); pairs whose
    user is not in `users` are ignored. `users` must not repeat. `inputs`, when given, are the
    precomputed `ranking_inputs` of exactly these arguments (repeated evaluations reuse them).
    `mesh` (`sharded_ranking.item_mesh`) splits the item table of a factor-form model over
    its devices; other models ignore it.
    """
    n_items = scored_items(model, params, context)
    mesh = sharded_ranking.item_mesh(1) if mesh is None else mesh
    if inputs is None:
        columns = -(-n_items // mesh.size) if hasattr(model, "score_factors") else n_items
        inputs = ranking_inputs(users, exclude_users, exclude_items, block_size, columns)
    if inputs.n_users == 0:
        return np.zeros((0, k), np.int32)
    if hasattr(model, "score_factors"):
        user_table, item_table = _score_factors(model, params, context)
        item_table = sharded_ranking.padded_item_table(item_table, mesh)
        top = sharded_ranking.sharded_top_k(
            user_table, item_table, n_items, k, inputs.block_users, inputs.mask_rows, inputs.mask_items, mesh
        )
    else:
        top = _ranked_blocks(model, k, params, context, inputs.block_users, inputs.mask_rows, inputs.mask_items)
    return np.asarray(top).reshape(-1, k)[: inputs.n_users]


@functools.partial(jax.jit, static_argnums=0)
def _score_factors(model, params, context):
    return model.score_factors(params, context)


def scored_items(model, params, context) -> int:
    """The number of score columns of `model` (traced with one query, nothing computed)."""
    query = {"users": jax.ShapeDtypeStruct((1,), jnp.int32)}
    return int(jax.eval_shape(lambda p, c, q: model.scores(p, c, q), params, context, query).shape[-1])


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


_PREPARED: dict[tuple[int, int], tuple] = {}


def _prepared(eval_set: CFEvalSet, block_size: int):
    """Ranking inputs, sorted target keys and positive counts of an evaluation set, built once.

    Validation runs every epoch on the same set; packing its ~700k history pairs on the host
    each time cost more than the ranking itself. Keyed by object identity (the sets are
    immutable); the entry is dropped when its set is garbage-collected.
    """
    key = (id(eval_set), block_size)
    cached = _PREPARED.get(key)
    if cached is not None and cached[0]() is eval_set:
        return cached[1:]
    inputs = ranking_inputs(eval_set.users, eval_set.history_users, eval_set.history_items, block_size, eval_set.n_items)
    target_keys = np.unique(eval_set.target_users.astype(np.int64) * eval_set.n_items + eval_set.target_items)
    n_positives = np.bincount(eval_set.target_users, minlength=int(eval_set.users.max(initial=0)) + 1)[eval_set.users]
    _PREPARED[key] = (weakref.ref(eval_set), inputs, target_keys, n_positives)
    weakref.finalize(eval_set, _PREPARED.pop, key, None)  # free the device arrays with the set
    return inputs, target_keys, n_positives


def evaluate_cf(
    model,
    params,
    context,
    eval_set: CFEvalSet,
    ks=(10, 20),
    metrics=METRICS,
    block_size: int = 1024,
    per_user: bool = False,
    mesh=None,
):
    """Full-ranking metrics of a CF model on one evaluation set (history items masked).

    Returns ``{"recall@20": ..., ...}``; with ``per_user=True`` also the per-user values
    (dict of arrays aligned with ``eval_set.users``) as a second result. `mesh`: as in
    `top_k_items`.
    """
    if len(eval_set.users) == 0:
        raise ValueError("the evaluation set has no users with targets")
    k_max = max(ks)
    if k_max > eval_set.n_items:
        raise ValueError(f"top-{k_max} asked for but there are only {eval_set.n_items} items")
    inputs, target_keys, n_positives = _prepared(eval_set, block_size)
    top = top_k_items(model, params, context, eval_set.users, k_max, inputs=inputs, mesh=mesh)
    keys = eval_set.users.astype(np.int64)[:, None] * eval_set.n_items + top
    position = np.searchsorted(target_keys, keys)
    hits = target_keys[np.minimum(position, len(target_keys) - 1)] == keys
    summary = ranking_metrics(hits, n_positives, ks, metrics)
    if per_user:
        return summary, per_row_metrics(hits, n_positives, ks)
    return summary
