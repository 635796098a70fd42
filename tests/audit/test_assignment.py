"""Shadow assignment (balanced, independent, seeded) and audited-pair selection."""

from __future__ import annotations

import numpy as np
import pytest

from erase_jax.audit.assignment import IN, OUT, UNLEARN, assign_states
from erase_jax.audit.pairs import memorisation, select_audited_rows


def test_every_pair_is_in_each_state_in_a_third_of_the_shadows():
    states = assign_states(33, 200, seed=2)
    assert states.shape == (33, 200)
    for state in (IN, UNLEARN, OUT):
        assert np.all((states == state).sum(0) == 11)
    uneven = assign_states(32, 50, seed=2)
    counts = np.stack([(uneven == s).sum(0) for s in (IN, UNLEARN, OUT)])
    assert counts.min() >= 10 and counts.max() <= 11 and np.all(counts.sum(0) == 32)


def test_assignment_is_seeded():
    np.testing.assert_array_equal(assign_states(12, 40, seed=5), assign_states(12, 40, seed=5))
    assert not np.array_equal(assign_states(12, 40, seed=5), assign_states(12, 40, seed=6))


def test_pairs_are_assigned_independently():
    # Independent columns: two pairs share a state in a shadow with probability 1/3 (not 0 or 1),
    # and each shadow holds about a third of the pairs in each state.
    states = assign_states(30, 3000, seed=0)
    agreement = (states[:, :-1] == states[:, 1:]).mean()
    assert agreement == pytest.approx(1 / 3, abs=0.01)
    per_shadow = np.stack([(states == s).mean(1) for s in (IN, UNLEARN, OUT)])
    assert np.all(np.abs(per_shadow - 1 / 3) < 0.04)
    # the state of pair p in shadow 0 says nothing about pair p's state in shadow 1 beyond the balance
    together = np.mean((states[0] == UNLEARN) & (states[1] == UNLEARN))
    assert together == pytest.approx((1 / 3) * (9 / 29), abs=0.02)


def test_too_few_shadows():
    with pytest.raises(ValueError, match="at least 3"):
        assign_states(2, 5, seed=0)


def test_selection_is_seeded_distinct_and_adds_the_most_memorised():
    candidates = np.arange(100, 200)
    chosen = select_audited_rows(candidates, 10, seed=3)
    np.testing.assert_array_equal(chosen, select_audited_rows(candidates, 10, seed=3))
    assert len(np.unique(chosen)) == 10 and np.isin(chosen, candidates).all()
    score = np.zeros(300)
    score[[5, 6, 7, 250]] = [3.0, 2.0, 1.0, 4.0]
    with_memorised = select_audited_rows(candidates, 10, seed=3, memorisation=score, pool=np.arange(300), n_memorised=2)
    assert set(with_memorised) == set(chosen) | {250, 5}
    assert len(select_audited_rows(candidates[:4], 10, seed=3)) == 4


def test_memorisation_is_the_trained_minus_untrained_mean():
    states = np.array([[IN, OUT], [UNLEARN, OUT], [OUT, IN]])
    phi = np.array([[3.0, 0.0], [1.0, 2.0], [-1.0, 5.0]])
    np.testing.assert_allclose(memorisation(phi, states), [2.0 - (-1.0), 5.0 - 1.0])
