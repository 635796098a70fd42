"""ROC, AUC and TPR at fixed FPR against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from erase_jax.audit import roc

# scores (higher = member) and labels; sorted by score: 0.9+ 0.8- 0.7+ 0.7- 0.6+ 0.2- 0.1-
SCORES = [0.1, 0.7, 0.9, 0.2, 0.7, 0.8, 0.6]
LABELS = [0, 1, 1, 0, 0, 0, 1]


def test_curve_points_by_hand():
    fpr, tpr, thresholds = roc.roc_curve(SCORES, LABELS)
    # thresholds inf, .9, .8, .7 (a tie: one + and one - enter together), .6, .2, .1
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 4, 2 / 4, 2 / 4, 3 / 4, 1])
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.2, 0.1])


def test_auc_by_hand_counts_a_tie_half():
    # 12 (positive, negative) pairs: 0.9 beats all 4; 0.7 beats .2 .1, ties .7, loses to .8 (2.5);
    # 0.6 beats .2 .1 (2): (4 + 2.5 + 2) / 12
    assert roc.roc_auc(SCORES, LABELS) == pytest.approx(8.5 / 12)
    fpr, tpr, _ = roc.roc_curve(SCORES, LABELS)
    assert roc.roc_auc(SCORES, LABELS) == pytest.approx(np.trapezoid(tpr, fpr))


def test_tpr_at_fpr_by_hand():
    assert roc.tpr_at_fpr(SCORES, LABELS, 0.0) == pytest.approx(1 / 3)  # only 0.9 above every negative
    assert roc.tpr_at_fpr(SCORES, LABELS, 0.3) == pytest.approx(1 / 3)
    assert roc.tpr_at_fpr(SCORES, LABELS, 0.5) == pytest.approx(1.0)
    summary = roc.summary(SCORES, LABELS, alphas=(0.25,))
    assert summary == {"auc": pytest.approx(8.5 / 12), "tpr@0.25fpr": pytest.approx(1 / 3), "n_positive": 3, "n_negative": 4}


def test_perfect_random_and_inverted_scores():
    labels = np.r_[np.ones(50), np.zeros(50)]
    assert roc.roc_auc(np.r_[np.arange(50) + 100, np.arange(50)], labels) == 1.0
    assert roc.roc_auc(np.zeros(100), labels) == 0.5  # one big tie
    assert roc.roc_auc(np.r_[np.arange(50), np.arange(50) + 100], labels) == 0.0
    assert roc.tpr_at_fpr(np.zeros(100), labels, 0.01) == 0.0


def test_auc_matches_the_pairwise_count_on_random_ties():
    rng = np.random.default_rng(0)
    scores, labels = rng.integers(0, 5, 60).astype(float), rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert roc.roc_auc(scores, labels) == pytest.approx(pairwise)


def test_needs_both_labels():
    with pytest.raises(ValueError, match="positive and one negative"):
        roc.roc_auc([0.1, 0.2], [1, 1])


def test_log_roc_points_by_hand():
    # 4 negatives: the grid runs from 1/4 to 1; with 3 points 0.25, 0.5, 1 (log-evenly spaced)
    points = roc.log_roc(SCORES, LABELS, n_points=3)
    assert points == {"fpr": [0.25, 0.5, 1.0], "tpr": [pytest.approx(1 / 3), 1.0, 1.0]}
    # 5 points: 0.25, 0.3536, 0.5, 0.7071, 1; the curve's TPR is 1/3 below FPR 1/2, then 1
    points = roc.log_roc(SCORES, LABELS, n_points=5)
    np.testing.assert_allclose(points["fpr"], [0.25, 0.353553, 0.5, 0.707107, 1.0])
    np.testing.assert_allclose(points["tpr"], [1 / 3, 1 / 3, 1, 1, 1], atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 points"):
        roc.log_roc(SCORES, LABELS, n_points=1)
