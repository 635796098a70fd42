"""Agreement: how alike two models' top-k lists are, the unlearned model's next to the retrain's.

* `topk_agreement` - Jaccard and overlap of two models' top-k lists for the same users;
* `sample_other_users` - a control group of users who asked for nothing.

The `agreement` evaluator compares, at each checkpoint that has a reference (the retrain of
the checkpoint), the evaluated model's raw top-k lists with the reference's for the users
unlearned so far (`agree_unlearned_*`) and for a seeded sample of other users
(`agree_other_*`); without a reference it measures nothing. Not in the original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import ClassVar

import numpy as np

from erase_jax.evaluators.base import Checkpoint, register
from erase_jax.evaluators.scoring import checked_ks, prefix_keys


@register
@dataclasses.dataclass(frozen=True)
class Agreement:
    name: ClassVar[str] = "agreement"
    n_other_users: int = 500  # the control group: users outside the forget set

    def evaluate(self, checkpoint: Checkpoint) -> dict:
        reference = checkpoint.reference_by_user
        if reference is None:
            return {}
        run, view, ks, block = checkpoint.run, checkpoint.view, checkpoint.ks, checkpoint.block_size
        k_max = max(ks)

        def agreement(evaluated_top, users):
            return topk_agreement(evaluated_top, reference.top_k(users, k_max, block), ks)

        unlearned = checkpoint.scored_unlearned_users
        out = prefix_keys("agree_unlearned_", agreement(checkpoint.unlearned_top_k, unlearned))
        others = view.scorable(sample_other_users(view.n_users, run.forget_set.users, self.n_other_users, run.seed))
        out.update(prefix_keys("agree_other_", agreement(checkpoint.evaluated_by_user.top_k(others, k_max, block), others)))
        return out


def topk_agreement(top_a: np.ndarray, top_b: np.ndarray, ks: Iterable[int] = (10, 20)) -> dict:
    """How alike two models' top-k lists are for the same users (rows in the same order).

    Keys `jaccard@k` (mean over users of |A ∩ B| / |A ∪ B| of the two top-k sets) and
    `overlap@k` (mean of |A ∩ B| / k). Each row must list distinct items, as top-k lists do.
    """
    top_a, top_b = np.asarray(top_a), np.asarray(top_b)
    if top_a.shape != top_b.shape:
        raise ValueError(f"top-k lists of different shapes: {top_a.shape} vs {top_b.shape}")
    ks = checked_ks(top_a, ks)
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
