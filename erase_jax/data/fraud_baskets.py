"""NBR fraud baskets: the bandwagon attack of ERASE's spam scenario for basket data.

Next-basket spec 4.4 (the original's `dataset/create_fraud_baskets_nbr.py`, run with ratio
0.01, 10 targets, attack "bandwagon", target strategy "unpopular"). Fake users buy baskets of
popular "filler" items, to look like real shoppers, each basket with one or two of the
unpopular target items the attack promotes. Their basket counts and sizes follow the data's
own. Each fake user is one request of the spam scenario that forgets all of the user's items,
and a retrain without the first k requests really drops those users (the original's NBR
retrain kept every fraud user, spec 5.10).
"""

from __future__ import annotations

import math
import operator

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.fakes import append_fake_users, fake_ratings, popular_and_unpopular_items
from erase_jax.data.scenarios.forget_set import ForgetSet

MIN_FAKE_BASKETS = 4
MIN_FAKE_BASKET_SIZE = 2


def basket_statistics(inter: Interactions) -> dict[str, float]:
    """Mean baskets per user, and mean / std / max basket size, over every user of the data."""
    if inter.sessions is None:
        raise ValueError(f"{inter.name}: fraud baskets need a basket id per row (Interactions.sessions)")
    _, sizes = np.unique(inter.sessions, return_counts=True)
    baskets_per_user = np.bincount(inter.users[np.unique(inter.sessions, return_index=True)[1]], minlength=inter.n_users)
    baskets_per_user = baskets_per_user[baskets_per_user > 0]
    return {
        "n_users": int(len(baskets_per_user)),
        "mean_baskets": float(baskets_per_user.mean()),
        "mean_size": float(sizes.mean()),
        "std_size": float(sizes.std()),
        "max_size": int(sizes.max()),
    }


def fraud_baskets(inter: Interactions, ratio: float = 0.01, n_target_items: int = 10, seed: int = 0) -> tuple[Interactions, ForgetSet]:
    """Appends fake basket users; returns (poisoned data, their spam forget set).

    Spec 4.4, with U the data's users:

    * n_fake = ceil(ratio * U / (1 - ratio)).
    * Targets: `n_target_items` drawn without replacement from the 20 % least bought items;
      fillers from the 20 % most bought (`scenarios.fakes` popularity order: row counts, ties
      by item id; the original breaks ties by first appearance).
    * Baskets per fake user: A = max(4, int(mean baskets per user)); clip(max(4,
      int(Normal(0.8 A, 0.2 A))), 4, int(1.5 A)).
    * Basket size: clip(max(2, int(Normal(0.9 mean size, std size))), 2, max(2, int(0.8 max size)));
      2 targets (distinct) if size >= 5 else 1; the rest fillers.
    * Times: a fake user's baskets take consecutive positions after a uniform start within the
      data's clock range (the data's timestamps are basket positions or days).

    Deliberate differences: fillers are drawn WITHOUT replacement inside a basket (a basket is
    a set here; the original drew with replacement, so 4 of its 643 Ta-Feng fake baskets
    repeated an item, which DNNTSP then de-duplicated and Sets2Sets counted twice, spec 5.19);
    the upper size clip is at least 2 (the original's int(0.8 max) could fall below its
    lower clip on data with tiny baskets). Deterministic given `seed` (a numpy Generator).
    """
    if not 0 < ratio < 1:
        raise ValueError(f"poisoning ratio must lie in (0, 1), got {ratio}")
    stats = basket_statistics(inter)
    popular, unpopular = popular_and_unpopular_items(inter)
    if not 1 <= n_target_items <= len(unpopular):
        raise ValueError(
            f"{inter.name}: n_target_items = {n_target_items} must lie in [1, {len(unpopular)}], the number "
            "of items among the 20 % least bought"
        )
    rng = np.random.default_rng(operator.index(seed))
    n_fake = math.ceil(ratio * stats["n_users"] / (1 - ratio))
    targets = rng.choice(unpopular, n_target_items, replace=False).astype(np.int32)

    a = max(MIN_FAKE_BASKETS, int(stats["mean_baskets"]))
    n_baskets = np.clip(np.maximum(MIN_FAKE_BASKETS, rng.normal(0.8 * a, 0.2 * a, n_fake).astype(int)),
                        MIN_FAKE_BASKETS, max(MIN_FAKE_BASKETS, int(1.5 * a)))
    n_total = int(n_baskets.sum())
    largest = max(MIN_FAKE_BASKET_SIZE, int(0.8 * stats["max_size"]))
    sizes = np.clip(np.maximum(MIN_FAKE_BASKET_SIZE, rng.normal(0.9 * stats["mean_size"], stats["std_size"], n_total).astype(int)),
                    MIN_FAKE_BASKET_SIZE, largest)
    sizes = np.minimum(sizes, len(popular) + 2)  # fillers are distinct within a basket
    items, is_target = [], []
    for size in sizes:
        n_targets = 2 if size >= 5 else 1
        chosen = rng.choice(targets, n_targets, replace=False)
        fillers = rng.choice(np.setdiff1d(popular, chosen), size - n_targets, replace=False)
        items.append(np.r_[chosen, fillers])
        is_target.append(np.r_[np.ones(n_targets, bool), np.zeros(size - n_targets, bool)])
    items, is_target = np.concatenate(items).astype(np.int32), np.concatenate(is_target)

    basket_of_row = np.repeat(np.arange(n_total), sizes)
    fake_of_basket = np.repeat(np.arange(n_fake), n_baskets)
    position = np.arange(n_total) - np.repeat(np.r_[0, np.cumsum(n_baskets)[:-1]], n_baskets)
    times = _fake_times(inter, n_baskets, rng)[fake_of_basket] + position
    return append_fake_users(
        inter, n_fake, fake_of_basket[basket_of_row], items, times[basket_of_row].astype(np.float64),
        fake_ratings(inter, is_target, rng), ratio, seed, targets, sessions=basket_of_row,
    )


def _fake_times(inter: Interactions, n_baskets: np.ndarray, rng) -> np.ndarray:
    """A start time per fake user, uniform in [min, max - baskets] of the data's clock."""
    if inter.timestamps is None or not len(inter):
        return np.zeros(len(n_baskets))
    first, last = math.floor(inter.timestamps.min()), math.ceil(inter.timestamps.max())
    return rng.integers(first, np.maximum(last - n_baskets, first) + 1).astype(np.float64)
