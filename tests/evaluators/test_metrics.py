"""Ranking metrics and the full-ranking evaluator against hand-computed examples."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.data.cf import eval_set
from erase_jax.evaluators.cf_ranking import evaluate_cf, top_k_items
from erase_jax.evaluators.metrics import ranking_metrics


def test_metrics_by_hand():
    hits = np.array([[1, 0, 1, 0], [0, 0, 0, 1]], bool)
    n_positives = np.array([3, 1])
    got = ranking_metrics(hits, n_positives, ks=(2, 4))
    # Row 0: hits at ranks 1 and 3 of 3 positives; row 1: a hit at rank 4 of 1 positive.
    expected = {
        "recall@2": (1 / 3 + 0) / 2,
        "recall@4": (2 / 3 + 1) / 2,
        "precision@2": (1 / 2 + 0) / 2,
        "precision@4": (2 / 4 + 1 / 4) / 2,
        "hit@2": (1 + 0) / 2,
        "hit@4": (1 + 1) / 2,
        "mrr@2": (1 + 0) / 2,
        "mrr@4": (1 + 1 / 4) / 2,
        "ndcg@2": (1 / (1 + 1 / math.log2(3)) + 0) / 2,
        "ndcg@4": ((1 + 1 / 2) / (1 + 1 / math.log2(3) + 1 / 2) + (1 / math.log2(5)) / 1) / 2,
    }
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_metrics_reject_rows_without_positives():
    with pytest.raises(ValueError, match="without positives"):
        ranking_metrics(np.zeros((1, 3), bool), np.array([0]), ks=(3,))


class FixedScores:
    """A stand-in model whose score table is given: scores(user) = table[user]."""

    trainable = False

    def __init__(self, table):
        self.table = jnp.asarray(table, jnp.float32)

    def scores(self, params, context, query):
        return self.table[query["users"]]

    def __hash__(self):
        return id(self)


def test_top_k_masks_history_and_blocks_agree():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(7, 12))
    model = FixedScores(table)
    users = np.array([5, 0, 3, 6, 1])
    history_users = np.array([5, 5, 0, 2, 6])  # user 2 is not queried: ignored
    history_items = np.array([int(np.argmax(table[5])), 4, int(np.argmax(table[0])), 1, 7])
    expected = table.copy()
    for u, i in zip(history_users, history_items):
        expected[u, i] = -np.inf
    want = np.argsort(-expected[users], axis=1, kind="stable")[:, :4]
    for block_size in (1, 2, 4, 1024):
        got = top_k_items(model, None, None, users, 4, history_users, history_items, block_size)
        np.testing.assert_array_equal(got, want)


def test_evaluate_cf_by_hand():
    # 2 users x 5 items; user 0 has seen item 0, user 1 has seen items 3 and 4.
    table = np.array([[9, 8, 7, 6, 5], [1, 2, 3, 9, 8]], float)
    evaluation = eval_set(
        2, 5,
        target_users=np.array([0, 0, 1]), target_items=np.array([2, 4, 0]),
        history_users=np.array([0, 1, 1]), history_items=np.array([0, 3, 4]),
    )
    got = evaluate_cf(FixedScores(table), None, None, evaluation, ks=(2,), metrics=("recall", "hit", "mrr"))
    # User 0 ranks 1, 2, 3, 4 (0 masked): top-2 = [1, 2], one of its two targets.
    # User 1 ranks 2, 1, 0 (3, 4 masked): top-2 = [2, 1], target 0 missed.
    assert got == pytest.approx({"recall@2": 0.25, "hit@2": 0.5, "mrr@2": 0.25})
