"""Forgetting: how highly a model still ranks the forgotten interactions for their own users.

* `item_ranks` - the rank of each forgotten (user, item) pair among all items;
* `forgotten_rank_summary` - mean / median rank, MRR and hit@k of a set of pairs;
* `forget_fidelity` - that summary next to a reference model's for the same pairs.

The `forgetting` evaluator ranks, at each checkpoint, the (user, item) pairs removed through it
(k = -1: the whole forget set) whose user the evaluation view can score, in the evaluated model
and, when there is one, in the reference (the retrain of the checkpoint): keys of
`forget_fidelity` (`forgotten_*`, `reference_forgotten_*`, `rank_ratio_to_reference`).
Not in the original, which measures forgetting only through utility and MIA (spec §5).
Ranks and key scheme: `erase_jax.evaluators.scoring`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.evaluators.base import ORIGINAL_FULL_DATA, Checkpoint, register
from erase_jax.evaluators.scoring import ScoresFn, as_pytree, pack_by_block, prefix_keys, ranks_among, ratio, user_blocks


@register
@dataclasses.dataclass(frozen=True)
class Forgetting:
    name: ClassVar[str] = "forgetting"

    def evaluate(self, checkpoint: Checkpoint) -> dict:
        block = checkpoint.block_size
        pair_users, pair_items = forgotten_pairs(checkpoint)
        scored = np.isin(pair_users, checkpoint.scored_unlearned_users)
        pair_users, pair_items = pair_users[scored], pair_items[scored]
        ranks = item_ranks(checkpoint.evaluated_by_user.scores_fn(), pair_users, pair_items, block)
        reference_ranks = None
        if checkpoint.reference_by_user is not None:
            reference_ranks = item_ranks(checkpoint.reference_by_user.scores_fn(), pair_users, pair_items, block)
        return forget_fidelity(ranks, reference_ranks, checkpoint.ks)


def forgotten_pairs(checkpoint: Checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """The (user, item) pairs removed through the checkpoint (k = -1: the whole forget set), once each."""
    run, inter = checkpoint.run, checkpoint.run.experiment.data.interactions
    removed = run.forget_set.removal_mask(inter) if checkpoint.k == ORIGINAL_FULL_DATA else run.removed_through(checkpoint.k)
    rows = np.nonzero(removed)[0]
    keys = np.unique(inter.users[rows].astype(np.int64) * inter.n_items + inter.items[rows])
    return (keys // inter.n_items).astype(np.int32), (keys % inter.n_items).astype(np.int32)


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
    block_users, block = user_blocks(distinct_users.astype(np.int32), block_size)
    n_blocks = len(block_users)
    packed_rows, packed_items, slots = pack_by_block(pair_rows, items, block, n_blocks)
    # The largest power of two <= block: the width is a power of two too, so chunks tile it.
    chunk = min(packed_rows.shape[1], 1 << (block.bit_length() - 1))
    chunked = (n_blocks, -1, chunk)
    ranks = _pair_rank_blocks(
        as_pytree(scores_fn),
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
            return ranks_among(row_scores, own_scores)[:, 0]

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
        out["rank_ratio_to_reference"] = ratio(out["forgotten_mean_rank"], reference["mean_rank"])
    return out
