"""RMIA's offline score: reference sets, the score against a hand computation, known membership."""

from __future__ import annotations

import numpy as np
import pytest

from erase_jax.audit.assignment import OUT, UNLEARN, assign_states
from erase_jax.audit.game import play_rmia
from erase_jax.audit.rmia import offline_scores, reference_sets
from erase_jax.audit.roc import roc_auc


def test_reference_sets_are_the_first_out_shadows_other_than_the_target():
    out = np.array([[True], [False], [True], [True], [True]])
    refs = reference_sets(out, 2)
    np.testing.assert_array_equal(np.nonzero(refs[0, :, 0])[0], [2, 3])
    np.testing.assert_array_equal(np.nonzero(refs[1, :, 0])[0], [0, 2])
    np.testing.assert_array_equal(np.nonzero(refs[2, :, 0])[0], [0, 3])


def test_score_by_hand():
    # 3 shadows, 1 audited pair OUT in shadows 1 and 2; target 0; 2 population pairs.
    p_pair = np.array([[0.4], [0.1], [0.3]])
    p_population = np.array([[0.2, 0.05], [0.1, 0.1], [0.3, 0.1]])
    out = np.array([[False], [True], [True]])
    score = offline_scores(np.log(p_pair), out, np.log(p_population), n_references=2)
    # ratio_x = 0.4 / mean(0.1, 0.3) = 2; ratio_z1 = 0.2 / 0.2 = 1, ratio_z2 = 0.05 / 0.1 = 0.5
    assert score[0, 0] == pytest.approx(1.0)  # 2/1 and 2/0.5 both >= 1
    assert offline_scores(np.log(p_pair), out, np.log(p_population), n_references=2, gamma=3.0)[0, 0] == pytest.approx(0.5)
    # a = 0: Pr(x) = (0.2 + 1) / 2 = 0.6, ratio_x = 2/3: above ratio_z2 = 0.5 only
    assert offline_scores(np.log(p_pair), out, np.log(p_population), n_references=2, a=0.0)[0, 0] == pytest.approx(0.5)


def test_a_kept_trace_is_detected_and_its_absence_is_not():
    rng = np.random.default_rng(0)
    states = assign_states(24, 300, seed=0)
    base = rng.normal(-7, 1, 300)[None] + rng.normal(0, 0.3, (24, 300))
    population = rng.normal(-7, 1, 500)[None] + rng.normal(0, 0.3, (24, 500))
    for shift, check in ((2.0, lambda auc: auc > 0.95), (0.0, lambda auc: abs(auc - 0.5) < 0.04)):
        log_p = base + shift * (states == UNLEARN)
        scores = offline_scores(log_p, states == OUT, population, n_references=2)
        used = ((states == UNLEARN) | (states == OUT)) & np.isfinite(scores)
        auc = roc_auc(scores[used], (states == UNLEARN)[used])
        assert check(auc)
        assert play_rmia(log_p, states, population, n_references=2)["auc"] == pytest.approx(auc)
