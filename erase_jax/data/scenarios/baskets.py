"""The next-basket task's scenario rules: who may forget what in basket data (next-basket spec 4.2).

Basket data differ from interaction data in one way that matters here: a user is trained on
only if the user has at least `min_baskets` baskets (the split needs train, valid and test
targets), so forgetting a user with fewer changes nothing. Both rules therefore count and
draw among those users:

* sensitive: T = int(fraction * occurrences of all users with >= min_baskets baskets);
  candidates are the users with a sensitive item who still have >= min_baskets non-empty
  baskets once the category is removed (the original's `create_nbr_unlearning_sets_user_ids.py`);
  users are shuffled with Python's `random` seeded with `seed` (in ascending token order) and
  taken until their sensitive occurrences reach T (the "reach" rule). A request forgets the
  category's items from all of the user's baskets, history and targets alike.
* random: whole users among those with >= min_baskets baskets, until their occurrences fit T
  (`random_forget_set`'s "fit" rule); a request forgets every item of the user.

The spam scenario's requests are the fraud users themselves (`erase_jax.data.fraud_baskets`).
"""

from __future__ import annotations

import numpy as np

from erase_jax.data.basket_split import basket_positions
from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.forget_set import ForgetSet, forget_set_from_pairs
from erase_jax.data.scenarios.selection import choose_whole_users, target_rows
from erase_jax.data.scenarios.sensitive import sensitive_items


def trained_users(inter: Interactions, min_baskets: int) -> np.ndarray:
    """bool [n_users]: the users with at least `min_baskets` baskets."""
    return basket_positions(inter)[1] >= min_baskets


def sensitive_basket_forget_set(
    inter: Interactions, sensitive: str | np.ndarray, fraction: float, seed: int, min_baskets: int = 4
) -> ForgetSet:
    """The sensitive scenario on basket data (module doc)."""
    category, items = sensitive_items(inter, sensitive)
    counted = trained_users(inter, min_baskets)
    is_sensitive = np.isin(inter.items, items)
    remaining = trained_users(inter.select(~is_sensitive), min_baskets)  # baskets left without the category
    candidate_rows = np.flatnonzero(is_sensitive & remaining[inter.users])
    if not len(candidate_rows):
        raise ValueError(f"{inter.name}: no user with >= {min_baskets} baskets after removing "
                         f"{category or 'the given items'} bought any of it")
    target = target_rows(int(counted[inter.users].sum()), fraction)
    chosen = choose_whole_users(inter, candidate_rows, target, seed, "reach", "token")
    rows = candidate_rows[np.isin(inter.users[candidate_rows], chosen)]
    return forget_set_from_pairs(inter, inter.users[rows], inter.items[rows], scenario="sensitive",
                                 category=category, fraction=fraction, seed=seed)


def random_basket_forget_set(inter: Interactions, fraction: float, seed: int, min_baskets: int = 4) -> ForgetSet:
    """The random scenario on basket data: whole users (module doc)."""
    counted_rows = np.flatnonzero(trained_users(inter, min_baskets)[inter.users])
    if not len(counted_rows):
        raise ValueError(f"{inter.name}: no user has >= {min_baskets} baskets")
    target = target_rows(len(counted_rows), fraction)
    chosen = choose_whole_users(inter, counted_rows, target, seed, "fit", "token")
    rows = counted_rows[np.isin(inter.users[counted_rows], chosen)]
    return forget_set_from_pairs(inter, inter.users[rows], inter.items[rows], scenario="random",
                                 category=None, fraction=fraction, seed=seed)
