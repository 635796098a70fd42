"""Whole users picked by a seeded Python shuffle and a stopping rule on the row count.

The sensitive (spec 3.2.2) and random (spec 3.1) scenarios both take candidate users whole,
in the order a seeded `random.shuffle` gives, until their rows reach T =
int(n_rows * fraction) (`target_rows`) by a stopping rule ("fit" or "reach", see
`sensitive.sensitive_forget_set`).
"""

from __future__ import annotations

import operator
import random

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.forget_set import request_order

STOPPING_RULES = ("fit", "reach")
PRE_SHUFFLE_ORDERS = ("token", "first_seen", "parsed")


def target_rows(n_rows: int, fraction: float) -> int:
    """T = int(n_rows * fraction), the original's forget-set size; ValueError when T = 0."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    target = int(n_rows * fraction)
    if target == 0:
        smallest = 1 / n_rows
        if int(n_rows * smallest) == 0:
            smallest = float(np.nextafter(smallest, 1.0))
        raise ValueError(
            f"fraction {fraction} of {n_rows} rows gives int({n_rows} * {fraction}) = 0 forget rows; "
            f"the smallest fraction that gives one row is {smallest!r}"
        )
    return target


def choose_whole_users(
    inter: Interactions, candidate_rows: np.ndarray, target: int, seed: int, rule: str, pre_shuffle_order: str
) -> np.ndarray:
    """User ids picked by a seeded Python shuffle plus a stopping rule on the row count."""
    users, first_row, counts = np.unique(inter.users[candidate_rows], return_index=True, return_counts=True)
    if pre_shuffle_order == "token":
        order = np.argsort(inter.user_tokens[users].astype(str), kind="stable")
    elif pre_shuffle_order == "first_seen":
        order = np.argsort(first_row, kind="stable")
    elif pre_shuffle_order == "parsed":
        order = request_order(inter.user_tokens[users])
    else:
        raise ValueError(f"pre_shuffle_order {pre_shuffle_order!r} is not one of {PRE_SHUFFLE_ORDERS}")
    shuffled = order[python_shuffle(len(users), seed)]
    n_taken = _n_users_taken(counts[shuffled], min(target, int(counts.sum())), rule)
    if n_taken == 0:
        raise ValueError(
            f"{inter.name}: the selection is empty: the first shuffled user has {counts[shuffled[0]]} "
            f"candidate rows, further from the target of {target} rows than none (rule 'fit'); "
            "use a larger fraction, another seed or rule 'reach'"
        )
    return users[shuffled[:n_taken]]


def python_shuffle(n: int, seed: int) -> np.ndarray:
    """The permutation `random.seed(seed); random.shuffle(list_of_n)` applies (as an index array).

    Uses a private `random.Random`, which draws the same numbers as the seeded module-level
    generator, so the global state is left alone.
    """
    positions = list(range(n))
    random.Random(operator.index(seed)).shuffle(positions)
    return np.asarray(positions, np.int64)


def _n_users_taken(sizes: np.ndarray, target: int, rule: str) -> int:
    """How many of the shuffled users (with these row counts) a stopping rule takes."""
    cumulative = np.cumsum(sizes)
    if rule == "reach":
        return int(np.searchsorted(cumulative, target, side="left")) + 1
    n_within = int(np.searchsorted(cumulative, target, side="right"))  # totals <= T
    if n_within == len(sizes):
        return n_within
    total_within = int(cumulative[n_within - 1]) if n_within else 0
    if total_within == target:
        return n_within
    with_overshoot = int(cumulative[n_within])
    return n_within + int(abs(with_overshoot - target) < abs(total_within - target))
