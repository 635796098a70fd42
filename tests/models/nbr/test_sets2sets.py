"""Sets2Sets against a numpy version of its equations, and its loss (next-basket spec 2.2, 5.5).

Checked: the forward (logits) against a per-row numpy implementation written from the
equations, with histories given as lists of baskets; the initial parameters' layout (padding
rows zero); the item weights of `prepare`; the O(N) set-loss identity against the explicit
loop over (positive, negative) pairs; the full loss against numpy; compat="erase" detaches the
set term; a few Adam steps lower the loss; the diagonal history gate.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from erase_jax.data.baskets import BasketRows, basket_batch
from erase_jax.models import build_model
from erase_jax.models.nbr.sets2sets import set_loss
from tests.models.nbr.hand_rows import basket_rows

N_ITEMS, MAX_BASKETS = 9, 4
SMALL = dict(embedding_size=4, hidden_size=3)


def rows_of(histories, targets) -> BasketRows:
    return basket_rows(histories, targets, N_ITEMS, MAX_BASKETS)


HISTORIES = [[[0, 1], [1, 2, 3], [4]], [[5], [5, 6, 7]], [[8, 0, 2], [2], [2, 3], [1, 7, 3]], [[6]]]
TARGETS = [[1, 4], [5], [2, 8, 0], [3, 6]]


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_gru(x, h, w_ih, w_hh, b_ih, b_hh):
    hs = h.shape[-1]
    gi, gh = x @ w_ih + b_ih, h @ w_hh + b_hh
    r = sigmoid(gi[:hs] + gh[:hs])
    z = sigmoid(gi[hs:2 * hs] + gh[hs:2 * hs])
    n = np.tanh(gi[2 * hs:] + r * gh[2 * hs:])
    return (1 - z) * n + z * h


def numpy_logits(p, history, n_items, gate="full"):
    """One row's logits, straight from the equations of the module docstring."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    hidden = p["encoder_w_hh"].shape[0]
    h = np.zeros(hidden)
    states = []
    for basket in history:
        h = numpy_gru(sum(p["encoder_embedding"][i] for i in basket), h, p["encoder_w_ih"], p["encoder_w_hh"],
                      p["encoder_b_ih"], p["encoder_b_hh"])
        states.append(h)
    m = len(history)
    x = sum(p["decoder_embedding"][i] for i in history[-1])
    scores = np.concatenate([x, h]) @ p["attention_w"] + p["attention_b"]
    scores = scores[:m]
    a = np.exp(scores - scores.max())
    a /= a.sum()
    c = sum(a_t * s_t for a_t, s_t in zip(a, states, strict=True))
    o = np.maximum(np.concatenate([x, c]) @ p["combine_w"] + p["combine_b"], 0.0)
    out = numpy_gru(o, h, p["decoder_w_ih"], p["decoder_w_hh"], p["decoder_b_ih"], p["decoder_b_hh"])
    z = out @ p["output_w"] + p["output_b"]
    f = np.zeros(n_items)
    for basket in history:
        for i in basket:
            f[i] += 1.0
    f /= m
    gate_in = f @ p["history_w"] if gate == "full" else f * p["history_w"]
    v = sigmoid(gate_in + p["history_b"])
    r = (f > 0).astype(float)
    return z * (1 - r * v) + f * v


def randomised(params, seed=3):
    """Initial parameters with every tensor (biases included) perturbed, padding rows kept 0."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    noisy = [leaf + 0.3 * jax.random.normal(key, leaf.shape) for leaf, key in zip(leaves, keys, strict=True)]
    out = jax.tree.unflatten(tree, noisy)
    for name in ("encoder_embedding", "decoder_embedding"):
        out["params"][name] = out["params"][name].at[-1].set(0.0)
    return out


@pytest.fixture(scope="module")
def setup():
    rows = rows_of(HISTORIES, TARGETS)
    model = build_model("Sets2Sets", **SMALL)
    context = model.prepare(rows)
    params = model.init(jax.random.PRNGKey(0), context)
    return rows, model, context, params


def test_initial_parameters_have_zero_padding_rows_and_the_documented_shapes(setup):
    _, _, _, params = setup
    p = params["params"]
    assert p["encoder_embedding"].shape == (N_ITEMS + 1, 4) and p["decoder_embedding"].shape == (N_ITEMS + 1, 4)
    assert not np.asarray(p["encoder_embedding"][-1]).any() and not np.asarray(p["decoder_embedding"][-1]).any()
    assert p["history_w"].shape == (N_ITEMS, N_ITEMS) and p["attention_w"].shape == (4 + 3, MAX_BASKETS)
    assert p["output_w"].shape == (3, N_ITEMS) and not np.asarray(p["encoder_b_ih"]).any()


def test_item_weights_are_max_count_over_count_and_zero_for_unseen(setup):
    _, _, context, _ = setup
    counts = np.zeros(N_ITEMS)
    for history in HISTORIES:
        for basket in history:
            for i in basket:
                counts[i] += 1
    expected = np.where(counts > 0, counts.max() / np.maximum(counts, 1), 0.0)
    np.testing.assert_allclose(np.asarray(context.item_weights), expected, rtol=1e-6)


@pytest.mark.parametrize("width", [None, 16])
def test_logits_match_numpy(setup, width):
    rows, model, context, params = setup
    params = randomised(params)
    batch = basket_batch(rows, size=6, width=width)  # two padding rows, optionally a wider batch
    logits = np.asarray(jax.jit(model.logits)(params, context, batch))
    assert logits.shape == (6, N_ITEMS) and np.isfinite(logits).all()
    for r, history in enumerate(HISTORIES):
        np.testing.assert_allclose(logits[r], numpy_logits(params["params"], history, N_ITEMS), rtol=2e-5, atol=2e-5)


def test_the_diagonal_history_gate_matches_numpy(setup):
    rows, _, context, _ = setup
    model = build_model("Sets2Sets", history_gate="diagonal", **SMALL)
    params = randomised(model.init(jax.random.PRNGKey(1), context))
    assert params["params"]["history_w"].shape == (N_ITEMS,)
    logits = np.asarray(jax.jit(model.logits)(params, context, basket_batch(rows)))
    for r, history in enumerate(HISTORIES):
        np.testing.assert_allclose(logits[r], numpy_logits(params["params"], history, N_ITEMS, "diagonal"),
                                   rtol=2e-5, atol=2e-5)


def test_set_loss_equals_the_explicit_pair_mean():
    rng = np.random.default_rng(0)
    p = rng.random((5, 7))
    y = (rng.random((5, 7)) < 0.4).astype(np.float64)
    y[3] = 0.0  # no positive: no pairs
    y[4] = 1.0  # no negative: no pairs
    expected = []
    for row, labels in zip(p, y, strict=True):
        pairs = [np.exp(-(row[i] - row[j])) for i, j in itertools.product(range(7), range(7)) if labels[i] and not labels[j]]
        expected.append(np.mean(pairs) if pairs else 0.0)
    np.testing.assert_allclose(np.asarray(set_loss(jnp.asarray(p), jnp.asarray(y))), expected, rtol=1e-6)


def numpy_loss(params, context, lambda_set):
    weights = np.asarray(context.item_weights, np.float64)
    total = 0.0
    for history, target in zip(HISTORIES, TARGETS, strict=True):
        logits = numpy_logits(params["params"], history, N_ITEMS)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        y = np.zeros(N_ITEMS)
        y[target] = 1.0
        pairs = [np.exp(-(p[i] - p[j])) for i in range(N_ITEMS) for j in range(N_ITEMS) if y[i] and not y[j]]
        total += np.sum(weights * (p - y) ** 2) + lambda_set * np.mean(pairs)
    return total / len(HISTORIES)


def test_loss_matches_numpy_and_ignores_padding_rows(setup):
    rows, model, context, params = setup
    params = randomised(params)
    loss = jax.jit(model.loss)(params, context, basket_batch(rows, size=8), jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(loss), numpy_loss(params, context, 10.0), rtol=1e-5)


def test_compat_erase_detaches_the_set_term(setup):
    rows, _, context, params = setup
    batch = basket_batch(rows)
    key = jax.random.PRNGKey(0)
    for compat in ("correct", "erase"):
        with_set, without = (build_model("Sets2Sets", compat=compat, lambda_set=w, **SMALL) for w in (10.0, 0.0))
        set_term = lambda params: with_set.loss(params, context, batch, key) - without.loss(params, context, batch, key)
        value, grads = jax.jit(jax.value_and_grad(set_term))(params)
        largest = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads))
        assert float(value) > 1.0
        assert (largest < 1e-7) if compat == "erase" else (largest > 1e-4), (compat, largest)


def test_a_few_adam_steps_lower_the_loss(setup):
    rows, model, context, params = setup
    batch = basket_batch(rows)
    optimiser = optax.adam(3e-2)
    state = optimiser.init(params)

    @jax.jit
    def step(params, state, key):
        loss, grads = jax.value_and_grad(model.loss)(params, context, batch, key)
        updates, state = optimiser.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    losses = []
    for i in range(20):
        params, state, loss = step(params, state, jax.random.PRNGKey(i))
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 1.0 and losses[-1] < min(losses[:5])


def test_unknown_options_are_rejected():
    with pytest.raises(ValueError, match="history_gate"):
        build_model("Sets2Sets", history_gate="low_rank")
    with pytest.raises(ValueError, match="compat"):
        build_model("Sets2Sets", compat="paper")


def test_history_product_is_the_dense_product_in_any_chunking(monkeypatch):
    from erase_jax.models.nbr import sets2sets

    rng = np.random.default_rng(0)
    n, b, width = 13, 5, 6
    w = jnp.asarray(rng.normal(size=(n, n)).astype(np.float32))
    items = rng.integers(0, n + 1, size=(b, width))  # n: padding
    weight = np.where(items < n, rng.random((b, width)), 0.0).astype(np.float32)
    f = np.zeros((b, n), np.float32)
    for r in range(b):
        for item, x in zip(items[r], weight[r], strict=True):
            if item < n:
                f[r, item] += x
    for chunk_floats in (1, 2 * width * n, 1 << 25):
        monkeypatch.setattr(sets2sets, "HISTORY_CHUNK", chunk_floats)
        got = sets2sets.history_product(w, jnp.asarray(items), jnp.asarray(weight))
        np.testing.assert_allclose(np.asarray(got), f @ np.asarray(w), rtol=1e-5, atol=1e-5)


def test_lazy_history_slab_gradient_is_the_dense_gradient_in_its_rows(setup):
    """The lazy step's slab of W_f gradient equals the dense W_f gradient in the batch's history
    rows; the dense gradient is zero in every other row (row 8: no history of rows 0-1 has it)."""
    rows, _, context, params = setup
    params = randomised(params)
    lazy = build_model("Sets2Sets", history_optimizer="lazy_adam", **SMALL)
    batch = basket_batch(rows.select(np.array([0, 1])))
    key = jax.random.PRNGKey(5)
    dense_loss, dense = jax.value_and_grad(lazy.loss)(params, context, batch, key)
    table_rows = lazy.row_sparse_rows(context, batch)[("params", "history_w")]
    assert table_rows.shape == (min(N_ITEMS, 2 * context.max_history_items),)
    touched = sorted({i for history in HISTORIES[:2] for basket in history for i in basket})
    np.testing.assert_array_equal(np.asarray(table_rows)[: len(touched)], touched)
    assert np.all(np.asarray(table_rows)[len(touched):] == N_ITEMS)
    slab = params["params"]["history_w"].at[table_rows].get(mode="fill", fill_value=0)
    slabbed = {"params": {**params["params"], "history_w": slab}}
    lazy_context = lazy.with_row_slabs(context, {("params", "history_w"): table_rows})
    slab_loss, sparse = jax.value_and_grad(lazy.loss)(slabbed, lazy_context, batch, key)
    np.testing.assert_allclose(float(slab_loss), float(dense_loss), rtol=1e-6)
    dense_w = np.asarray(dense["params"]["history_w"])
    np.testing.assert_allclose(np.asarray(sparse["params"]["history_w"])[: len(touched)], dense_w[touched], rtol=1e-5, atol=1e-8)
    assert not np.any(dense_w[[i for i in range(N_ITEMS) if i not in touched]])
    for name, grad in sparse["params"].items():
        if name != "history_w":
            np.testing.assert_allclose(np.asarray(grad), np.asarray(dense["params"][name]), rtol=1e-5, atol=1e-7)


def test_lazy_epoch_with_every_row_touched_is_the_dense_epoch(setup):
    """One batch of all four rows reaches every item, so the lazy epochs are dense Adam's."""
    from erase_jax.batching.baskets import BasketBatcher
    from erase_jax.train import TrainConfig, init_state, make_optimizer, make_train_epoch

    rows = setup[0]
    states = {}
    for choice in ("adam", "lazy_adam"):
        model = build_model("Sets2Sets", history_optimizer=choice, **SMALL)
        context = model.prepare(rows)
        batcher = BasketBatcher.build(rows, 4, mix_lengths=True)  # one batch of every row
        optimizer = make_optimizer(TrainConfig(learning_rate=0.01), batcher.n_batches, model.row_sparse_params)
        state, epoch = init_state(model, context, optimizer, 0), make_train_epoch(model, optimizer)
        for e in range(3):
            state, _ = epoch(state, context, batcher, batcher.shuffled_order(0, e))
        states[choice] = state.params
    for name, value in states["adam"]["params"].items():
        np.testing.assert_allclose(np.asarray(states["lazy_adam"]["params"][name]), np.asarray(value), rtol=1e-4, atol=1e-6)


def test_lazy_option_is_checked():
    with pytest.raises(ValueError, match="history_optimizer"):
        build_model("Sets2Sets", history_optimizer="sparse_adam")
    with pytest.raises(ValueError, match="history_gate"):
        build_model("Sets2Sets", history_optimizer="lazy_adam", history_gate="diagonal")
    assert build_model("Sets2Sets").row_sparse_params == ()


def test_lazy_model_refuses_a_dense_optimiser(setup):
    from erase_jax.batching.baskets import BasketBatcher
    from erase_jax.train import TrainConfig, init_state, make_optimizer, make_train_epoch

    rows = setup[0]
    model = build_model("Sets2Sets", history_optimizer="lazy_adam", **SMALL)
    context = model.prepare(rows)
    batcher = BasketBatcher.build(rows, 2)
    optimizer = make_optimizer(TrainConfig(), batcher.n_batches)  # without the row-sparse paths
    with pytest.raises(ValueError, match="row_sparse_paths"):
        make_train_epoch(model, optimizer)(init_state(model, context, optimizer, 0), context, batcher,
                                           batcher.shuffled_order(0, 0))


def test_lazy_training_resumes_bit_identical(setup, tmp_path):
    """The lazy optimiser's state (both moments, the step count) checkpoints and restores."""
    from erase_jax.batching.baskets import BasketBatcher
    from erase_jax.checkpoint import Checkpointer
    from erase_jax.train import TrainConfig, fit

    rows = setup[0]
    model = build_model("Sets2Sets", history_optimizer="lazy_adam", **SMALL)
    context, batcher = model.prepare(rows), BasketBatcher.build(rows, 1)
    config = TrainConfig(epochs=3, batch_size=1, learning_rate=0.01)
    straight = fit(model, context, batcher, None, config, 0, Checkpointer(tmp_path / "straight"))

    def stop_after_epoch_1(info):
        if info["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(model, context, batcher, None, config, 0, Checkpointer(tmp_path / "resumed"), progress=stop_after_epoch_1)
    resumed = fit(model, context, batcher, None, config, 0, Checkpointer(tmp_path / "resumed"))
    assert resumed.record["epoch_loss"] == straight.record["epoch_loss"]
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
