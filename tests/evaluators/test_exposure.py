"""Exposure and forget-fidelity measures against hand-worked and numpy-computed values."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.evaluators.agreement import sample_other_users, topk_agreement
from erase_jax.evaluators.exposure import sensitive_exposure, spam_exposure, target_ranks_and_probabilities
from erase_jax.evaluators.forgetting import forget_fidelity, forgotten_rank_summary, item_ranks
from erase_jax.evaluators.scoring import model_scores_fn


class TableScores:
    """Stand-in model: scores of users are rows of a fixed table (hashable by identity)."""

    def __init__(self, table):
        self.table = np.asarray(table, np.float32)

    def __call__(self, users):
        return jnp.asarray(self.table)[users]


@dataclasses.dataclass(frozen=True)
class TableModel:
    """A recommender whose params are its score table, to check `model_scores_fn`."""

    def scores(self, params, context, query):
        return params["table"][query["users"]] + context["offset"]


def numpy_ranks(table, users, items):
    """1 + number of items scored strictly higher, per (user, item) pair."""
    rows = table[users]
    return 1 + (rows > rows[np.arange(len(users)), items][:, None]).sum(axis=1)


def numpy_softmax(rows):
    shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# sensitive exposure ----------------------------------------------------------------------

TOP = np.array([[1, 5, 2, 7], [3, 4, 5, 6], [9, 2, 1, 8]])
SENSITIVE = np.array([1, 2, 9])


def test_sensitive_exposure_by_hand():
    got = sensitive_exposure(TOP, SENSITIVE, ks=(2, 4))
    # Sensitive items per user: top-2 -> 1, 0, 2; top-4 -> 2, 0, 3. Denominator: 3 scored users.
    assert got == pytest.approx({
        "total_users": 3,
        "scored_users": 3,
        "users_with_sensitive@2": 2,
        "total_sensitive@2": 3,
        "pct_users_with_sensitive@2": 100 * 2 / 3,
        "avg_sensitive_per_user@2": 3 / 3,
        "avg_sensitive_per_affected_user@2": 3 / 2,
        "min_sensitive_per_user@2": 0,
        "max_sensitive_per_user@2": 2,
        "users_with_sensitive@4": 2,
        "total_sensitive@4": 5,
        "pct_users_with_sensitive@4": 100 * 2 / 3,
        "avg_sensitive_per_user@4": 5 / 3,
        "avg_sensitive_per_affected_user@4": 5 / 2,
        "min_sensitive_per_user@4": 0,
        "max_sensitive_per_user@4": 3,
    })


def test_sensitive_exposure_with_the_original_denominator():
    # Five users listed, two of them skipped: rates divide by 5, min/max stay over the 3 scored.
    got = sensitive_exposure(TOP, SENSITIVE, ks=(2, 4), n_listed_users=5)
    assert got["total_users"] == 5 and got["scored_users"] == 3
    assert got["pct_users_with_sensitive@2"] == pytest.approx(100 * 2 / 5)
    assert got["avg_sensitive_per_user@2"] == pytest.approx(3 / 5)
    assert got["avg_sensitive_per_user@4"] == pytest.approx(5 / 5)
    assert got["avg_sensitive_per_affected_user@4"] == pytest.approx(5 / 2)
    assert (got["min_sensitive_per_user@4"], got["max_sensitive_per_user@4"]) == (0, 3)
    with pytest.raises(ValueError):
        sensitive_exposure(TOP, SENSITIVE, ks=(2,), n_listed_users=2)


def test_sensitive_exposure_without_sensitive_items_in_the_lists():
    got = sensitive_exposure(TOP, np.array([42]), ks=(4,))
    assert got["users_with_sensitive@4"] == 0
    assert got["avg_sensitive_per_affected_user@4"] == 0.0
    assert got["max_sensitive_per_user@4"] == 0
    with pytest.raises(ValueError):
        sensitive_exposure(TOP, SENSITIVE, ks=(5,))


# spam exposure ---------------------------------------------------------------------------

SPAM_TABLE = np.array([
    [0.0, 3.0, 1.0, 2.0, 1.0, -1.0],
    [5.0, 0.0, 0.5, 4.0, 0.5, 0.5],
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
])
TARGETS = np.array([2, 4])


def test_spam_exposure_by_hand_with_ties():
    scores_fn = TableScores(SPAM_TABLE)
    ranks, probabilities = target_ranks_and_probabilities(scores_fn, np.arange(3), TARGETS)
    # Ties go to the target: user 0's targets tie each other below items 1 and 3 (rank 3),
    # user 1's tie with item 5 below items 0 and 3 (rank 3), user 2's tie with everything (rank 1).
    np.testing.assert_array_equal(ranks, [[3, 3], [3, 3], [1, 1]])
    np.testing.assert_allclose(probabilities, numpy_softmax(SPAM_TABLE)[:, TARGETS], rtol=1e-6)

    got = spam_exposure(scores_fn, np.arange(3), TARGETS, ks=(1, 3))
    target_mass = numpy_softmax(SPAM_TABLE)[:, TARGETS].sum(axis=1)
    assert got == pytest.approx({
        "users_with_target@1": 1 / 3,
        "avg_targets_in_top@1": 2 / 3,  # both of user 2's tied targets count at k = 1
        "target_hit_ratio@1": 2 / 6,  # 2 of the 6 (user, target) pairs
        "users_with_target@3": 1.0,
        "avg_targets_in_top@3": 2.0,
        "target_hit_ratio@3": 1.0,
        "mean_target_mass": target_mass.mean() / 2,  # per target: the per-user sums over 2 targets
        "mean_best_target_rank": 7 / 3,
        "mean_target_rank": 7 / 3,
        "mean_target_probability": target_mass.mean(),
        "max_target_probability": target_mass.max(),
        "scored_users": 3,
        "target_items": 2,
    }, rel=1e-6)
    assert target_mass.max() == pytest.approx(2 / 6)


def test_spam_exposure_with_exclusions():
    # Masking items 1 and 3 for user 0 lifts its targets to rank 1 and renormalises its softmax;
    # the pair of user 7 (not scored) is ignored.
    exclude = (np.array([0, 0, 7]), np.array([1, 3, 2]))
    scores_fn = TableScores(SPAM_TABLE)
    ranks, probabilities = target_ranks_and_probabilities(scores_fn, np.array([0, 1]), TARGETS, exclude=exclude)
    np.testing.assert_array_equal(ranks, [[1, 1], [3, 3]])
    masked = SPAM_TABLE[:2].copy()
    masked[0, [1, 3]] = -np.inf
    np.testing.assert_allclose(probabilities, numpy_softmax(masked)[:, TARGETS], rtol=1e-6)
    # by hand: user 0's masked row softmax over (0, 1, 1, -1) -> each target e / (1 + 2e + 1/e)
    got = spam_exposure(scores_fn, np.array([0, 1]), TARGETS, ks=(1, 2), exclude=exclude)
    e = np.e
    user0 = e / (1 + 2 * e + 1 / e)
    user1 = np.exp(0.5) / (np.exp(5) + 1 + np.exp(4) + 3 * np.exp(0.5))
    assert got["mean_target_mass"] == pytest.approx((2 * user0 + 2 * user1) / 4, rel=1e-6)
    assert got["target_hit_ratio@1"] == pytest.approx(0.5) and got["users_with_target@1"] == pytest.approx(0.5)
    assert got["target_hit_ratio@2"] == pytest.approx(0.5)  # user 1's targets rank 3


def test_spam_exposure_matches_numpy_on_a_random_table():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(9, 30)).astype(np.float32)
    users, targets = np.array([8, 0, 3, 5, 1]), np.array([4, 17, 29])
    got = spam_exposure(TableScores(table), users, targets, ks=(5, 10), block_size=2)
    ranks = np.stack([numpy_ranks(table, users, np.full(len(users), t)) for t in targets], axis=1)
    mass = numpy_softmax(table[users].astype(np.float64))[:, targets].sum(axis=1)
    assert got["users_with_target@5"] == pytest.approx((ranks <= 5).any(axis=1).mean())
    assert got["avg_targets_in_top@10"] == pytest.approx((ranks <= 10).sum(axis=1).mean())
    assert got["mean_best_target_rank"] == pytest.approx(ranks.min(axis=1).mean())
    assert got["mean_target_rank"] == pytest.approx(ranks.mean())
    assert got["mean_target_probability"] == pytest.approx(mass.mean(), rel=1e-5)
    assert got["max_target_probability"] == pytest.approx(mass.max(), rel=1e-5)
    assert got["target_hit_ratio@5"] == pytest.approx((ranks <= 5).mean())
    assert got["mean_target_mass"] == pytest.approx(mass.mean() / len(targets), rel=1e-5)


# item ranks and forget fidelity ----------------------------------------------------------


def test_item_ranks_match_argsort_whatever_the_block_size():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(7, 11)).astype(np.float32)
    # Repeated users, one user with every item (more pairs than a block has rows), user 6 unused.
    users = np.concatenate([rng.integers(0, 6, size=15), np.full(11, 2)])
    items = np.concatenate([rng.integers(0, 11, size=15), np.arange(11)])
    position_of = np.argsort(np.argsort(-table, axis=1), axis=1)
    expected = position_of[users, items] + 1
    for block_size in (1, 3, 64):
        np.testing.assert_array_equal(item_ranks(TableScores(table), users, items, block_size), expected)


def test_item_ranks_break_ties_in_the_items_favour():
    table = np.array([[2.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    got = item_ranks(TableScores(table), np.array([0, 0, 0, 1, 1]), np.array([1, 2, 3, 0, 3]), block_size=1)
    np.testing.assert_array_equal(got, [2, 2, 4, 1, 1])
    assert item_ranks(TableScores(table), np.array([], np.int32), np.array([], np.int32)).shape == (0,)


def test_model_scores_fn_traces_params():
    rng = np.random.default_rng(2)
    table = rng.normal(size=(4, 6)).astype(np.float32)
    scores_fn = model_scores_fn(TableModel(), {"table": jnp.asarray(table)}, {"offset": jnp.zeros(6)})
    users, items = np.array([0, 3, 3, 1]), np.array([5, 0, 2, 2])
    np.testing.assert_array_equal(item_ranks(scores_fn, users, items), numpy_ranks(table, users, items))


def test_forget_fidelity_by_hand():
    got = forget_fidelity(np.array([1, 4, 10, 25]), np.array([50, 40, 20, 10]), ks=(5, 10))
    assert got == pytest.approx({
        "forgotten_pairs": 4,
        "forgotten_mean_rank": 10.0,
        "forgotten_median_rank": 7.0,
        "forgotten_mrr": (1 + 1 / 4 + 1 / 10 + 1 / 25) / 4,
        "forgotten_hit@5": 2 / 4,
        "forgotten_hit@10": 3 / 4,
        "reference_forgotten_pairs": 4,
        "reference_forgotten_mean_rank": 30.0,
        "reference_forgotten_median_rank": 30.0,
        "reference_forgotten_mrr": (1 / 50 + 1 / 40 + 1 / 20 + 1 / 10) / 4,
        "reference_forgotten_hit@5": 0.0,
        "reference_forgotten_hit@10": 1 / 4,
        "rank_ratio_to_reference": 10 / 30,
    })
    assert set(forget_fidelity(np.array([3]), ks=(5,))) == {
        "forgotten_pairs", "forgotten_mean_rank", "forgotten_median_rank", "forgotten_mrr", "forgotten_hit@5"
    }
    empty = forgotten_rank_summary(np.array([]), ks=(5,))
    assert empty["pairs"] == 0 and np.isnan(empty["mean_rank"]) and np.isnan(empty["hit@5"])


# agreement and control users -------------------------------------------------------------


def test_topk_agreement_by_hand():
    top_a = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    top_b = np.array([[2, 1, 9, 4], [8, 7, 6, 5]])
    # Row 0: top-2 sets equal, top-4 share 3 of 5 items; row 1: top-2 disjoint, top-4 equal.
    assert topk_agreement(top_a, top_b, ks=(2, 4)) == pytest.approx({
        "jaccard@2": (1 + 0) / 2,
        "overlap@2": (1 + 0) / 2,
        "jaccard@4": (3 / 5 + 1) / 2,
        "overlap@4": (3 / 4 + 1) / 2,
    })
    with pytest.raises(ValueError):
        topk_agreement(top_a, top_b[:1])


def test_sample_other_users_is_seeded_sorted_and_excludes():
    excluded = np.array([0, 5, 7, 50])
    sample = sample_other_users(100, excluded, 10, seed=3)
    assert len(sample) == 10 and len(np.unique(sample)) == 10
    assert np.all(np.diff(sample) > 0) and not np.isin(sample, excluded).any()
    np.testing.assert_array_equal(sample, sample_other_users(100, excluded, 10, seed=3))
    assert not np.array_equal(sample, sample_other_users(100, excluded, 10, seed=4))
    np.testing.assert_array_equal(sample_other_users(5, np.array([0, 2]), 10, seed=0), [1, 3, 4])
