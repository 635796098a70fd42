"""The spam scenario with fake CF users (spec 3.3, adapted from fake sessions to user profiles)."""

from __future__ import annotations

import math
import operator

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.fakes import append_fake_users, fake_ratings, popular_and_unpopular_items
from erase_jax.data.scenarios.forget_set import ForgetSet


def spam_users(
    inter: Interactions,
    ratio: float,
    n_target_items: int = 10,
    seed: int = 0,
    targets_per_user: str | int = "all",
    selected_items: int = 0,
) -> tuple[Interactions, ForgetSet]:
    """Bandwagon attack with fake CF users; returns (poisoned data, forget set of the fakes).

    Spec 3.3.1 builds fake SBR sessions; this adapts it to CF user profiles:

    * n_fake = ceil(ratio * n_users / (1 - ratio)), so fakes are a share `ratio` of all users.
    * Targets: `n_target_items` items drawn without replacement from the 20 % least
      interacted items; fillers from the 20 % most interacted. Popularity is the row count;
      ties are ordered by item id (a stable sort; ids are in first-seen order for data read
      from files, like the hash order pandas' `value_counts` starts from).
    * Profile size: a resampled real user's profile size (a CF profile is a whole history,
      not one session, so the session-length model does not apply). Each fake user gets
      `targets_per_user` of the targets ("all" by default) and distinct fillers for the rest
      (no item twice within a user, fillers repeat across users), in random order.
    * `selected_items` > 0: the bandwagon profile of the shilling-attack literature (Mobasher
      et al., "Toward trustworthy recommender systems", ACM TOIT 2007, section 3.2; the
      `spam_attack: bandwagon_selected` of `DataConfig`) instead of ERASE's: every fake holds
      the targets, the same `selected_items` most interacted items ("selected": what everyone
      buys, so the fakes look like genuine users to item-to-item similarity) and random fillers
      from all the other items (not only the popular ones).
    * Timestamps: a uniform start in the data's time range, then gaps resampled from the
      real users' consecutive gaps, at least 1 so that they increase (the original draws
      Weibull gaps; resampling mimics the data without a fitted model).
    * Ratings (when the data has them): the highest real rating (5 on MovieLens) for
      targets, resampled real ratings for fillers.
    * Tokens: max integer token + k when every user token is an integer (like the original's
      session ids), else `fraud_<k>` zero-padded so string order is creation order.

    The poisoned data keeps the original rows first and appends the fake rows (grouped by
    fake user, in time order); vocabularies grow by the fake users only.
    """
    if not 0 < ratio < 1:
        raise ValueError(f"poisoning ratio must lie in (0, 1), got {ratio}")
    rng = np.random.default_rng(operator.index(seed))
    real_users, profile_sizes = np.unique(inter.users, return_counts=True)
    n_fake = math.ceil(ratio * len(real_users) / (1 - ratio))
    popular, unpopular = popular_and_unpopular_items(inter)
    if len(unpopular) < n_target_items:
        raise ValueError(
            f"{inter.name}: the 20 % least interacted items are {len(unpopular)}, fewer than "
            f"n_target_items = {n_target_items}"
        )
    n_targets_each = n_target_items if targets_per_user == "all" else operator.index(targets_per_user)
    if not 1 <= n_targets_each <= n_target_items:
        raise ValueError(f"targets_per_user must be 'all' or in [1, {n_target_items}], got {targets_per_user}")
    if isinstance(selected_items, bool) or not isinstance(selected_items, int) \
            or not 0 <= selected_items <= len(popular):
        raise ValueError(f"selected_items must be an integer in [0, {len(popular)}] (the 20 % most interacted "
                         f"items), got {selected_items!r}")
    targets = rng.choice(unpopular, n_target_items, replace=False).astype(np.int32)
    selected = popular[:selected_items]  # `popular` is ordered by decreasing popularity
    pool = popular
    if selected_items:
        present = np.flatnonzero(np.bincount(inter.items, minlength=inter.n_items))
        pool = np.setdiff1d(present, np.concatenate([targets, selected]))

    sizes = rng.choice(profile_sizes, n_fake)
    n_fillers = np.clip(sizes - n_targets_each - selected_items, 0, len(pool))
    target_choice = np.argsort(rng.random((n_fake, n_target_items)), axis=1)[:, :n_targets_each]
    filler_choice = np.argsort(rng.random((n_fake, len(pool))), axis=1)
    takes_filler = np.arange(len(pool)) < n_fillers[:, None]
    fake_of_row = np.concatenate([np.repeat(np.arange(n_fake), n_targets_each),
                                  np.repeat(np.arange(n_fake), selected_items), np.nonzero(takes_filler)[0]])
    items = np.concatenate([targets[target_choice].ravel(), np.tile(selected, n_fake), pool[filler_choice[takes_filler]]])
    is_target = np.arange(len(items)) < n_fake * n_targets_each
    in_profile_order = np.lexsort((rng.random(len(items)), fake_of_row))
    fake_of_row, items, is_target = fake_of_row[in_profile_order], items[in_profile_order], is_target[in_profile_order]

    timestamps = None
    if inter.timestamps is not None:
        timestamps = _fake_timestamps(inter, fake_of_row, n_fake, rng)
    ratings = fake_ratings(inter, is_target, rng)
    return append_fake_users(inter, n_fake, fake_of_row, items, timestamps, ratings, ratio, seed, targets)


def _fake_timestamps(inter: Interactions, fake_of_row: np.ndarray, n_fake: int, rng) -> np.ndarray:
    """Increasing timestamps per fake user (rows grouped by user): uniform start, resampled gaps."""
    time = inter.timestamps
    by_user_time = np.lexsort((time, inter.users))
    same_user = inter.users[by_user_time][1:] == inter.users[by_user_time][:-1]
    real_gaps = np.diff(time[by_user_time])[same_user]
    if not len(real_gaps):
        real_gaps = np.ones(1)
    low, high = float(time.min()), float(time.max())
    starts = low + rng.random(n_fake) * (high - low)
    if np.all(time == np.round(time)):
        starts = np.floor(starts)
    gaps = np.maximum(rng.choice(real_gaps, len(fake_of_row)), 1.0)
    first_of_user = np.r_[True, fake_of_row[1:] != fake_of_row[:-1]]
    gaps[first_of_user] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first_of_user], np.diff(np.r_[np.flatnonzero(first_of_user), len(gaps)]))
    return starts[fake_of_row] + elapsed
