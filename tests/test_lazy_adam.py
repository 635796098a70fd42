"""Lazy (row-sparse) Adam (`erase_jax.lazy_adam`): dense Adam when every row is touched,
untouched rows bit-identical, one step against a hand computation, and the optimiser errors."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from erase_jax import lazy_adam
from erase_jax.lazy_adam import RowSparse
from erase_jax.train import TrainConfig, make_optimizer

PATH = ("params", "table")


def tree(table, bias):
    return {"params": {"table": jnp.asarray(table, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}}


def sparse_grads(grads, rows):
    """The dense gradient tree with the table's gradient given in `rows` only."""
    table = grads["params"]["table"]
    rows = jnp.asarray(rows, jnp.int32)
    values = table.at[rows].get(mode="fill", fill_value=0)
    return lazy_adam.set_path(grads, PATH, RowSparse(rows, values))


def test_every_row_touched_is_dense_adam():
    rng = np.random.default_rng(0)
    schedule = optax.exponential_decay(0.05, 2, 0.5, staircase=True)
    dense_tx = optax.adam(schedule, 0.9, 0.98, 1e-6)
    lazy_tx = lazy_adam.row_sparse_adam(schedule, 0.9, 0.98, 1e-6, (PATH,))
    dense = lazy = tree(rng.normal(size=(5, 3)), rng.normal(size=3))
    dense_state, lazy_state = dense_tx.init(dense), lazy_tx.init(lazy)
    for _ in range(6):
        grads = tree(rng.normal(size=(5, 3)), rng.normal(size=3))
        updates, dense_state = dense_tx.update(grads, dense_state, dense)
        dense = optax.apply_updates(dense, updates)
        rows = rng.permutation(5).tolist() + [5, 7]  # every row, unsorted, plus two padding rows
        updates, lazy_state = lazy_tx.update(sparse_grads(grads, rows), lazy_state, lazy)
        lazy = lazy_adam.apply_updates(lazy, updates)
        for name in ("table", "bias"):
            np.testing.assert_allclose(lazy["params"][name], dense["params"][name], rtol=1e-6, atol=1e-7)


def lazy_state_of(state) -> lazy_adam.LazyAdamState:
    return state.inner_states["rows"].inner_state


def test_untouched_rows_and_their_moments_stay_bit_identical():
    rng = np.random.default_rng(1)
    tx = lazy_adam.row_sparse_adam(0.1, 0.9, 0.999, 1e-8, (PATH,))
    params = tree(rng.normal(size=(6, 4)), rng.normal(size=4))
    state = tx.init(params)
    for _ in range(2):  # moments of every row non-zero first
        updates, state = tx.update(sparse_grads(tree(rng.normal(size=(6, 4)), rng.normal(size=4)), range(6)), state, params)
        params = lazy_adam.apply_updates(params, updates)
    before_params, before_state = params, lazy_state_of(state)
    touched, untouched = [4, 1], [0, 2, 3, 5]
    updates, state = tx.update(sparse_grads(tree(rng.normal(size=(6, 4)), rng.normal(size=4)), [1, 4, 6, 6]),
                               state, params)
    params = lazy_adam.apply_updates(params, updates)
    after_state = lazy_state_of(state)
    for new, old in ((params["params"]["table"], before_params["params"]["table"]),
                     (after_state.mu["params"]["table"], before_state.mu["params"]["table"]),
                     (after_state.nu["params"]["table"], before_state.nu["params"]["table"])):
        np.testing.assert_array_equal(np.asarray(new)[untouched], np.asarray(old)[untouched])
        assert np.all(np.asarray(new)[touched] != np.asarray(old)[touched])
    assert int(after_state.count) == 3  # every step counts for the bias correction


def test_two_steps_against_a_hand_computation():
    """Table 3 x 2, lr 0.1, b1 0.5, b2 0.75, eps 0.01; step 1 touches rows 0, 2; step 2 row 2."""
    lr, b1, b2, eps = 0.1, 0.5, 0.75, 0.01
    tx = lazy_adam.lazy_adam(lr, b1, b2, eps)
    table = jnp.asarray([[1.0, -1.0], [2.0, 0.5], [0.0, 3.0]])
    state = tx.init(table)
    g1 = RowSparse(jnp.asarray([0, 2, 3]), jnp.asarray([[0.4, -0.2], [1.0, 0.0], [9.0, 9.0]]))
    updates, state = tx.update(g1, state)
    table = lazy_adam.apply_updates(table, updates)
    g2 = RowSparse(jnp.asarray([2]), jnp.asarray([[-1.0, 2.0]]))
    updates, state = tx.update(g2, state)
    table = lazy_adam.apply_updates(table, updates)

    # by hand: m = (1 - b1) g, v = (1 - b2) g^2 at step 1; bias corrections 1 - b^t
    m0, v0 = 0.5 * np.array([0.4, -0.2]), 0.25 * np.array([0.16, 0.04])
    row0 = np.array([1.0, -1.0]) - lr * (m0 / 0.5) / (np.sqrt(v0 / 0.25) + eps)
    m2, v2 = 0.5 * np.array([1.0, 0.0]), 0.25 * np.array([1.0, 0.0])
    row2 = np.array([0.0, 3.0]) - lr * (m2 / 0.5) / (np.sqrt(v2 / 0.25) + eps)
    m2, v2 = 0.5 * m2 + 0.5 * np.array([-1.0, 2.0]), 0.75 * v2 + 0.25 * np.array([1.0, 4.0])
    row2 = row2 - lr * (m2 / 0.75) / (np.sqrt(v2 / (1 - 0.75 ** 2)) + eps)
    expected = np.stack([row0, [2.0, 0.5], row2])
    np.testing.assert_allclose(np.asarray(table), expected, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state.mu[2]), m2, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state.nu[2]), v2, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(state.mu[0]), m0, rtol=1e-6)  # row 0 idle at step 2: not decayed


def test_row_sparse_parameters_need_plain_adam():
    for config in (TrainConfig(optimizer="sgd"), TrainConfig(weight_decay=0.1)):
        with pytest.raises(ValueError, match="row-sparse"):
            make_optimizer(config, 1, (PATH,))
    with pytest.raises(ValueError, match="at least one"):
        lazy_adam.row_sparse_adam(0.1, 0.9, 0.999, 1e-8, ())
