"""The sequence models' Flax networks against explicit computations of their equations.

Initial parameters: tensor i drawn from key i of split(init key, n) with RecBole's initialiser
(the draws of the models before they were Flax modules, so recorded results reproduce).
Forward: numpy versions of the GRU4Rec, NARM and SASRec equations (SR-GNN's cell and graph
have their own tests in test_sbr_models.py). Recorded losses: the values the pre-Flax
implementation gave on this batch, dropout off and on.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.models import build_model
from erase_jax.models.sbr.base import SequenceShape

SMALL = {
    "GRU4Rec": dict(embedding_size=8, hidden_size=12),
    "NARM": dict(embedding_size=8, hidden_size=10),
    "SASRec": dict(hidden_size=8, inner_size=16),
    "SRGNN": dict(embedding_size=8),
}
N_ITEMS, WIDTH = 12, 8
CONTEXT = SequenceShape(N_ITEMS, WIDTH)
KEY = jax.random.PRNGKey(0)


def small_batch():
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, WIDTH + 1, 6)
    items = rng.integers(0, N_ITEMS, (6, WIDTH))
    items[np.arange(WIDTH)[None, :] >= lengths[:, None]] = N_ITEMS
    return {"items": jnp.asarray(items, jnp.int32), "lengths": jnp.asarray(lengths, jnp.int32),
            "targets": jnp.asarray(rng.integers(0, N_ITEMS, 6), jnp.int32), "weight": jnp.ones(6)}


def xavier_normal(key, shape):
    return jax.random.normal(key, shape) * np.sqrt(2.0 / (shape[0] + shape[1]))


def xavier_uniform(key, shape):
    bound = np.sqrt(6.0 / (shape[0] + shape[1]))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def uniform(key, shape, bound):
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def expected_initial_parameters(name):
    k = jax.random.split(KEY, {"GRU4Rec": 5, "NARM": 7, "SASRec": 14, "SRGNN": 18}[name])
    n = N_ITEMS + 1
    if name == "GRU4Rec":
        return {"item_embedding": xavier_normal(k[0], (n, 8)), "w_ih": xavier_uniform(k[1], (8, 36)),
                "w_hh": xavier_uniform(k[2], (12, 36)), "dense_w": uniform(k[3], (12, 8), 1 / np.sqrt(12)),
                "dense_b": uniform(k[4], (8,), 1 / np.sqrt(12))}
    if name == "NARM":
        return {"item_embedding": xavier_normal(k[0], (n, 8)), "w_ih": uniform(k[1], (8, 30), 1 / np.sqrt(10)),
                "w_hh": uniform(k[2], (10, 30), 1 / np.sqrt(10)), "a_1": xavier_normal(k[3], (10, 10)),
                "a_2": xavier_normal(k[4], (10, 10)), "v_t": xavier_normal(k[5], (10, 1)),
                "b": xavier_normal(k[6], (20, 8))}
    if name == "SASRec":
        normal = lambda key, shape: 0.02 * jax.random.normal(key, shape)
        norm = {"scale": jnp.ones(8), "bias": jnp.zeros(8)}
        expected = {"item_embedding": normal(k[12], (n, 8)), "position_embedding": normal(k[13], (WIDTH, 8)),
                    "input_norm": norm}
        for layer in range(2):
            q, key, v, out, ffn_in, ffn_out = k[6 * layer: 6 * layer + 6]
            expected[f"layers_{layer}"] = {
                "query": normal(q, (8, 8)), "key": normal(key, (8, 8)), "value": normal(v, (8, 8)),
                "attention_out": normal(out, (8, 8)), "ffn_in": normal(ffn_in, (8, 16)), "ffn_out": normal(ffn_out, (16, 8)),
                "attention_norm": norm, "ffn_norm": norm,
                **{f"{w}_b": jnp.zeros(16 if w == "ffn_in" else 8) for w in ("query", "key", "value", "attention_out", "ffn_in", "ffn_out")},
            }
        return expected
    shapes = [("item_embedding", (n, 8)), ("w_ih", (16, 24)), ("w_hh", (8, 24)), ("b_ih", (24,)), ("b_hh", (24,)),
              ("b_iah", (8,)), ("b_ioh", (8,)), ("edge_in", (8, 8)), ("edge_in_b", (8,)), ("edge_out", (8, 8)),
              ("edge_out_b", (8,)), ("linear_one", (8, 8)), ("linear_one_b", (8,)), ("linear_two", (8, 8)),
              ("linear_two_b", (8,)), ("linear_three", (8, 1)), ("linear_transform", (16, 8)), ("linear_transform_b", (8,))]
    return {name: uniform(key, shape, 1 / np.sqrt(8)) for key, (name, shape) in zip(k, shapes)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_initial_parameters_are_the_split_key_draws(name):
    params = build_model(name, **SMALL[name]).init(KEY, CONTEXT)
    expected = {"params": expected_initial_parameters(name)}
    assert jax.tree.structure(params) == jax.tree.structure(expected)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
        assert got.dtype == jnp.float32
        np.testing.assert_array_equal(got, want)


# The pre-Flax implementation's numbers on `small_batch()` from the PRNGKey(0) parameters, jitted
# on CPU: the loss without dropout, the loss with dropout key PRNGKey(1), and the norm of that
# loss's gradient. SR-GNN has no dropout.
RECORDED = {
    "GRU4Rec": (2.5837769508361816, 2.579709529876709, 0.5668213963508606),
    "NARM": (3.629802703857422, 3.6679763793945312, 4.56198263168335),
    "SASRec": (2.510744094848633, 2.5118541717529297, 1.541509985923767),
    "SRGNN": (2.303830146789551, 2.303830146789551, 0.6596171259880066),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_losses_and_gradients_are_the_recorded_ones(name):
    model = build_model(name, **SMALL[name])
    params = model.init(KEY, CONTEXT)
    loss = lambda p, k: model.loss(p, CONTEXT, small_batch(), k)
    without_dropout, with_dropout, gradient_norm = RECORDED[name]
    assert float(jax.jit(loss)(params, None)) == pytest.approx(without_dropout, rel=1e-6)
    value, grads = jax.jit(jax.value_and_grad(loss))(params, jax.random.PRNGKey(1))
    assert float(value) == pytest.approx(with_dropout, rel=1e-6)
    norm = np.sqrt(sum(np.sum(np.square(g, dtype=np.float64)) for g in jax.tree.leaves(grads)))
    assert norm == pytest.approx(gradient_norm, rel=1e-5)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gru_states(x, w_ih, w_hh):
    """torch.nn.GRU without biases from a zero state: every state [n, L, h] of inputs [n, L, d]."""
    h = w_hh.shape[0]
    state, states = np.zeros((x.shape[0], h)), []
    for t in range(x.shape[1]):
        i_r, i_z, i_n = np.split(x[:, t] @ w_ih, 3, axis=-1)
        h_r, h_z, h_n = np.split(state @ w_hh, 3, axis=-1)
        reset, update = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
        state = (1 - update) * np.tanh(i_n + reset * h_n) + update * state
        states.append(state)
    return np.stack(states, axis=1)


def layer_norm(x, norm, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps) * norm["scale"] + norm["bias"]


def numpy_representation(name, p, items, lengths):
    n, width = items.shape
    last = (np.arange(n), lengths - 1)
    embedded = p["item_embedding"][items]
    if name == "GRU4Rec":  # RecBole: dense on every state, then the last one
        return (gru_states(embedded, p["w_ih"], p["w_hh"]) @ p["dense_w"] + p["dense_b"])[last]
    if name == "NARM":
        states = gru_states(embedded, p["w_ih"], p["w_hh"])
        c_global = states[last]
        mask = (np.arange(width)[None, :] < lengths[:, None])[..., None]
        alpha = (mask * sigmoid(states @ p["a_1"] + (c_global @ p["a_2"])[:, None])) @ p["v_t"]
        return np.concatenate([(alpha * states).sum(1), c_global], -1) @ p["b"]
    # SASRec: post-LN layers over all positions, 2 heads, mask -10000 on the future and padding
    x = layer_norm(embedded + p["position_embedding"][:width], p["input_norm"])
    allowed = (np.arange(width)[None, :] <= np.arange(width)[:, None])[None] & (np.arange(width)[None, :] < lengths[:, None])[:, None]
    erf = np.vectorize(math.erf)
    for layer in (p["layers_0"], p["layers_1"]):
        heads = lambda t: t.reshape(n, width, 2, 4).transpose(0, 2, 1, 3)
        q, k, v = (heads(x @ layer[w] + layer[f"{w}_b"]) for w in ("query", "key", "value"))
        logits = q @ k.transpose(0, 1, 3, 2) / 2.0 + np.where(allowed, 0.0, -10000.0)[:, None]
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        attended = (weights @ v).transpose(0, 2, 1, 3).reshape(n, width, 8)
        x = layer_norm(attended @ layer["attention_out"] + layer["attention_out_b"] + x, layer["attention_norm"])
        inner = x @ layer["ffn_in"] + layer["ffn_in_b"]
        inner = inner * 0.5 * (1 + erf(inner / np.sqrt(2)))
        x = layer_norm(inner @ layer["ffn_out"] + layer["ffn_out_b"] + x, layer["ffn_norm"])
    return x[last]


@pytest.mark.parametrize("name", ["GRU4Rec", "NARM", "SASRec"])
def test_scores_are_the_equations_in_numpy(name):
    model = build_model(name, **SMALL[name])
    params = model.init(KEY, CONTEXT)
    batch = small_batch()
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    items, lengths = np.asarray(batch["items"]), np.asarray(batch["lengths"])
    expected = numpy_representation(name, p, items, lengths) @ p["item_embedding"][:-1].T
    got = jax.jit(lambda params: model.scores(params, CONTEXT, batch))(params)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_influence_targets_are_parameter_leaves(name):
    model = build_model(name, **SMALL[name])
    params = model.init(KEY, CONTEXT)
    for path in model.influence_targets:
        assert isinstance(path, tuple) and all(isinstance(k, str) for k in path), path
        leaf = params
        for k in path:
            leaf = leaf[k]
        assert isinstance(leaf, jax.Array), path
    assert ("params", "item_embedding") in model.influence_targets
