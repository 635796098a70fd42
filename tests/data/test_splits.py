"""Per-user ratio splits: RecBole's counts rule and exact row membership on tiny data."""

import numpy as np
import pytest

from erase_jax.data import (
    chronological_split,
    from_tokens,
    given_split,
    random_split,
    ratio_counts,
    synthetic_interactions,
)


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, [0, 0, 0]),
        (1, [1, 0, 0]),
        (2, [1, 0, 1]),
        (3, [1, 1, 1]),
        (4, [2, 1, 1]),
        (5, [3, 1, 1]),
        (10, [8, 1, 1]),
        (15, [13, 1, 1]),
        (25, [21, 2, 2]),
    ],
)
def test_ratio_counts_follows_recbole_rounding(n, expected):
    assert ratio_counts(n, (0.8, 0.1, 0.1)) == expected


def test_ratio_counts_two_parts():
    assert ratio_counts(1, (0.9, 0.1)) == [1, 0]
    assert ratio_counts(2, (0.9, 0.1)) == [1, 1]
    assert ratio_counts(20, (0.9, 0.1)) == [18, 2]
    assert ratio_counts(7, (1.0, 0.0)) == [7, 0]


def tied_interactions():
    """Rows (user, time) in file order; users get ids a=0, b=1, c=2."""
    rows = [("a", 20), ("b", 10), ("a", 10), ("a", 20), ("b", 10), ("a", 20), ("a", 40), ("b", 5), ("c", 1)]
    users = [u for u, _ in rows]
    return from_tokens(users, [f"i{k}" for k in range(len(rows))], timestamps=[t for _, t in rows])


def test_chronological_split_exact_rows_with_timestamp_ties():
    split = chronological_split(tied_interactions())
    # a: rows 2(t10) 0(t20) 3(t20) 5(t20) 6(t40) -> 3/1/1; ties keep file order, so row 5 is valid.
    # b: rows 7(t5) 1(t10) 4(t10) -> 1/1/1; c: row 8 -> 1/0/0.
    np.testing.assert_array_equal(split.train, [2, 0, 3, 7, 8])
    np.testing.assert_array_equal(split.valid, [5, 1])
    np.testing.assert_array_equal(split.test, [6, 4])
    assert split.train.dtype == np.int64


def test_chronological_split_needs_timestamps():
    with pytest.raises(ValueError, match="needs timestamps"):
        chronological_split(from_tokens(["a"], ["x"]))


def test_split_rejects_bad_ratios():
    with pytest.raises(ValueError, match="three non-negative"):
        chronological_split(tied_interactions(), (0.9, 0.1))


def per_user_counts(inter, rows):
    return np.bincount(inter.users[rows], minlength=inter.n_users)


def test_random_split_is_seeded_and_follows_counts_rule():
    inter = synthetic_interactions(n_users=200, n_items=100, avg_interactions=12, seed=3)
    split = random_split(inter, (0.8, 0.1, 0.1), seed=7)
    again = random_split(inter, (0.8, 0.1, 0.1), seed=7)
    other = random_split(inter, (0.8, 0.1, 0.1), seed=8)
    for part in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(split, part), getattr(again, part))
    assert not np.array_equal(split.test, other.test)
    all_rows = np.concatenate([split.train, split.valid, split.test])
    np.testing.assert_array_equal(np.sort(all_rows), np.arange(len(inter)))
    n_per_user = np.bincount(inter.users)
    expected = np.array([ratio_counts(n, (0.8, 0.1, 0.1)) for n in n_per_user])
    for k, part in enumerate((split.train, split.valid, split.test)):
        np.testing.assert_array_equal(per_user_counts(inter, part), expected[:, k])
        key = inter.users[part] * 1e12 + inter.timestamps[part]
        assert np.all(np.diff(key) >= 0), "rows ordered by user, then time"


def test_given_split_keeps_test_and_carves_valid_from_train():
    users = ["a"] * 6 + ["b"] * 3 + ["a", "b"]
    inter = from_tokens(users, [str(k) for k in range(len(users))])
    is_test = np.zeros(len(users), bool)
    is_test[-2:] = True
    split = given_split(inter, is_test, valid_ratio=0.2, seed=0)
    np.testing.assert_array_equal(split.test, [9, 10])
    # a: 6 train rows -> ratio_counts(6, (0.8, 0.2)) = [5, 1]; b: 3 -> [2, 1].
    np.testing.assert_array_equal(per_user_counts(inter, split.valid), [1, 1])
    assert set(split.valid) | set(split.train) == set(range(9))
    assert np.all(np.diff(split.train[inter.users[split.train] == 0]) > 0), "file order within a user"

    no_valid = given_split(inter, is_test, valid_ratio=0.0, seed=0)
    assert len(no_valid.valid) == 0
    np.testing.assert_array_equal(no_valid.train, np.arange(9)[np.argsort(inter.users[:9], kind="stable")])
    with pytest.raises(ValueError, match="valid_ratio"):
        given_split(inter, is_test, valid_ratio=1.0, seed=0)
