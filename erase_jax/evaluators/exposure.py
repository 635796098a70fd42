"""Exposure: what a model still shows the users of forgotten data (spec data-and-evaluation.md
§5.2 sensitive items, §5.3 spam targets, §7 item 10 the original's pitfalls in both).

* `sensitive_exposure` - how many sensitive items reach the users' top-k lists (§5.2);
* `spam_exposure` - how much the spam target items are still pushed to genuine users (§5.3);
* `target_ranks_and_probabilities` - the per-user, per-target records behind `spam_exposure`.

The `exposure` evaluator measures, at each checkpoint, the sensitive exposure of the users
unlearned so far (sensitive scenario: their raw top-k lists, nothing masked, keys as
`sensitive_exposure` with `total_users` / `scored_users` renamed `sensitive_total_users` /
`sensitive_scored_users`) and the spam exposure of the genuine users (forget sets with target
items: keys of `spam_exposure` prefixed `spam_`, raw scores as the original; and as the
poisoning literature measures it, each genuine user's training items masked, at k = 20 and 50,
prefixed `spam_masked_`, with `spam_masked_target_mass_ratio_to_reference`, the mean
per-target softmax mass over the reference's, the retrain's, where there is one). Ranks and key scheme:
`erase_jax.evaluators.scoring`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.evaluators.base import Checkpoint, register
from erase_jax.evaluators.scoring import (
    ScoresFn,
    as_pytree,
    checked_ks,
    pack_by_block,
    prefix_keys,
    ranks_among,
    ratio,
    rows_in,
    user_blocks,
)


@register
@dataclasses.dataclass(frozen=True)
class Exposure:
    name: ClassVar[str] = "exposure"

    def evaluate(self, checkpoint: Checkpoint) -> dict:
        run, ks = checkpoint.run, checkpoint.ks
        out = {}
        if run.config.scenario == "sensitive":
            sensitive = checkpoint.data.interactions.category_items(run.forget_set.category)
            found = sensitive_exposure(checkpoint.unlearned_top_k, sensitive, ks)
            found["sensitive_total_users"] = found.pop("total_users")
            found["sensitive_scored_users"] = found.pop("scored_users")
            out.update(found)
        if run.forget_set.target_items is not None:
            view = checkpoint.view
            genuine = view.scorable(np.setdiff1d(np.arange(view.n_users), run.forget_set.users))
            scores_fn = checkpoint.evaluated_by_user.scores_fn()
            targets, block = run.forget_set.target_items, checkpoint.block_size
            out.update(prefix_keys("spam_", spam_exposure(scores_fn, genuine, targets, ks, block)))
            history = training_pairs(checkpoint.data)
            masked = spam_exposure(scores_fn, genuine, targets, MASKED_SPAM_KS, block, history)
            out.update(prefix_keys("spam_masked_", masked))
            if checkpoint.reference_by_user is not None:
                reference = spam_exposure(checkpoint.reference_by_user.scores_fn(), genuine, targets, MASKED_SPAM_KS, block,
                                          history)
                out["spam_masked_target_mass_ratio_to_reference"] = ratio(masked["mean_target_mass"],
                                                                          reference["mean_target_mass"])
        return out


MASKED_SPAM_KS = (20, 50)  # the poisoning literature's cut-offs (hit ratio @20 / @50)


def training_pairs(data) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of the data's training split: the history mask of the masked spam measures."""
    rows = np.asarray(data.split.train)
    return np.asarray(data.interactions.users[rows]), np.asarray(data.interactions.items[rows])


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
    ks = checked_ks(top_items, ks)
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
        out[f"pct_users_with_sensitive@{k}"] = 100 * ratio(users_with, denominator)
        out[f"avg_sensitive_per_user@{k}"] = ratio(total, denominator)
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
    one target ranked <= k), `avg_targets_in_top@k` (targets ranked <= k, per user) and
    `target_hit_ratio@k` (the share of (user, target) pairs ranked <= k); and
    `mean_target_mass` (each target's softmax probability, averaged over users and targets), and
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
        out[f"target_hit_ratio@{k}"] = float(in_top.mean())
    per_user_probability = probabilities.astype(np.float64).sum(axis=1)
    out["mean_best_target_rank"] = float(ranks.min(axis=1).mean())
    out["mean_target_rank"] = float(ranks.mean())
    out["mean_target_probability"] = float(per_user_probability.mean())
    out["max_target_probability"] = float(per_user_probability.max())
    out["mean_target_mass"] = float(probabilities.astype(np.float64).mean())
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
    block_users, block = user_blocks(users, block_size)
    exclude_users, exclude_items = exclude if exclude is not None else (np.zeros(0, int), np.zeros(0, int))
    rows = rows_in(users, np.asarray(exclude_users))
    known = rows >= 0
    mask_rows, mask_items, _ = pack_by_block(rows[known], np.asarray(exclude_items)[known], block, len(block_users))
    ranks, probabilities = _target_blocks(
        as_pytree(scores_fn),
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
        return ranks_among(scores, target_scores), probabilities

    return jax.lax.map(one_block, (block_users, mask_rows, mask_items))
