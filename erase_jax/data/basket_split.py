"""Which rows of a basket table each phase reads: the row-level view of the next-basket split.

The next-basket examples (`erase_jax.data.baskets.build_basket_examples`) are built per user
from whole baskets; this is the same split as row indices (`Split`), which the shared code
uses to count training rows (the retain budget's cap) and to know whether a validation set
exists: with n baskets (n >= min_baskets), the rows of baskets 0..n-3 are train (the train
example's history and target), basket n-2 valid, basket n-1 test (next-basket spec 1.3).
Rows of users with fewer baskets belong to no phase.
"""

from __future__ import annotations

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.splits import Split


def basket_positions(inter: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """(position of each row's basket in its user's basket order, baskets per user [n_users]).

    Baskets are ordered by (timestamp, basket id) within a user; rows of one basket share
    a position.
    """
    if inter.sessions is None:
        raise ValueError(f"{inter.name}: a basket table needs a basket id per row (Interactions.sessions)")
    times = np.zeros(len(inter)) if inter.timestamps is None else inter.timestamps
    order = np.lexsort((inter.sessions, times, inter.users))
    users, sessions = inter.users[order], inter.sessions[order]
    new_basket = np.r_[True, (users[1:] != users[:-1]) | (sessions[1:] != sessions[:-1])] if len(order) else np.zeros(0, bool)
    new_user = np.r_[True, users[1:] != users[:-1]] if len(order) else np.zeros(0, bool)
    basket_number = np.cumsum(new_basket) - 1  # global running basket index in this order
    first_of_user = np.maximum.accumulate(np.where(new_user, basket_number, 0))
    position = np.empty(len(inter), np.int64)
    position[order] = basket_number - first_of_user
    per_user = np.bincount(users[new_basket], minlength=inter.n_users) if len(order) else np.zeros(inter.n_users, np.int64)
    return position, per_user


def basket_split(inter: Interactions, min_baskets: int = 4) -> Split:
    """Row indices of the train, valid and test phases (module doc)."""
    position, per_user = basket_positions(inter)
    n = per_user[inter.users]
    kept = n >= min_baskets
    train = np.flatnonzero(kept & (position <= n - 3))
    valid = np.flatnonzero(kept & (position == n - 2))
    test = np.flatnonzero(kept & (position == n - 1))
    return Split(train.astype(np.int64), valid.astype(np.int64), test.astype(np.int64))
