"""DNNTSP (`erase_jax.models.nbr.dnntsp`): its co-occurrence graph against a hand computation, its
forward against a loop implementation of the original's equations (per user, nodes sorted as
torch.unique does, steps padded with identity adjacencies as the original pads), padding, the
forward-over-reverse Hessian-vector product, and a few Adam steps.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from erase_jax.models import build_model
from erase_jax.models.nbr.base import BasketShape
from erase_jax.models.nbr.dnntsp import cooccurrence_graph, step_adjacency

N_ITEMS, H = 9, 48
CONTEXT = BasketShape(N_ITEMS, H)
SMALL = dict(embedding_size=8, n_heads=2)


def batch_of(histories, width, size=None, targets=None):
    """A `basket_batch`-layout dict of histories given as lists of baskets (padding n_items / H)."""
    size = size or len(histories)
    items = np.full((size, width), N_ITEMS, np.int32)
    baskets = np.full((size, width), H, np.int32)
    lengths, n_baskets = np.zeros(size, np.int32), np.zeros(size, np.int32)
    for r, history in enumerate(histories):
        flat = [(item, t) for t, basket in enumerate(history) for item in basket]
        lengths[r], n_baskets[r] = len(flat), len(history)
        items[r, : len(flat)] = [i for i, _ in flat]
        baskets[r, : len(flat)] = [t for _, t in flat]
    hot = np.full((size, 3), N_ITEMS, np.int32)
    for r, target in enumerate(targets or []):
        hot[r, : len(target)] = target
    weight = (np.arange(size) < len(histories)).astype(np.float32)
    return {"users": jnp.zeros(size, jnp.int32), "items": jnp.asarray(items), "baskets": jnp.asarray(baskets),
            "lengths": jnp.asarray(lengths), "n_baskets": jnp.asarray(n_baskets), "targets": jnp.asarray(hot),
            "weight": jnp.asarray(weight)}


HISTORIES = [[[1, 2, 3], [2, 4], [1, 2, 4]], [[5, 6, 6], [0]], [[7, 8], [8, 3], [7], [3, 8, 7]]]
TARGETS = [[2, 4], [6], [3, 0, 1]]


def test_cooccurrence_graph_of_a_hand_made_user():
    batch = batch_of(HISTORIES[:2], width=10)
    build = jax.jit(cooccurrence_graph, static_argnums=(4, 5))
    graph = build(batch["items"], batch["baskets"], batch["lengths"], batch["n_baskets"], N_ITEMS, 10)
    # user 0: nodes by first occurrence 1, 2, 3, 4; c(1,2) = c(2,4) = 2, c(1,3) = c(2,3) = c(1,4) = 1, c(3,4) = 0; m = 2
    np.testing.assert_array_equal(graph.node_items[0], [1, 2, 3, 4] + [N_ITEMS] * 6)
    np.testing.assert_array_equal(graph.node_mask[0], [True] * 4 + [False] * 6)
    expected = np.array([[0, 2, 1, 1], [2, 0, 1, 2], [1, 1, 0, 0], [1, 2, 0, 0]]) / 2.0
    np.testing.assert_allclose(graph.weights[0, :4, :4], expected)
    assert float(jnp.abs(graph.weights[0, 4:]).sum() + jnp.abs(graph.weights[0, :, 4:]).sum()) == 0.0
    adjacency = np.asarray(jax.jit(step_adjacency)(graph)[0])
    for t, basket in enumerate(HISTORIES[0]):
        want = np.eye(10) * 0.5
        for i, j in itertools.permutations(basket, 2):
            want[i - 1, j - 1] = expected[i - 1, j - 1]
        np.testing.assert_allclose(adjacency[t], want, err_msg=f"step {t}")
    for t in range(3, 10):  # past the user's steps: identity, as the original pads
        np.testing.assert_allclose(adjacency[t], np.eye(10))
    # user 1: item 6 twice in basket 0 counts once: c(5,6) = 1, m = 1; item 0 alone in basket 1
    np.testing.assert_array_equal(graph.node_items[1, :3], [5, 6, 0])
    np.testing.assert_allclose(graph.weights[1, :3, :3], [[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(graph.occurrence_mask[1, :4], [True, True, False, True])
    np.testing.assert_allclose(graph.membership[1, :2, :3], [[1, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(graph.self_weight[1, :3], [1.0, 1.0, 1.0])


def reference_scores(params, histories, norm="layer", n_heads=2, eps=1e-5):
    """The original's forward (spec 2.1) with loops, in float64: users padded to the batch's T_max with
    identity adjacencies, LayerNorm per (node, step) or BatchNorm over all users' nodes and T_max steps."""
    p = {k: np.asarray(v, np.float64) for k, v in params["params"].items()}
    emb, d = p["item_embedding"], p["item_embedding"].shape[1]
    users = []
    for history in histories:
        baskets = [sorted(set(b)) for b in history]
        nodes = sorted(set(itertools.chain(*baskets)))
        index = {item: k for k, item in enumerate(nodes)}
        count = {}
        for basket in baskets:
            for i, j in itertools.permutations(basket, 2):
                count[i, j] = count.get((i, j), 0) + 1
        m = max([1, *count.values()])
        users.append((baskets, nodes, index, count, m))
    t_max = max(len(u[0]) for u in users)
    states = [emb[u[1]] for u in users]  # [n, d], static
    for layer in range(2):
        outputs = []
        for (baskets, nodes, index, count, m), h in zip(users, states, strict=True):
            out = np.zeros((len(nodes), t_max, d))
            for t in range(t_max):
                a = np.eye(len(nodes))
                if t < len(baskets):
                    a /= m
                    for i, j in itertools.permutations(baskets[t], 2):
                        a[index[i], index[j]] = count[i, j] / m
                x = h if h.ndim == 2 else h[:, t]
                out[:, t] = (a @ x) @ p[f"gcn_{layer}"] + p[f"gcn_{layer}_b"]
            outputs.append(out)
        if norm == "batch":
            every = np.concatenate(outputs).reshape(-1, d)
            mean, var = every.mean(0), every.var(0)
        else:
            mean = var = None
        states = []
        for out in outputs:
            mu = out.mean(-1, keepdims=True) if mean is None else mean
            sigma2 = out.var(-1, keepdims=True) if var is None else var
            states.append(np.maximum((out - mu) / np.sqrt(sigma2 + eps) * p[f"norm_{layer}_scale"] + p[f"norm_{layer}_bias"], 0))
    scores = []
    hd = d // n_heads
    for (baskets, nodes, _, _, _), h in zip(users, states, strict=True):
        e = emb[:N_ITEMS].copy()
        for k, item in enumerate(nodes):
            z = np.zeros((t_max, d))
            for head in range(n_heads):
                cols = slice(head * hd, (head + 1) * hd)
                q, key, v = (h[k] @ p[name][:, cols] for name in ("query", "key", "value"))
                for t in range(t_max):
                    s = np.array([q[t] @ key[u] / np.sqrt(hd) for u in range(t + 1)])
                    w = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
                    z[t, cols] = w @ v[: t + 1]
            vec = sum((z[t] @ p["temporal"][:, 0]) * z[t] for t in range(len(baskets)))
            alpha = p["alpha"][item, 0]
            e[item] = (1 - alpha) * emb[item] + alpha * vec
        scores.append(e @ p["output"][:, 0] + p["output_b"][0])
    return np.stack(scores)


def random_params(model, seed=0, dtype=jnp.float32):
    """Initial parameters with the norm affine terms and biases moved off their 1 / 0 init (one jit)."""

    @jax.jit
    def draw(key):
        params = model.init(key, CONTEXT)
        keys = iter(jax.random.split(jax.random.fold_in(key, 1), 32))
        return jax.tree.map(lambda x: (x + 0.3 * jax.random.normal(next(keys), x.shape)).astype(dtype), params)

    return draw(jax.random.PRNGKey(seed))


@pytest.mark.parametrize("norm", ["layer", pytest.param("batch", marks=pytest.mark.slow)])
def test_forward_matches_loop_implementation(norm):
    model = build_model("DNNTSP", norm=norm, **SMALL)
    params = random_params(model)
    batch = batch_of(HISTORIES, width=16)
    scores = jax.jit(lambda p, q: model.logits(p, CONTEXT, q))(params, batch)
    assert scores.shape == (3, N_ITEMS)
    np.testing.assert_allclose(scores, reference_scores(params, HISTORIES, norm), rtol=2e-4, atol=2e-5)


def test_padding_is_inert():
    model = build_model("DNNTSP", **SMALL)
    params = random_params(model, seed=3)
    scores = jax.jit(lambda p, q: model.logits(p, CONTEXT, q))
    narrow = scores(params, batch_of(HISTORIES, width=9))
    wide = batch_of(HISTORIES, width=24, size=5)  # more padded occurrences, steps and rows
    garbage = np.asarray(wide["items"]).copy()
    garbage[:, 20:] = 1  # real items past `lengths` are ignored
    wide = dict(wide, items=jnp.asarray(garbage))
    np.testing.assert_allclose(scores(params, wide)[:3], narrow, rtol=1e-5, atol=1e-6)
    # the padding item's rows of the tables never reach a score
    moved = jax.tree.map(lambda x: x, params)
    moved["params"]["item_embedding"] = params["params"]["item_embedding"].at[N_ITEMS].add(5.0)
    moved["params"]["alpha"] = params["params"]["alpha"].at[N_ITEMS].set(0.5)
    np.testing.assert_allclose(scores(moved, wide)[:3], narrow, rtol=1e-5, atol=1e-6)
    # with LayerNorm a row's scores do not depend on the other rows of its batch
    alone = scores(params, batch_of(HISTORIES[2:], width=9))
    np.testing.assert_allclose(alone[0], narrow[2], rtol=1e-5, atol=1e-6)
    # a user without history gets the user-independent scores E_i . w_o + b_o
    empty = scores(params, batch_of([[]], width=9))[0]
    p = params["params"]
    np.testing.assert_allclose(empty, p["item_embedding"][:N_ITEMS] @ p["output"][:, 0] + p["output_b"][0], rtol=1e-5, atol=1e-6)


def test_forward_over_reverse_traces():
    """Every op has a JVP rule: jax.jvp of jax.grad traces (shapes only, no compile)."""
    model = build_model("DNNTSP", **SMALL)
    params = model.init(jax.random.PRNGKey(0), CONTEXT)
    batch = batch_of(HISTORIES, width=16, targets=TARGETS)
    grad = jax.grad(lambda p: model.loss(p, CONTEXT, batch, None))
    shapes = jax.eval_shape(lambda p: jax.jvp(grad, (p,), (p,))[1], params)
    assert jax.tree.map(lambda s: s.shape, shapes) == jax.tree.map(lambda x: x.shape, params)


@pytest.mark.slow  # a float64 forward-over-reverse compile: ~10 s on a loaded 2-core machine
def test_hessian_vector_product_forward_over_reverse_matches_finite_difference():
    """jax.jvp of jax.grad (what the influence methods run) against central differences of the
    gradient, in float64 so that a small step resolves the curvature."""
    model = build_model("DNNTSP", **SMALL)
    with jax.enable_x64(True):
        params = random_params(model, seed=5, dtype=jnp.float64)
        batch = batch_of(HISTORIES, width=16, targets=TARGETS)
        grad = jax.grad(lambda p: model.loss(p, CONTEXT, batch, None))
        direction = random_params(model, seed=9, dtype=jnp.float64)
        eps = 1e-5

        @jax.jit
        def hvp_and_difference(p, v):
            step = lambda sign: jax.tree.map(lambda p, v: p + sign * eps * v, p, v)
            return jax.jvp(grad, (p,), (v,))[1], grad(step(1.0)), grad(step(-1.0))

        hvp, g_plus, g_minus = hvp_and_difference(params, direction)
    flat = lambda tree: np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])
    difference = (flat(g_plus) - flat(g_minus)) / (2 * eps)
    exact = flat(hvp)
    assert exact.dtype == np.float64 and np.all(np.isfinite(exact))
    assert np.linalg.norm(exact - difference) <= 1e-5 * np.linalg.norm(exact)


def test_adam_steps_reduce_the_loss():
    model = build_model("DNNTSP", **SMALL)
    params = model.init(jax.random.PRNGKey(1), CONTEXT)
    batch = batch_of(HISTORIES, width=16, size=4, targets=TARGETS)
    optimiser = optax.adam(1e-2)
    loss = lambda p: model.loss(p, CONTEXT, batch, None)

    @jax.jit
    def step(p, state):
        value, grads = jax.value_and_grad(loss)(p)
        updates, state = optimiser.update(grads, state, p)
        return optax.apply_updates(p, updates), state, value

    state = optimiser.init(params)
    values = []
    for _ in range(30):
        params, state, value = step(params, state)
        values.append(float(value))
    assert values[-1] < 0.7 * values[0]


def test_representation_is_the_frequency_weighted_mean_of_gated_embeddings():
    model = build_model("DNNTSP", **SMALL)
    params = random_params(model, seed=2)
    batch = batch_of(HISTORIES, width=16)
    network = model.network(CONTEXT)
    inputs = (batch["items"], batch["baskets"], batch["lengths"], batch["n_baskets"])

    def gated(net, *inputs):
        graph = net.graph(*inputs)
        return net.gated(graph, net.node_vectors(graph))

    @jax.jit
    def both(params, batch):
        return model.representation(params, CONTEXT, batch), network.apply(params, *inputs, method=gated)

    representation, e = both(params, batch)
    # user 0: nodes 1, 2, 3, 4 in 2, 3, 1, 2 baskets
    want = (2 / 3 * e[0, 0] + e[0, 1] + 1 / 3 * e[0, 2] + 2 / 3 * e[0, 3]) / 4
    np.testing.assert_allclose(representation[0], want, rtol=1e-5, atol=1e-6)
    assert representation.shape == (3, 8)
