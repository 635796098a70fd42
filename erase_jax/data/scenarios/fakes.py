"""Fake users appended to the data, shared by the CF spam scenario (`spam.spam_users`) and the
SBR fraud sessions (`erase_jax.data.fraud_sessions`): the popularity pools that targets and
fillers come from, the fakes' ratings, and appending them with their spam forget set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.forget_set import ForgetSet, forget_set_from_pairs, parse_integers

FAKE_USER_PREFIX = "fraud_"
POPULARITY_SHARE = 0.2  # spam targets from the least, fillers from the most popular 20 %


def popular_and_unpopular_items(inter: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """The 20 % most and the 20 % least interacted items (of those with any row)."""
    counts = np.bincount(inter.items, minlength=inter.n_items)
    present = np.flatnonzero(counts)
    by_popularity = present[np.argsort(-counts[present], kind="stable")]
    n_share = int(len(by_popularity) * POPULARITY_SHARE)
    return by_popularity[:n_share], by_popularity[len(by_popularity) - n_share :]


def fake_ratings(inter: Interactions, is_target: np.ndarray, rng) -> np.ndarray | None:
    """Fake rows' ratings: the highest real rating on targets, resampled real ratings on fillers."""
    if inter.ratings is None:
        return None
    filler_ratings = rng.choice(inter.ratings, len(is_target))
    return np.where(is_target, inter.ratings.max(), filler_ratings).astype(inter.ratings.dtype)


def append_fake_users(
    inter: Interactions,
    n_fake: int,
    fake_of_row: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray | None,
    ratings: np.ndarray | None,
    ratio: float,
    seed: int,
    target_items: np.ndarray,
    sessions: np.ndarray | None = None,
) -> tuple[Interactions, ForgetSet]:
    """The data with `n_fake` new users appended, and the spam forget set that removes them.

    Fake row k belongs to new user `fake_of_row[k]` (0-based among the fakes) and clicks
    `items[k]`; `timestamps` and `ratings` are the fake rows' columns (None when the data has
    none); `sessions` numbers the fake rows' sessions from 0 (None: one session per fake user;
    a fake basket user has several). Real rows, ids and vocabularies are unchanged; fake users get fresh tokens
    (`_fake_user_tokens`) and padded user features. Each fake user is one request that
    forgets all of its items.
    """
    fake_users = inter.n_users + np.asarray(fake_of_row)
    poisoned = dataclasses.replace(
        inter,
        users=np.concatenate([inter.users, fake_users]).astype(np.int32),
        items=np.concatenate([inter.items, items]).astype(np.int32),
        timestamps=None if timestamps is None else np.concatenate([inter.timestamps, timestamps]),
        ratings=None if ratings is None else np.concatenate([inter.ratings, ratings]),
        # each fake user is one new session unless `sessions` says otherwise
        sessions=None if inter.sessions is None else np.concatenate(
            [inter.sessions, inter.sessions.max(initial=-1) + 1
             + np.asarray(fake_of_row if sessions is None else sessions, np.int64)]),
        user_tokens=np.concatenate([inter.user_tokens, _fake_user_tokens(inter.user_tokens, n_fake)]),
        user_features=_extend_user_features(inter.user_features, n_fake),
    )
    forget_set = forget_set_from_pairs(
        poisoned, fake_users, items, scenario="spam", category=None, fraction=ratio, seed=seed,
        target_items=target_items,
    )
    return poisoned, forget_set


def _fake_user_tokens(user_tokens: np.ndarray, n_fake: int) -> np.ndarray:
    tokens = np.asarray(user_tokens).astype(str)
    numbers = parse_integers(tokens)
    if numbers is not None and len(numbers):
        start = int(numbers.max())
        fake = np.array([str(start + k) for k in range(1, n_fake + 1)])
    else:
        width = len(str(n_fake))
        fake = np.array([f"{FAKE_USER_PREFIX}{k:0{width}d}" for k in range(1, n_fake + 1)])
    clash = np.intersect1d(fake, tokens)
    if len(clash):
        raise ValueError(f"fake user token {clash[0]!r} already names a real user")
    return fake


def _extend_user_features(features: Mapping[str, np.ndarray] | None, n_new: int):
    """Per-user feature arrays padded for new users: "" (text), NaN (numbers), None (other)."""
    if features is None:
        return None
    extended = {}
    for name, values in features.items():
        values = np.asarray(values)
        if values.dtype.kind in "US":
            pad = np.full(n_new, "", values.dtype)
        elif values.dtype.kind == "f":
            pad = np.full(n_new, np.nan, values.dtype)
        else:
            values, pad = values.astype(object), np.full(n_new, None, object)
        extended[name] = np.concatenate([values, pad])
    return extended
