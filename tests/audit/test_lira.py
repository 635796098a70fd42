"""Leave-one-out Gaussian fits and likelihood-ratio scores; the games on known membership."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.audit.assignment import OUT, UNLEARN, assign_states
from erase_jax.audit.confidence import log_probability, logit_confidence
from erase_jax.audit.game import game_examples, per_pair_auc, play
from erase_jax.audit.lira import fits, gaussian_log_density, leave_one_out_scores, reference_weights
from erase_jax.audit.roc import roc_auc


def test_leave_one_out_fits_equal_fits_without_the_target():
    rng = np.random.default_rng(0)
    values, mask = rng.normal(size=(7, 5)), rng.random((7, 5)) < 0.6
    weights, _ = reference_weights(mask, ~mask, balanced=False)
    mean, variance, count = fits(values, weights)
    for t in range(7):
        for p in range(5):
            others = values[np.arange(7) != t, p][mask[np.arange(7) != t, p]]
            assert count[t, p] == len(others)
            if len(others) >= 2:
                assert mean[t, p] == pytest.approx(others.mean())
                assert variance[t, p] == pytest.approx(others.var(ddof=1))
            else:
                assert np.isnan(variance[t, p])


def test_balanced_fits_take_the_first_equally_many_of_each_state():
    member = np.array([[True], [False], [True], [False], [True], [False], [False]])
    weights_member, weights_other = reference_weights(member, ~member)
    # target 0 (member): 2 other members (2, 4) and the first 2 of 4 non-members (1, 3)
    np.testing.assert_array_equal(np.nonzero(weights_member[0, :, 0])[0], [2, 4])
    np.testing.assert_array_equal(np.nonzero(weights_other[0, :, 0])[0], [1, 3])
    # target 3 (non-member): 3 members, and 3 of the other non-members (1, 5, 6)
    np.testing.assert_array_equal(np.nonzero(weights_member[3, :, 0])[0], [0, 2, 4])
    np.testing.assert_array_equal(np.nonzero(weights_other[3, :, 0])[0], [1, 5, 6])


def test_balanced_fits_keep_the_null_at_chance_where_plain_leave_one_out_does_not():
    trained, unlearned, states = synthetic_phi(shift=0.0, n_shadows=9, n_pairs=2000, seed=1)
    unlearn, out = states == UNLEARN, states == OUT
    aucs = {}
    for balanced in (True, False):
        scores = leave_one_out_scores(unlearned, unlearned, unlearn, unlearned, out, "global", balanced=balanced)
        used = (unlearn | out) & np.isfinite(scores)
        aucs[balanced] = roc_auc(scores[used], unlearn[used])
    assert abs(aucs[True] - 0.5) < 0.02 and aucs[False] < 0.46


def test_score_is_the_log_density_ratio():
    member = np.array([[0.0], [1.0], [2.0], [9.0]])
    nonmember = np.array([[5.0], [6.0], [7.0], [9.0]])
    mask = np.array([[True], [True], [True], [False]])
    score = leave_one_out_scores(np.full((4, 1), 1.5), member, mask, nonmember, mask)
    # target 3 (not in either fit): member N(1, 1), non-member N(6, 1)
    assert score[3, 0] == pytest.approx(gaussian_log_density(1.5, 1.0, 1.0) - gaussian_log_density(1.5, 6.0, 1.0))
    assert score[3, 0] > 0


def test_logit_confidence_is_log_p_over_one_minus_p():
    scores = jnp.array([[1.0, 2.0, 0.5], [0.0, -3.0, 4.0]])
    items = jnp.array([1, 0])
    p = np.exp(np.asarray(scores)) / np.exp(np.asarray(scores)).sum(1, keepdims=True)
    own = p[[0, 1], [1, 0]]
    np.testing.assert_allclose(logit_confidence(scores, items), np.log(own / (1 - own)), rtol=1e-5)
    np.testing.assert_allclose(log_probability(scores, items), np.log(own), rtol=1e-5)


def synthetic_phi(shift: float, n_shadows=30, n_pairs=200, seed=0):
    """Confidences with known membership: each pair its own base level; a shadow that trained a
    pair and kept a trace of it (UNLEARN pairs, after unlearning) adds `shift`."""
    rng = np.random.default_rng(seed)
    states = assign_states(n_shadows, n_pairs, seed)
    base = rng.normal(0, 3, n_pairs)[None, :] + rng.normal(0, 1, (n_shadows, n_pairs))
    trained = base + shift * (states != OUT)
    unlearned = base + shift * (states == UNLEARN)
    return trained, unlearned, states


def test_game2_separates_a_kept_trace_and_not_its_absence():
    trained, unlearned, states = synthetic_phi(shift=4.0)
    separable = play("game2", trained, unlearned, states)
    assert separable["auc"] > 0.97 and separable["tpr@0.01fpr"] > 0.5
    trained, unlearned, states = synthetic_phi(shift=0.0)
    blind = play("game2", trained, unlearned, states)
    assert abs(blind["auc"] - 0.5) < 0.04 and blind["tpr@0.01fpr"] < 0.05
    assert blind["n_positive"] == blind["n_negative"] == 30 * 200 // 3


def test_game1_compares_with_the_never_trained_model():
    trained, unlearned, states = synthetic_phi(shift=4.0)
    assert play("game1", trained, unlearned, states, variance="global")["auc"] > 0.97
    scores, labels, used = game_examples("game1", trained, unlearned, states)
    assert np.all(labels[used] == (states[used] == UNLEARN))
    assert np.all(np.isin(states[used], [UNLEARN, OUT]))
    assert np.nanmean(per_pair_auc(scores, labels, used)) > 0.9
