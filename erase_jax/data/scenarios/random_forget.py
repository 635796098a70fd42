"""The random scenario (spec 3.1): a random forget set of about a given share of the rows."""

from __future__ import annotations

import operator

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.forget_set import ForgetSet, forget_set_from_pairs
from erase_jax.data.scenarios.selection import choose_whole_users, target_rows


def random_forget_set(
    inter: Interactions, fraction: float, seed: int, unit: str = "users", pre_shuffle_order: str = "token"
) -> ForgetSet:
    """A random forget set of about T = int(fraction * len(inter)) rows (spec 3.1).

    The original has no random generator for the benchmark data sets (spec 3.1), so this is a
    design choice:

    * unit "users" (default): whole users, all their rows, taken in a seeded Python shuffle
      with the "fit" stopping rule: the sensitive scenario's rule with every row a candidate,
      so random and sensitive forget sets of the same size are built the same way.
    * unit "interactions": T rows uniformly without replacement, exactly as the legacy rsc15
      script's `DataFrame.sample(n=T, random_state=seed)`, grouped by user into requests.
      A request then removes every row of its user with a drawn item, so repeated
      (user, item) rows are removed together.
    """
    target = target_rows(len(inter), fraction)
    if unit == "users":
        all_rows = np.arange(len(inter))
        chosen = choose_whole_users(inter, all_rows, target, seed, "fit", pre_shuffle_order)
        rows = np.flatnonzero(np.isin(inter.users, chosen))
    elif unit == "interactions":
        rows = np.random.RandomState(operator.index(seed)).choice(len(inter), target, replace=False)
    else:
        raise ValueError(f"unit {unit!r} is not 'users' or 'interactions'")
    return forget_set_from_pairs(
        inter, inter.users[rows], inter.items[rows], scenario="random", category=None, fraction=fraction, seed=seed
    )
