"""SBR fraud sessions (spec 3.3.1): the fakes' statistics against the data's, their items,
ids and forget set, determinism, errors, and the wiring into the SBR data path.

A small seeded data set (one session per user, known length and gap distributions) checks
the rules tightly; ML-100K checks them on real data, where the heavy-tailed gaps allow
only looser tolerances.
"""

import dataclasses
import math

import numpy as np
import pytest

from erase_jax.data.fraud_sessions import (
    fraud_sessions,
    session_statistics,
    weibull_shape,
)
from erase_jax.data.interactions import Interactions, from_tokens
from erase_jax.data.loading import DataConfig, load_dataset
from erase_jax.data.sequences import SequenceConfig, sessions_by_gap
from erase_jax.tasks.sbr import load_sequence_data
from tests.conftest import require_dataset


def hand_sessions(n_users: int = 120, n_items: int = 80, seed: int = 0) -> Interactions:
    """One session per user "u<k>": 8..24 clicks of Zipf-popular items, gaps of 20..60 s,
    ratings 1..5, an item category and a user feature (to check they are carried)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 25, n_users)
    weights = 1.0 / np.arange(1, n_items + 1)
    items = rng.choice(n_items, lengths.sum(), p=weights / weights.sum())
    gaps = rng.integers(20, 61, lengths.sum()).astype(float)
    users = np.repeat(np.arange(n_users), lengths)
    starts = 10_000 + 5_000 * np.arange(n_users)
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    gaps[first] = 0
    elapsed = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first], lengths)
    inter = from_tokens(
        np.array([f"u{u}" for u in users]), np.array([f"i{i}" for i in items]),
        timestamps=starts[users] + elapsed, ratings=rng.integers(1, 6, len(users)), name="hand",
    )
    return dataclasses.replace(
        inter,
        item_categories={"odd": np.flatnonzero(np.char.endswith(inter.item_tokens.astype(str), "1"))},
        user_features={"age": np.arange(inter.n_users, dtype=np.float64)},
    )


def popular_and_unpopular(inter: Interactions):
    counts = np.bincount(inter.items, minlength=inter.n_items)
    ranked = np.argsort(-counts, kind="stable")[: np.count_nonzero(counts)]
    share = int(0.2 * len(ranked))
    return ranked[:share], ranked[len(ranked) - share:]


def fakes_of(inter: Interactions, poisoned: Interactions) -> Interactions:
    return poisoned.select(np.arange(len(inter), len(poisoned)))


def check_fakes(inter: Interactions, poisoned: Interactions, fs, ratio: float, n_sessions: int) -> None:
    """The rules every poisoning must satisfy, whatever the data."""
    n_fake = math.ceil(ratio * n_sessions / (1 - ratio))
    assert len(fs) == n_fake and fs.scenario == "spam" and fs.fraction == ratio
    # real rows untouched, fakes are new users with fresh tokens
    for field in ("users", "items", "timestamps"):
        assert np.array_equal(getattr(poisoned, field)[: len(inter)], getattr(inter, field))
    assert poisoned.n_users == inter.n_users + n_fake and poisoned.n_items == inter.n_items
    assert np.array_equal(poisoned.user_tokens[: inter.n_users], inter.user_tokens)
    assert not np.isin(poisoned.user_tokens[inter.n_users:], inter.user_tokens).any()
    fake = fakes_of(inter, poisoned)
    assert np.array_equal(np.unique(fake.users), np.sort(fs.users)) and fs.users.min() == inter.n_users
    assert np.array_equal(np.flatnonzero(fs.removal_mask(poisoned)), np.arange(len(inter), len(poisoned)))

    popular, unpopular = popular_and_unpopular(inter)
    assert len(fs.target_items) == 10 and len(np.unique(fs.target_items)) == 10
    assert np.isin(fs.target_items, unpopular).all()
    is_target = np.isin(fake.items, fs.target_items)
    assert np.isin(fake.items[~is_target], popular).all()

    real_max = np.bincount(np.unique(inter.users, return_inverse=True)[1]).max()
    lo, hi = inter.timestamps.min(), inter.timestamps.max()
    for r, user in enumerate(fs.users):
        mine = fake.users == user
        length, times = int(mine.sum()), fake.timestamps[mine]
        assert 4 <= length <= max(4, real_max)
        assert np.all(np.diff(times) >= 1) and lo <= times[0] < hi and times[0] == int(times[0])
        positions = np.flatnonzero(is_target[mine])
        assert len(positions) == (2 if length >= 6 else 1)
        assert np.all(positions >= max(1, int(0.2 * length))) and np.all(positions < max(2, int(0.9 * length)))
        assert np.array_equal(fs.request_items(r), np.unique(fake.items[mine]))


def test_hand_data_fakes_copy_the_session_statistics():
    inter = hand_sessions()
    poisoned, fs = fraud_sessions(inter, ratio=0.5, seed=2)
    check_fakes(inter, poisoned, fs, 0.5, n_sessions=120)
    real = session_statistics(inter, inter.users)
    fake = session_statistics(fakes_of(inter, poisoned), fakes_of(inter, poisoned).users)
    assert fake.n_sessions == 120  # ratio 0.5: as many fakes as real sessions
    # 120 fakes: over 40 seeds the mean length is 0.98 +- 0.04 of 0.8x (clipping at the longest
    # session trims it), the mean gap (1,700 gaps) within ~1 % of 0.7x
    assert fake.mean_length == pytest.approx(0.8 * real.mean_length, rel=0.1)
    assert fake.mean_gap == pytest.approx(0.7 * real.mean_gap, rel=0.04)
    assert fake.std_gap == pytest.approx(real.std_gap, rel=0.15)  # cv = real std / fake mean
    # carried along: categories unchanged, user features padded, ratings as for the CF fakes
    assert poisoned.item_categories is inter.item_categories
    assert np.isnan(poisoned.user_features["age"][inter.n_users:]).all()
    fake_rows = fakes_of(inter, poisoned)
    is_target = np.isin(fake_rows.items, fs.target_items)
    assert np.all(fake_rows.ratings[is_target] == 5) and np.isin(fake_rows.ratings, inter.ratings).all()
    assert poisoned.user_tokens[fs.users][:3].tolist() == ["fraud_001", "fraud_002", "fraud_003"]


def test_deterministic_from_the_seed():
    inter = hand_sessions()
    first, fs_first = fraud_sessions(inter, 0.1, seed=3)
    again, fs_again = fraud_sessions(inter, 0.1, seed=3)
    other, fs_other = fraud_sessions(inter, 0.1, seed=4)
    for field in ("users", "items", "timestamps", "ratings", "user_tokens"):
        assert np.array_equal(getattr(first, field), getattr(again, field))
    assert np.array_equal(fs_first.items, fs_again.items)
    assert np.array_equal(fs_first.target_items, fs_again.target_items)
    assert not np.array_equal(fs_first.target_items, fs_other.target_items)
    assert not np.array_equal(first.timestamps[len(inter):][:10], other.timestamps[len(inter):][:10])


def test_given_sessions_and_gap_sessions():
    inter = hand_sessions()
    # two users per session id: half as many sessions, twice as long
    paired = inter.users // 2
    poisoned, fs = fraud_sessions(inter, 0.1, seed=1, sessions=paired)
    assert len(fs) == math.ceil(0.1 * 60 / 0.9)
    # cut by a 45 s gap: the fakes' gaps are capped, so each stays one session when cut again
    poisoned, fs = fraud_sessions(inter, 0.1, seed=1, session_gap=45)
    n_sessions = len(np.unique(sessions_by_gap(inter.users, inter.timestamps, 45)))
    check_fakes(inter, poisoned, fs, 0.1, n_sessions)
    fake = fakes_of(inter, poisoned)
    assert len(np.unique(sessions_by_gap(fake.users, fake.timestamps, 45))) == len(fs)


def test_weibull_shape_matches_the_coefficient_of_variation():
    def cv(k):
        return math.sqrt(math.gamma(1 + 2 / k) / math.gamma(1 + 1 / k) ** 2 - 1)

    assert weibull_shape(1.0) == pytest.approx(1.0)  # the exponential
    for target in (0.3, 0.7, 2.0, 5.0, 21.5):
        assert cv(weibull_shape(target)) == pytest.approx(target, rel=1e-6)
    # the original's k = 1.2 / cv is far off for heavy tails: cv 21.5 -> k 0.056, whose cv is ~1e5
    assert cv(1.2 / 21.5) > 1e4


def test_bad_input_is_refused():
    inter = hand_sessions()
    for ratio in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="ratio must lie in"):
            fraud_sessions(inter, ratio)
    with pytest.raises(ValueError, match="need timestamps"):
        fraud_sessions(dataclasses.replace(inter, timestamps=None), 0.01)
    with pytest.raises(ValueError, match=r"n_target_items = 10 must lie in \[1, 4\]"):
        fraud_sessions(hand_sessions(n_items=20), 0.01)
    with pytest.raises(ValueError, match="one session id per row"):
        fraud_sessions(inter, 0.01, sessions=np.zeros(3))
    with pytest.raises(ValueError, match="no session has two clicks"):
        fraud_sessions(inter, 0.01, sessions=np.arange(len(inter)))
    with pytest.raises(ValueError, match="spam_attack must be one of"):
        DataConfig(spam_attack="shilling")


@pytest.fixture(scope="module")
def ml100k_data(data_root):
    require_dataset(data_root, "ml-100k")
    return DataConfig(dataset="ml-100k", data_root=str(data_root), min_user_interactions=0, min_item_interactions=0)


def test_ml100k_fakes_copy_the_session_statistics(ml100k_data):
    inter = load_dataset(ml100k_data, seed=2).interactions
    real = session_statistics(inter, sessions_by_gap(inter.users, inter.timestamps, 3600))
    assert real.n_sessions == 2692  # one-hour sessions
    fake_lengths, fake_gaps = [], []
    for seed in (2, 3, 5, 7, 11):  # the benchmark's seeds
        poisoned, fs = fraud_sessions(inter, 0.1, seed=seed, session_gap=3600)
        check_fakes(inter, poisoned, fs, 0.1, n_sessions=2692)
        fake = session_statistics(fakes_of(inter, poisoned), fakes_of(inter, poisoned).users)
        fake_lengths.append(fake.mean_length)
        fake_gaps.append(fake.mean_gap)
    # 5 x 300 fakes. Lengths are heavy-tailed (LogNormal cv 2): one seed's mean length has a
    # 95 % range of 0.82x-1.22x of 0.8x, the five seeds' mean a standard error of ~5 %;
    # the mean gap over ~43,000 gaps (Weibull cv 5) a standard error of ~2.5 %.
    assert np.mean(fake_lengths) == pytest.approx(0.8 * real.mean_length, rel=0.12)
    assert np.mean(fake_gaps) == pytest.approx(0.7 * real.mean_gap, rel=0.08)


def test_sbr_experiment_with_spam_ratio_trains_on_fraud_sessions(ml100k_data):
    config = dataclasses.replace(ml100k_data, spam_ratio=0.01)
    loaded, task = load_sequence_data(config, SequenceConfig(), seed=2)
    fs, inter = loaded.fraud, loaded.interactions
    assert loaded.resolved["spam_attack"] == "fraud_sessions" and fs.scenario == "spam"
    assert len(fs) == math.ceil(0.01 * 943 / 0.99) == 10  # one session per user on ml-100k
    assert inter.user_tokens[fs.users].tolist() == [str(943 + k) for k in range(1, 11)]
    clean = load_dataset(ml100k_data, seed=2).interactions
    check_fakes(clean, inter, fs, 0.01, n_sessions=943)
    # every fake (>= 4 clicks) gives training prefix rows; the next items are its own clicks
    for user in fs.users:
        rows = task.train.sequences == user
        assert rows.sum() >= 1
        assert np.isin(task.train.targets[rows], inter.items[inter.users == user]).all()
    # the CF path with the same config keeps the bandwagon users: every fake rates all targets
    cf = load_dataset(config, seed=2)
    assert cf.resolved["spam_attack"] == "bandwagon_users"
    assert all(np.isin(cf.fraud.target_items, cf.fraud.request_items(r)).all() for r in range(len(cf.fraud)))


def test_diginetica_sessions_get_fraud_sessions(data_root):
    require_dataset(data_root, "diginetica-sample")
    config = DataConfig(dataset="diginetica-sample", data_root=str(data_root), spam_ratio=0.01)
    loaded, task = load_sequence_data(config, SequenceConfig(), seed=2)
    fs, tokens = loaded.fraud, loaded.interactions.user_tokens
    n_real = len(tokens) - len(fs)  # Diginetica's users are its sessions
    assert len(fs) == math.ceil(0.01 * n_real / 0.99)
    assert int(tokens[fs.users[0]]) == tokens[:n_real].astype(int).max() + 1  # session ids go on
    assert all((task.train.sequences == user).sum() >= 1 for user in fs.users)
    split = loaded.split  # the poisoned rows are split too
    assert len(split.train) + len(split.valid) + len(split.test) == len(loaded.interactions)
