"""The sensitive-category scenario (spec 3.2.2): users forget their rows of a sensitive category."""

from __future__ import annotations

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.forget_set import ForgetSet, forget_set_from_pairs
from erase_jax.data.scenarios.selection import STOPPING_RULES, choose_whole_users, target_rows


def sensitive_forget_set(
    inter: Interactions,
    sensitive: str | np.ndarray,
    fraction: float,
    seed: int,
    rating_threshold: float | None = None,
    rule: str = "fit",
    pre_shuffle_order: str = "token",
    min_sensitive_rows: int = 0,
    min_other_rows: int = 0,
) -> ForgetSet:
    """The sensitive-category scenario, user-centric (spec 3.2.2).

    `sensitive` is a category name of `inter.item_categories` or an array of item ids.
    Candidates are the rows with a sensitive item (and rating >= `rating_threshold` if
    given); T = int(len(inter) * fraction), capped at the number of candidate rows. Candidate
    users are put in `pre_shuffle_order`, shuffled with Python's `random` seeded with `seed`,
    and taken whole (all their candidate rows) with a stopping rule:

    * "fit" (grocery / MovieLens / Goodreads script, the CF default): take users while the
      total stays <= T; the first user that would overshoot is taken only if that brings the
      total strictly closer to T; then stop.
    * "reach" (books / 30music / nowp scripts): take users until the total is >= T.

    `pre_shuffle_order` decides which list Python's shuffle permutes, hence which users a
    seed picks:

    * "token" (default): ascending token text. This reproduces the reference forget set
      quoted in the unlearning-algorithms spec (ML-100K, Horror, rating >= 3.5, f = 0.003,
      seed 2: 300 rows from 98 users); the other orders give different users.
    * "first_seen": order of each user's first candidate row in `inter` (the dict insertion
      order of the published grocery script, which reads the file with `csv`).
    * "parsed": `request_order` (numeric for integer tokens, like a pandas groupby).

    `min_sensitive_rows` / `min_other_rows`: only users with at least this many rows of a
    sensitive item, and at least this many other rows, are candidates (the 30music script's
    eligibility filter, 3 and 3; the other scripts have none).

    To reproduce the original, pass the data as read from `{ds}.inter`, before any
    filtering: the original's T counts all rows of that file.

    Deliberate differences: the original writes an empty file when nothing is selected;
    here T = 0, an empty candidate set or an empty selection raise ValueError.
    """
    if rule not in STOPPING_RULES:
        raise ValueError(f"rule {rule!r} is not one of {STOPPING_RULES}")
    category, sensitive_ids = sensitive_items(inter, sensitive)
    is_candidate = np.isin(inter.items, sensitive_ids)
    if min_sensitive_rows or min_other_rows:
        sensitive_rows = np.bincount(inter.users[is_candidate], minlength=inter.n_users)
        other_rows = np.bincount(inter.users, minlength=inter.n_users) - sensitive_rows
        is_candidate &= ((sensitive_rows >= min_sensitive_rows) & (other_rows >= min_other_rows))[inter.users]
    if rating_threshold is not None:
        if inter.ratings is None:
            raise ValueError(f"{inter.name}: rating_threshold {rating_threshold} given but the data has no ratings")
        is_candidate &= inter.ratings >= np.asarray(rating_threshold, inter.ratings.dtype)
    candidate_rows = np.flatnonzero(is_candidate)
    if not len(candidate_rows):
        threshold = "" if rating_threshold is None else f" with rating >= {rating_threshold}"
        eligible = (f" among users with >= {min_sensitive_rows} sensitive and >= {min_other_rows} other rows"
                    if min_sensitive_rows or min_other_rows else "")
        raise ValueError(f"{inter.name}: no row has a sensitive item of {category or 'the given items'}{threshold}{eligible}")
    target = target_rows(len(inter), fraction)
    chosen = choose_whole_users(inter, candidate_rows, target, seed, rule, pre_shuffle_order)
    rows = candidate_rows[np.isin(inter.users[candidate_rows], chosen)]
    return forget_set_from_pairs(
        inter, inter.users[rows], inter.items[rows],
        scenario="sensitive", category=category, fraction=fraction, seed=seed,
    )


def sensitive_items(inter: Interactions, sensitive) -> tuple[str | None, np.ndarray]:
    if isinstance(sensitive, str):
        items = inter.category_items(sensitive)  # KeyError listing the known categories
        if not len(items):
            raise ValueError(f"{inter.name}: category {sensitive!r} has no items")
        return sensitive, items
    items = np.unique(np.asarray(sensitive, np.int64))
    if not len(items):
        raise ValueError("no sensitive items given")
    if items[0] < 0 or items[-1] >= inter.n_items:
        raise ValueError(f"sensitive item ids must lie in [0, {inter.n_items})")
    return None, items
