"""Train / valid / test splits of an `Interactions`, cut per user by ratio.

All three splitters share RecBole's per-user ratio rule (`ratio_counts`,
data-and-evaluation spec section 1.2) and differ only in the order in which a user's rows are
cut: by time (`chronological_split`, the original's CF setting "TO + RS"), at random
(`random_split`) or, for data that arrives already split, only inside the given train rows
(`given_split`). Everything is vectorised; the only Python loop runs over the distinct
per-user row counts, of which there are few.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from erase_jax.data.interactions import Interactions

TRAIN, VALID, TEST = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Split:
    """Row indices (int64) into one `Interactions`; each part is ordered by user, then time."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray


def ratio_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """How many of a user's `n` rows each part gets: RecBole's `_calcu_split_ids`, exactly.

    Every later part gets floor(ratio * n); the first part takes the rest. A later part whose
    share ratio * n lies in (0, 1) still receives one row (the last part first), but only while
    the first part holds at least two. Ratios are normalised to sum 1 first, as RecBole's
    `split_by_ratio` does. Examples for (0.8, 0.1, 0.1): n=5 -> 3/1/1, n=15 -> 13/1/1,
    n=25 -> 21/2/2, n=2 -> 1/0/1, n=1 -> 1/0/0.
    """
    total = sum(ratios)
    ratios = [r / total for r in ratios]
    counts = [int(r * n) for r in ratios]
    counts[0] = n - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * n < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def chronological_split(inter: Interactions, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> Split:
    """The original's CF split "order TO, split RS" (spec section 1.2): per user by time.

    RecBole sorts all rows stably by timestamp, groups them by user and cuts each user's
    chronological sequence with `ratio_counts`: the earliest rows train, the latest test.
    Rows with equal timestamps keep their file order. This is a per-user temporal split, not
    a global time cut.
    """
    if inter.timestamps is None:
        raise ValueError(
            f"{inter.name}: a chronological split needs timestamps; use split 'random' "
            "(or 'given' for data that comes already split)"
        )
    _check_three_ratios(ratios)
    order = np.lexsort((inter.timestamps, inter.users))
    part = _cut_each_user(inter.users, order, ratios)
    return _split_from_parts(inter, part)


def random_split(inter: Interactions, ratios: Sequence[float], seed: int) -> Split:
    """Per user, a uniformly random order cut with `ratio_counts` (RecBole's "RO + RS").

    Deliberate difference: RecBole shuffles with torch's generator; this uses a seeded numpy
    `Generator`, so the same seed gives the same split here, not the original's split.
    """
    _check_three_ratios(ratios)
    shuffle_key = np.random.default_rng(seed).random(len(inter))
    order = np.lexsort((shuffle_key, inter.users))
    part = _cut_each_user(inter.users, order, ratios)
    return _split_from_parts(inter, part)


def given_split(inter: Interactions, is_test: np.ndarray, valid_ratio: float, seed: int) -> Split:
    """For data that arrives as train and test: `is_test` rows are the test part.

    A validation part is carved from each user's train rows at random with `ratio_counts`
    applied to (1 - valid_ratio, valid_ratio); valid_ratio = 0 gives an empty valid part.
    """
    is_test = np.asarray(is_test, bool)
    if is_test.shape != (len(inter),):
        raise ValueError(f"{inter.name}: is_test has shape {is_test.shape}, expected ({len(inter)},)")
    if not 0 <= valid_ratio < 1:
        raise ValueError(f"valid_ratio must lie in [0, 1), got {valid_ratio}")
    train_rows = np.flatnonzero(~is_test)
    shuffle_key = np.random.default_rng(seed).random(len(train_rows))
    order = train_rows[np.lexsort((shuffle_key, inter.users[train_rows]))]
    train_or_valid = _cut_each_user(inter.users, order, (1 - valid_ratio, valid_ratio))
    part = np.full(len(inter), TEST, np.int8)
    part[train_rows] = train_or_valid[train_rows]
    return _split_from_parts(inter, part)


def _check_three_ratios(ratios: Sequence[float]) -> None:
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ValueError(f"split ratios must be three non-negative numbers (train, valid, test), got {ratios}")


def _cut_each_user(users: np.ndarray, order: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """Part label (TRAIN/VALID/TEST) per row for the rows in `order`, which is grouped by user.

    Rows not in `order` get -1. The k-th row of a user in `order` falls into the first part
    whose cumulative `ratio_counts` exceeds k.
    """
    grouped_users = users[order]
    n_rows = len(order)
    starts = np.flatnonzero(np.r_[True, grouped_users[1:] != grouped_users[:-1]])
    group_sizes = np.diff(np.r_[starts, n_rows])
    rank_in_user = np.arange(n_rows) - np.repeat(starts, group_sizes)

    distinct_sizes, size_index = np.unique(group_sizes, return_inverse=True)
    bounds_by_size = np.array(
        [np.cumsum(ratio_counts(int(n), ratios)) for n in distinct_sizes], np.int64
    ).reshape(len(distinct_sizes), len(ratios))
    row_bounds = np.repeat(bounds_by_size[size_index], group_sizes, axis=0)

    part = np.full(len(users), -1, np.int8)
    part[order] = (rank_in_user[:, None] >= row_bounds).sum(axis=1)
    return part


def _split_from_parts(inter: Interactions, part: np.ndarray) -> Split:
    """Rows of each part, ordered by user, then time (file order when there is no time)."""
    time = inter.timestamps if inter.timestamps is not None else np.arange(len(inter))
    by_user_then_time = np.lexsort((time, inter.users))
    labels = part[by_user_then_time]
    return Split(
        *(by_user_then_time[labels == p].astype(np.int64) for p in (TRAIN, VALID, TEST))
    )
