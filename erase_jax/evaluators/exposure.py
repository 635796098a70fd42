"""What a model still shows of forgotten data: exposure, spam push and forget fidelity.

Spec data-and-evaluation.md §5.2 (sensitive exposure), §5.3 (spam) and §7 item 10 (the
original's pitfalls in both). Five measures:

* `sensitive_exposure` - how many sensitive items reach the users' top-k lists (§5.2);
* `spam_exposure` - how much the spam target items are still pushed to genuine users (§5.3);
* `forget_fidelity` - how highly the forgotten interactions still rank for their own users,
  next to a reference model (normally the model retrained without them);
* `topk_agreement` - how similar two models' top-k lists are (unlearned vs retrained);
* `sample_other_users` - a control group of users who asked for nothing.

Key scheme. Every measure returns a flat dict whose keys are CSV column names: `name@k` for a
value at cut-off k (`users_with_sensitive@10`, `jaccard@20`), plain `name` otherwise
(`scored_users`, `mean_target_rank`). `prefix_keys` prepends a role (`forgotten_`,
`reference_forgotten_`, `original_`...) so one summary serves several models in one row.
Counts are ints, everything else is a float; an average over nothing is NaN.

Host and device. Measures that start from top-k lists or ranks are exact numpy arithmetic on
host arrays (compute the lists with `erase_jax.evaluate.top_k_items`). The two that need the
scores of all items (`target_ranks_and_probabilities`, `item_ranks`) run on device like
`top_k_items`: users are scored in fixed-size blocks inside one jitted `lax.map`, so peak
memory is about `block_size x n_items` scores, never `n_users x n_items`.

Score functions. `scores_fn(users: int32 [B]) -> [B, n_items]` gives raw scores. Build it
with `model_scores_fn(model, params, context)`: that is a `jax.tree_util.Partial`, so params
and context are traced arguments (one compilation serves every checkpoint of a model) instead
of constants baked into the program. Any other hashable callable works as well.

Ranks are 1-based over all items: 1 + the number of items with a strictly higher score, so
ties are broken in the ranked item's favour (an item tied with the best one has rank 1). An
item counts as "in the top-k" when its rank is <= k; with ties, more than k items can count.
Unlike RecBole there is no padding item 0 here, so "all items" means the real items.
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


# Sensitive exposure (§5.2) -------------------------------------------------------------


def sensitive_exposure(
    top_items: np.ndarray,
    sensitive_items: np.ndarray,
    ks: Iterable[int] = (10, 20),
    n_listed_users: int | None = None,
) -> dict:
    """How much of the sensitive item set S reaches the users' top-k lists (spec §5.2).

    Args:
      top_items: int [n_scored_users, K], each scored user's best items, best first, from
        raw scores (the original masks neither history nor padding), K >= max(ks).
      sensitive_items: item ids of S.
      n_listed_users: the original's denominator, the length of the user list including
        users skipped for lack of a test row. Default: the users actually scored.

    Returns, for each k: `users_with_sensitive@k` (users with >= 1 item of S in their top k),
    `total_sensitive@k` (sum over users of |top-k ∩ S|), `pct_users_with_sensitive@k`
    (100 x users_with / denominator), `avg_sensitive_per_user@k` (total / denominator),
    `avg_sensitive_per_affected_user@k` (total / users_with, 0 if none; from the original's
    `eval_original_models.py`), `min_sensitive_per_user@k`, `max_sensitive_per_user@k` (over
    the scored users); plus `total_users` (the denominator) and `scored_users`.

    Differs from the original (§7 item 10): the original divides by the listed users,
    skipped ones included, which understates the exposure of the users it did score; here
    the denominator is the scored users unless `n_listed_users` asks for the original's.
    """
    top_items = np.asarray(top_items)
    ks = _checked_ks(top_items, ks)
    n_scored = len(top_items)
    denominator = n_scored if n_listed_users is None else int(n_listed_users)
    if denominator < n_scored:
        raise ValueError(f"n_listed_users = {denominator} is below the {n_scored} scored users")
    is_sensitive = np.isin(top_items, np.asarray(sensitive_items))
    out = {"total_users": denominator, "scored_users": n_scored}
    for k in ks:
        per_user = is_sensitive[:, :k].sum(axis=1)
        users_with = int(np.count_nonzero(per_user))
        total = int(per_user.sum())
        out[f"users_with_sensitive@{k}"] = users_with
        out[f"total_sensitive@{k}"] = total
        out[f"pct_users_with_sensitive@{k}"] = 100 * _ratio(users_with, denominator)
        out[f"avg_sensitive_per_user@{k}"] = _ratio(total, denominator)
        out[f"avg_sensitive_per_affected_user@{k}"] = total / users_with if users_with else 0.0
        out[f"min_sensitive_per_user@{k}"] = int(per_user.min()) if n_scored else float("nan")
        out[f"max_sensitive_per_user@{k}"] = int(per_user.max()) if n_scored else float("nan")
    return out


# Spam exposure (§5.3) ------------------------------------------------------------------


def spam_exposure(
    scores_fn: ScoresFn,
    users: np.ndarray,
    target_items: np.ndarray,
    ks: Iterable[int] = (10, 20),
    block_size: int = 1024,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """How much the spam target items are still pushed to the given (genuine) users (§5.3).

    Returns, for each k: `users_with_target@k` (the SHARE of users, in [0, 1], with at least
    one target ranked <= k) and `avg_targets_in_top@k` (targets ranked <= k, per user); and
    `mean_best_target_rank` (rank of the user's best-ranked target, averaged over users),
    `mean_target_rank` (averaged over users and targets), `mean_target_probability` (softmax
    over all items of the user's scores, summed over the targets, averaged over users),
    `max_target_probability` (the largest per-user sum), `scored_users`, `target_items`.

    Differs from the original: the original stores, per evaluation row, the softmax
    probability of each target and leaves the aggregation to an offline script it does not
    ship (§5.3); these are the aggregates the benchmark reports. Ranks break ties in the
    targets' favour (module docstring). `exclude` = (users, items) pairs set to -inf before
    ranking and softmax, like a history mask; default None because the original does not mask.
    """
    ks = sorted(set(ks))
    ranks, probabilities = target_ranks_and_probabilities(scores_fn, users, target_items, block_size, exclude)
    if ranks.size == 0:
        raise ValueError("spam exposure needs at least one user and one target item")
    out = {}
    for k in ks:
        in_top = ranks <= k
        out[f"users_with_target@{k}"] = float(in_top.any(axis=1).mean())
        out[f"avg_targets_in_top@{k}"] = float(in_top.sum(axis=1).mean())
    per_user_probability = probabilities.astype(np.float64).sum(axis=1)
    out["mean_best_target_rank"] = float(ranks.min(axis=1).mean())
    out["mean_target_rank"] = float(ranks.mean())
    out["mean_target_probability"] = float(per_user_probability.mean())
    out["max_target_probability"] = float(per_user_probability.max())
    out["scored_users"] = ranks.shape[0]
    out["target_items"] = ranks.shape[1]
    return out


def target_ranks_and_probabilities(
    scores_fn: ScoresFn,
    users: np.ndarray,
    target_items: np.ndarray,
    block_size: int = 1024,
    exclude: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rank (int32) and softmax probability (float32) of every target item for every user.

    Both are [len(users), len(target_items)], in the given orders; the per-row records the
    original keeps (§5.3). `users` must not repeat; `exclude` as in `spam_exposure` (pairs
    whose user is not in `users` are ignored).
    """
    users = np.asarray(users, np.int32)
    targets = np.asarray(target_items, np.int32)
    if len(np.unique(users)) != len(users):
        raise ValueError("users must not repeat")
    shape = (len(users), len(targets))
    if 0 in shape:
        return np.zeros(shape, np.int32), np.zeros(shape, np.float32)
    block_users, block = _user_blocks(users, block_size)
    exclude_users, exclude_items = exclude if exclude is not None else (np.zeros(0, int), np.zeros(0, int))
    rows = _rows_in(users, np.asarray(exclude_users))
    known = rows >= 0
    mask_rows, mask_items, _ = _pack_by_block(rows[known], np.asarray(exclude_items)[known], block, len(block_users))
    ranks, probabilities = _target_blocks(
        _as_pytree(scores_fn),
        jnp.asarray(block_users),
        jnp.asarray(targets),
        jnp.asarray(mask_rows),
        jnp.asarray(mask_items),
    )
    n_users, n_targets = shape
    return tuple(np.asarray(a).reshape(-1, n_targets)[:n_users] for a in (ranks, probabilities))


@jax.jit
def _target_blocks(scores_fn, block_users, targets, mask_rows, mask_items):
    def one_block(args):
        users, rows, items = args
        scores = scores_fn(users).at[rows, items].set(-jnp.inf, mode="drop")
        target_scores = scores[:, targets]
        probabilities = jnp.exp(target_scores - jax.nn.logsumexp(scores, axis=1, keepdims=True))
        return _ranks_among(scores, target_scores), probabilities

    return jax.lax.map(one_block, (block_users, mask_rows, mask_items))


# Forget fidelity --------------------------------------------------------------------------


def item_ranks(scores_fn: ScoresFn, users: np.ndarray, items: np.ndarray, block_size: int = 1024) -> np.ndarray:
    """1-based rank of items[j] among all items for users[j], from raw scores: int32 [n_pairs].

    Pairs may repeat users: each distinct user is scored once (users in blocks of
    `block_size`), and its pairs are ranked in chunks of at most `block_size` rows so peak
    memory stays about `2 x block_size x n_items` scores whatever a user's pair count.
    """
    users = np.asarray(users)
    items = np.asarray(items, np.int32)
    if len(users) != len(items):
        raise ValueError("one item per user is needed")
    if len(users) == 0:
        return np.zeros(0, np.int32)
    distinct_users, pair_rows = np.unique(users, return_inverse=True)
    block_users, block = _user_blocks(distinct_users.astype(np.int32), block_size)
    n_blocks = len(block_users)
    packed_rows, packed_items, slots = _pack_by_block(pair_rows, items, block, n_blocks)
    # The largest power of two <= block: the width is a power of two too, so chunks tile it.
    chunk = min(packed_rows.shape[1], 1 << (block.bit_length() - 1))
    chunked = (n_blocks, -1, chunk)
    ranks = _pair_rank_blocks(
        _as_pytree(scores_fn),
        jnp.asarray(block_users),
        jnp.asarray(packed_rows.reshape(chunked)),
        jnp.asarray(packed_items.reshape(chunked)),
    )
    return np.asarray(ranks).reshape(n_blocks, -1)[pair_rows // block, slots]


@jax.jit
def _pair_rank_blocks(scores_fn, block_users, pair_rows, pair_items):
    def one_block(args):
        users, rows, items = args
        scores = scores_fn(users)

        def one_chunk(chunk):
            chunk_rows, chunk_items = chunk
            row_scores = scores.at[chunk_rows].get(mode="clip")  # padding rows are discarded
            own_scores = jnp.take_along_axis(row_scores, chunk_items[:, None], axis=1)
            return _ranks_among(row_scores, own_scores)[:, 0]

        return jax.lax.map(one_chunk, (rows, items))

    return jax.lax.map(one_block, (block_users, pair_rows, pair_items))


def forgotten_rank_summary(ranks: np.ndarray, ks: Iterable[int] = (10, 20)) -> dict:
    """How highly a model ranks forgotten (user, item) pairs, from their ranks (`item_ranks`).

    Keys: `pairs`, `mean_rank`, `median_rank`, `mrr` (mean of 1 / rank) and `hit@k` (share of
    pairs ranked <= k). Unprefixed, so one summary serves the unlearned, retrained and
    original models: combine with `prefix_keys` or use `forget_fidelity`.
    """
    ranks = np.asarray(ranks, np.float64)
    out = {"pairs": len(ranks)}
    if len(ranks) == 0:
        averages = ["mean_rank", "median_rank", "mrr"] + [f"hit@{k}" for k in sorted(set(ks))]
        return out | dict.fromkeys(averages, float("nan"))
    out["mean_rank"] = float(ranks.mean())
    out["median_rank"] = float(np.median(ranks))
    out["mrr"] = float((1 / ranks).mean())
    for k in sorted(set(ks)):
        out[f"hit@{k}"] = float((ranks <= k).mean())
    return out


def forget_fidelity(ranks: np.ndarray, reference_ranks: np.ndarray | None = None, ks: Iterable[int] = (10, 20)) -> dict:
    """Forgotten-pair ranks in a model (`forgotten_*`) next to a reference model.

    The reference, normally the model retrained without the pairs, gives the
    `reference_forgotten_*` keys for the same pairs in the same order and
    `rank_ratio_to_reference` = mean rank / reference mean rank: near 1 the pairs rank as if
    never trained on, below 1 the model still ranks them higher (it remembers them).
    Not in the original, which measures forgetting only through utility and MIA (§5).
    """
    out = prefix_keys("forgotten_", forgotten_rank_summary(ranks, ks))
    if reference_ranks is not None:
        if len(reference_ranks) != len(ranks):
            raise ValueError("the reference ranks must be for the same pairs")
        reference = forgotten_rank_summary(reference_ranks, ks)
        out.update(prefix_keys("reference_forgotten_", reference))
        out["rank_ratio_to_reference"] = _ratio(out["forgotten_mean_rank"], reference["mean_rank"])
    return out


# Agreement and control users -------------------------------------------------------------


def topk_agreement(top_a: np.ndarray, top_b: np.ndarray, ks: Iterable[int] = (10, 20)) -> dict:
    """How alike two models' top-k lists are for the same users (rows in the same order).

    Keys `jaccard@k` (mean over users of |A ∩ B| / |A ∪ B| of the two top-k sets) and
    `overlap@k` (mean of |A ∩ B| / k). Each row must list distinct items, as top-k lists do.
    """
    top_a, top_b = np.asarray(top_a), np.asarray(top_b)
    if top_a.shape != top_b.shape:
        raise ValueError(f"top-k lists of different shapes: {top_a.shape} vs {top_b.shape}")
    ks = _checked_ks(top_a, ks)
    if len(top_a) == 0:
        return {f"{name}@{k}": float("nan") for k in ks for name in ("jaccard", "overlap")}
    key_stride = int(max(top_a.max(), top_b.max())) + 1
    row_offsets = np.arange(len(top_a), dtype=np.int64)[:, None] * key_stride
    out = {}
    for k in ks:
        keys_a, keys_b = row_offsets + top_a[:, :k], row_offsets + top_b[:, :k]
        common = np.isin(keys_a, keys_b).sum(axis=1)
        out[f"jaccard@{k}"] = float((common / (2 * k - common)).mean())
        out[f"overlap@{k}"] = float((common / k).mean())
    return out


def sample_other_users(n_users: int, excluded_users: np.ndarray, n_sample: int, seed: int) -> np.ndarray:
    """A seeded uniform sample without replacement of the users not in `excluded_users`.

    Sorted int32; all of them if fewer than `n_sample` exist. A control group for the
    measures above: exposure of users who asked for nothing separates forgetting from a
    model-wide shift. Not in the original.
    """
    candidates = np.setdiff1d(np.arange(n_users), np.asarray(excluded_users))
    chosen = np.random.default_rng(seed).choice(candidates, size=min(n_sample, len(candidates)), replace=False)
    return np.sort(chosen).astype(np.int32)


# Helpers ---------------------------------------------------------------------------------


def _ranks_among(scores: jax.Array, values: jax.Array) -> jax.Array:
    """1 + how many entries of each row of `scores` [R, n] exceed each of `values` [R, m].

    One column of `values` at a time, so the comparison never holds more than R x n.
    """

    def count_above(column):
        return jnp.sum(scores > column[:, None], axis=1, dtype=jnp.int32)

    return 1 + jax.lax.map(count_above, values.T).T


def _as_pytree(scores_fn: ScoresFn) -> jax.tree_util.Partial:
    """`scores_fn` as a jit argument: a Partial's arrays are traced, its function is static."""
    if isinstance(scores_fn, jax.tree_util.Partial):
        return scores_fn
    return jax.tree_util.Partial(scores_fn)


def _user_blocks(users: np.ndarray, block_size: int) -> tuple[np.ndarray, int]:
    """Users as [n_blocks, block] (padded with the first user), block bucketed to 2^j."""
    block = min(block_size, _next_power_of_two(len(users)))
    n_blocks = -(-len(users) // block)
    padded = np.full(n_blocks * block, users[0], np.int32)
    padded[: len(users)] = users
    return padded.reshape(n_blocks, block), block


def _pack_by_block(rows: np.ndarray, items: np.ndarray, block: int, n_blocks: int):
    """Groups (row, item) pairs by the block of their row.

    Returns [n_blocks, width] rows within the block (padding: row = block, out of range, so
    scatters drop it) and items, width a power of two, and each pair's slot in its block.
    """
    block_of = rows // block
    order = np.argsort(block_of, kind="stable")
    counts = np.bincount(block_of, minlength=n_blocks)
    width = _next_power_of_two(max(int(counts.max(initial=0)), 1))
    slots = np.empty(len(rows), np.int64)
    slots[order] = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    packed_rows = np.full((n_blocks, width), block, np.int32)
    packed_items = np.zeros((n_blocks, width), np.int32)
    packed_rows[block_of, slots] = rows % block
    packed_items[block_of, slots] = items
    return packed_rows, packed_items, slots


def _rows_in(users: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position of each query user in `users` (distinct), -1 where absent."""
    order = np.argsort(users)
    sorted_users = users[order]
    positions = np.minimum(np.searchsorted(sorted_users, query), len(users) - 1)
    return np.where(sorted_users[positions] == query, order[positions], -1)


def _checked_ks(top_items: np.ndarray, ks: Iterable[int]) -> list[int]:
    ks = sorted(set(ks))
    if np.ndim(top_items) != 2 or np.shape(top_items)[1] < ks[-1]:
        raise ValueError(f"top-k lists must be [users, >= {ks[-1]}], got shape {np.shape(top_items)}")
    return ks


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")
