"""Row filters applied between reading a data set and splitting it.

Each filter keeps row order and returns a compacted `Interactions` (dense ids again). The
`*_rows` variants return the boolean mask of kept rows, for callers that carry a per-row
column alongside (the given train/test flag of pre-split data).
"""

from __future__ import annotations

import numpy as np

from erase_jax.data.interactions import Interactions


def rating_threshold_rows(inter: Interactions, threshold: float) -> np.ndarray:
    """Mask of rows rated at least `threshold`."""
    if inter.ratings is None:
        raise ValueError(f"{inter.name}: a rating threshold needs ratings, and this data has none")
    return inter.ratings >= threshold


def rating_threshold(inter: Interactions, threshold: float) -> Interactions:
    """Keeps rows rated at least `threshold` (e.g. goodreads' preprocessing keeps rating >= 3).

    The original CF configs' `threshold: {rating: 3.5}` does NOT drop rows: it only makes a
    label that pairwise training and full ranking ignore (spec section 1.1). Use this filter
    only to deliberately treat low ratings as non-interactions.
    """
    return inter.select(rating_threshold_rows(inter, threshold)).compact()


def k_core_rows(
    inter: Interactions, min_user: int | None, min_item: int | None, max_rounds: int = 100
) -> np.ndarray:
    """Mask of rows in the iterative (min_user, min_item)-core.

    Each round drops, at once, every row whose user has fewer than `min_user` rows or whose
    item has fewer than `min_item` rows, counted on the rows kept so far; rounds repeat until
    nothing changes (RecBole's `user/item_inter_num_interval`, spec sections 1.1-1.2) or
    `max_rounds` is reached (the original's `deduplicate.py` cap). None or 0 disables a side.
    """
    min_user, min_item = min_user or 0, min_item or 0
    keep = np.ones(len(inter), bool)
    for _ in range(max_rounds):
        user_counts = np.bincount(inter.users[keep], minlength=inter.n_users)
        item_counts = np.bincount(inter.items[keep], minlength=inter.n_items)
        too_rare = (user_counts[inter.users] < min_user) | (item_counts[inter.items] < min_item)
        dropped = keep & too_rare
        if not dropped.any():
            break
        keep &= ~dropped
    return keep


def k_core(
    inter: Interactions, min_user: int | None, min_item: int | None, max_rounds: int = 100
) -> Interactions:
    """The iterative k-core of `k_core_rows`, compacted so that ids stay dense."""
    return inter.select(k_core_rows(inter, min_user, min_item, max_rounds)).compact()
