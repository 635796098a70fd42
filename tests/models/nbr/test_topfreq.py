"""The frequency baselines (G-, P-, GP-TopFreq; next-basket spec 2.3) on hand-made histories.

Training rows give the global counts G = [1, 4, 2, 0, 1, 3] (histories and targets); every
ranking below is worked out by hand from the module's score definitions, ties in G (items 0
and 4) and P-TopFreq's unbought items going to the lower id (`lax.top_k`).
"""

import jax
import numpy as np
import pytest

from erase_jax.data.baskets import basket_batch
from erase_jax.models import build_model, get_model_class
from tests.models.nbr.hand_rows import basket_rows

N_ITEMS, MAX_BASKETS = 6, 4
TRAIN = basket_rows([[[1, 2], [1, 5]], [[5], [1, 5]]], [[1, 4], [0, 2]], N_ITEMS, MAX_BASKETS)
GLOBAL = [1, 4, 2, 0, 1, 3]
QUERIES = basket_rows([[[1, 2], [2, 3], [4]], [[3]], [[5, 5], [0]]], [[0], [0], [0]], N_ITEMS, MAX_BASKETS)
EXPECTED = {
    "GTopFreq": [[1, 5, 2, 0, 4, 3]] * 3,
    "PTopFreq": [[2, 1, 4, 3, 0, 5], [3, 0, 1, 2, 4, 5], [5, 0, 1, 2, 3, 4]],
    "GPTopFreq": [[2, 1, 4, 3, 5, 0], [3, 1, 5, 2, 0, 4], [5, 0, 1, 2, 4, 3]],
}


def scores_of(name):
    model = build_model(name)
    context = model.prepare(TRAIN)
    params = model.init(jax.random.PRNGKey(0), context)
    batch = basket_batch(QUERIES, size=4)  # one padding row
    return context, np.asarray(jax.jit(model.scores)(params, context, batch))


def test_global_counts_cover_histories_and_targets():
    context, _ = scores_of("GTopFreq")
    np.testing.assert_array_equal(np.asarray(context.global_counts), GLOBAL)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rankings_match_the_hand_made_ones(name):
    _, scores = scores_of(name)
    assert scores.shape == (4, N_ITEMS) and np.isfinite(scores).all()
    ranked = np.asarray(jax.lax.top_k(scores[:3], N_ITEMS)[1])
    np.testing.assert_array_equal(ranked, EXPECTED[name])
    assert not get_model_class(name).trainable


def test_scores_are_history_counts_plus_the_global_tie_breaker():
    g = np.array(GLOBAL) / (max(GLOBAL) + 1)
    counts = np.array([0, 1, 2, 1, 1, 0])  # the first query: [[1, 2], [2, 3], [4]]
    _, p_scores = scores_of("PTopFreq")
    _, gp_scores = scores_of("GPTopFreq")
    np.testing.assert_allclose(p_scores[0], np.where(counts > 0, counts + g, 0.0), rtol=1e-6)
    np.testing.assert_allclose(gp_scores[0], counts + g, rtol=1e-6)
    np.testing.assert_allclose(gp_scores[2], np.array([1, 0, 0, 0, 0, 2]) + g, rtol=1e-6)  # a repeat in a basket counts


def test_the_baselines_have_no_parameters_and_a_zero_loss():
    model = build_model("GPTopFreq")
    context = model.prepare(TRAIN)
    params = model.init(jax.random.PRNGKey(0), context)
    assert params == {}
    assert float(model.loss(params, context, basket_batch(TRAIN), jax.random.PRNGKey(0))) == 0.0
