"""Exact checks of the CF models against dense numpy computations on tiny data."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model, get_model_class, model_names
from erase_jax.models.cf.graph import light_gcn_embeddings
from erase_jax.models.cf.sgl import info_nce

N_USERS, N_ITEMS = 6, 7


def tiny_train(seed=0, n_pairs=16) -> CFTrainData:
    """Random pairs with every user and item present, and one pair repeated."""
    rng = np.random.default_rng(seed)
    users = np.concatenate([np.arange(N_USERS), rng.integers(0, N_USERS, n_pairs)])
    items = np.concatenate(
        [rng.integers(0, N_ITEMS, N_USERS), rng.permutation(N_ITEMS), rng.integers(0, N_ITEMS, n_pairs - N_ITEMS)]
    )
    users, items = np.append(users, users[0]), np.append(items, items[0])
    return CFTrainData(N_USERS, N_ITEMS, users.astype(np.int32), items.astype(np.int32))


def dense_normalized_adjacency(n_users, n_items, users, items):
    """D^-1/2 A D^-1/2 of the bipartite graph of the UNIQUE pairs, as RecBole builds it."""
    adjacency = np.zeros((n_users + n_items, n_users + n_items))
    adjacency[users, n_users + items] = 1.0
    adjacency[n_users + items, users] = 1.0
    scale = (adjacency.sum(axis=1) + 1e-7) ** -0.5
    return scale[:, None] * adjacency * scale[None, :]


def dense_light_gcn(adjacency_per_layer, user_emb, item_emb):
    layer = np.concatenate([user_emb, item_emb]).astype(np.float64)
    total = layer.copy()
    for adjacency in adjacency_per_layer:
        layer = adjacency @ layer
        total += layer
    total /= len(adjacency_per_layer) + 1
    return total[: len(user_emb)], total[len(user_emb) :]


def embedding_tables(params):
    tables = params["params"]
    return np.asarray(tables["user_embedding"]["embedding"]), np.asarray(tables["item_embedding"]["embedding"])


def padded_batch(users, pos, neg, n_padding=3, seed=1):
    """A CF batch with `n_padding` weight-0 rows of random ids appended."""
    rng = np.random.default_rng(seed)
    pad = lambda x, n: np.concatenate([x, rng.integers(0, n, n_padding)]).astype(np.int32)
    weight = np.concatenate([np.ones(len(users)), np.zeros(n_padding)]).astype(np.float32)
    return {"users": pad(users, N_USERS), "pos": pad(pos, N_ITEMS), "neg": pad(neg, N_ITEMS), "weight": weight}


def test_lightgcn_propagation_matches_dense_and_edge_removal_keeps_shapes():
    model = build_model("LightGCN", embedding_size=4, n_layers=3)
    train = tiny_train()
    capacity = len(train) + 5
    context = model.prepare(train, capacity=capacity)
    user_emb, item_emb = embedding_tables(model.init(jax.random.key(0), context))
    traces = []

    @jax.jit
    def propagate(graph):
        traces.append(1)
        return light_gcn_embeddings(graph, graph.weights, jnp.asarray(user_emb), jnp.asarray(item_emb), model.n_layers)

    adjacency = dense_normalized_adjacency(N_USERS, N_ITEMS, train.users, train.items)
    expected = dense_light_gcn([adjacency] * 3, user_emb, item_emb)
    np.testing.assert_allclose(propagate(context)[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(propagate(context)[1], expected[1], rtol=1e-5, atol=1e-6)

    keep = np.ones(len(train), bool)
    keep[[0, 3, 4, len(train) - 1]] = False  # both copies of the repeated pair go too
    reduced = CFTrainData(N_USERS, N_ITEMS, train.users[keep], train.items[keep])
    reduced_context = model.prepare(reduced, capacity=capacity)
    adjacency = dense_normalized_adjacency(N_USERS, N_ITEMS, reduced.users, reduced.items)
    expected = dense_light_gcn([adjacency] * 3, user_emb, item_emb)
    actual = propagate(reduced_context)
    np.testing.assert_allclose(actual[0], expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(actual[1], expected[1], rtol=1e-5, atol=1e-6)
    assert len(traces) == 1  # same capacity, same compiled code


def test_lightgcn_propagation_gradient_matches_dense_autodiff():
    """The sparse product's custom VJP (transpose = the other CSR copy) against dense autodiff."""
    model = build_model("LightGCN", embedding_size=3, n_layers=2)
    train = tiny_train(seed=3)
    context = model.prepare(train, capacity=len(train) + 4)
    user_emb, item_emb = (jnp.asarray(t) for t in embedding_tables(model.init(jax.random.key(1), context)))
    probe_users = jax.random.normal(jax.random.key(2), user_emb.shape)
    probe_items = jax.random.normal(jax.random.key(3), item_emb.shape)
    adjacency = jnp.asarray(dense_normalized_adjacency(N_USERS, N_ITEMS, train.users, train.items), jnp.float32)

    def sparse_objective(users, items):
        final_users, final_items = light_gcn_embeddings(context, context.weights, users, items, 2)
        return jnp.sum(final_users * probe_users) + jnp.sum(jnp.sin(final_items) * probe_items)

    def dense_objective(users, items):
        layer = jnp.concatenate([users, items])
        total = layer + adjacency @ layer + adjacency @ (adjacency @ layer)
        final_users, final_items = total[:N_USERS] / 3, total[N_USERS:] / 3
        return jnp.sum(final_users * probe_users) + jnp.sum(jnp.sin(final_items) * probe_items)

    got = jax.grad(sparse_objective, argnums=(0, 1))(user_emb, item_emb)
    want = jax.grad(dense_objective, argnums=(0, 1))(user_emb, item_emb)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_graph_capacity_must_hold_all_unique_pairs():
    with pytest.raises(ValueError, match="capacity"):
        build_model("LightGCN").prepare(tiny_train(), capacity=3)


def test_bpr_loss_by_hand_and_padding_rows_change_nothing():
    model = build_model("BPR", embedding_size=2)
    context = model.prepare(tiny_train())
    params = model.init(jax.random.key(0), context)
    user_emb = np.zeros((N_USERS, 2), np.float32)
    item_emb = np.zeros((N_ITEMS, 2), np.float32)
    user_emb[:2] = [[1, 0], [0, 1]]
    item_emb[:3] = [[1, 1], [0, 2], [-1, 0]]
    params = {"params": {"user_embedding": {"embedding": user_emb}, "item_embedding": {"embedding": item_emb}}}
    # score differences: user 0: <(1,0),(1,1)> - <(1,0),(-1,0)> = 2; user 1: <(0,1),(0,2)> - <(0,1),(1,1)> = 1
    expected = -(math.log(1e-10 + 1 / (1 + math.exp(-2))) + math.log(1e-10 + 1 / (1 + math.exp(-1)))) / 2
    users, pos, neg = np.array([0, 1]), np.array([0, 1]), np.array([2, 0])
    plain = {"users": users, "pos": pos, "neg": neg, "weight": np.ones(2, np.float32)}
    padded = padded_batch(users, pos, neg)
    loss_and_grad = jax.jit(jax.value_and_grad(model.loss))
    plain_loss, plain_grad = loss_and_grad(params, context, plain, jax.random.key(0))
    padded_loss, padded_grad = loss_and_grad(params, context, padded, jax.random.key(0))
    assert plain_loss == pytest.approx(expected, rel=1e-6)
    assert padded_loss == pytest.approx(expected, rel=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7), plain_grad, padded_grad)


@pytest.mark.parametrize("require_pow", [False, True])
def test_lightgcn_loss_is_bpr_plus_regularizer(require_pow):
    model = build_model("LightGCN", embedding_size=4, n_layers=2, reg_weight=0.3, require_pow=require_pow)
    train = tiny_train()
    context = model.prepare(train, capacity=len(train) + 2)
    params = model.init(jax.random.key(1), context)
    user_ego, item_ego = embedding_tables(params)
    users, pos, neg = np.array([0, 1, 4, 5]), np.array([1, 2, 3, 0]), np.array([6, 5, 4, 3])
    batch = padded_batch(users, pos, neg)

    adjacency = dense_normalized_adjacency(N_USERS, N_ITEMS, train.users, train.items)
    user_final, item_final = dense_light_gcn([adjacency] * 2, user_ego, item_ego)
    differences = np.sum(user_final[users] * (item_final[pos] - item_final[neg]), axis=1)
    bpr = -np.mean(np.log(1e-10 + 1 / (1 + np.exp(-differences))))
    norms = [np.linalg.norm(user_ego[users]), np.linalg.norm(item_ego[pos]), np.linalg.norm(item_ego[neg])]
    regularizer = (sum(n**2 for n in norms) / 2 if require_pow else sum(norms)) / len(users)

    actual = jax.jit(model.loss)(params, context, batch, jax.random.key(0))
    assert actual == pytest.approx(bpr + 0.3 * regularizer, rel=1e-5)


def test_info_nce_matches_the_formula():
    rng = np.random.default_rng(0)
    anchors, positives, candidates = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(9, 3))
    weight = np.array([1.0, 1.0, 1.0, 0.0])
    tau = 0.2
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    z1, z2, all_z2 = unit(anchors), unit(positives), unit(candidates)
    ratios = np.exp(np.sum(z1 * z2, axis=1) / tau) / np.exp(z1 @ all_z2.T / tau).sum(axis=1)
    expected = -np.sum(np.log(ratios[:3]))
    vectors = (jnp.asarray(x, jnp.float32) for x in (anchors, positives, candidates))
    actual = info_nce(*vectors, tau, jnp.asarray(weight))
    assert actual == pytest.approx(expected, rel=1e-5)


def view_adjacency(context, view_weights):
    """The dense normalised adjacency of the edges an augmented view kept (weight > 0)."""
    graph = context.graph
    kept = np.asarray(view_weights) > 0
    users, items = np.asarray(graph.users)[kept], np.asarray(graph.items)[kept]
    return dense_normalized_adjacency(N_USERS, N_ITEMS, users, items), kept


def test_sgl_edge_dropout_view_keeps_int_90_percent_and_renormalizes():
    model = build_model("SGL", embedding_size=4, drop_ratio=0.1)
    train = tiny_train(n_pairs=40)
    context = model.prepare(train, capacity=60)
    n_unique = len(np.unique(train.users * N_ITEMS + train.items))
    context = jax.jit(model.epoch_context)(context, jax.random.key(3))
    for view_weights in context.view_weights:
        adjacency, kept = view_adjacency(context, view_weights)
        assert kept.sum() == int(0.9 * n_unique)
        assert not kept[n_unique:].any()  # padding edges are never drawn
        graph = context.graph
        expected = adjacency[np.asarray(graph.users)[kept], N_USERS + np.asarray(graph.items)[kept]]
        np.testing.assert_allclose(np.asarray(view_weights)[kept], expected, rtol=1e-6)
    assert not np.array_equal(*(np.asarray(w) > 0 for w in context.view_weights))


def test_sgl_node_dropout_view_removes_whole_nodes():
    model = build_model("SGL", embedding_size=4, type="ND", drop_ratio=0.2)  # drops int(1.2) users, int(1.4) items
    context = model.prepare(tiny_train(n_pairs=40))
    context = jax.jit(model.epoch_context)(context, jax.random.key(3))
    users, items = np.asarray(context.graph.users), np.asarray(context.graph.items)
    for view_weights in context.view_weights:
        kept = np.asarray(view_weights) > 0
        assert len(np.unique(users[kept])) == N_USERS - 1 and len(np.unique(items[kept])) == N_ITEMS - 1
        dropped_user_or_item = ~np.isin(users, users[kept]) | ~np.isin(items, items[kept])
        np.testing.assert_array_equal(kept, ~dropped_user_or_item)


@pytest.mark.parametrize("augmentation", ["ED", pytest.param("ND", marks=pytest.mark.slow), pytest.param("RW", marks=pytest.mark.slow)])
def test_sgl_loss_matches_dense_computation(augmentation):
    model = build_model("SGL", embedding_size=4, n_layers=2, type=augmentation, drop_ratio=0.2, reg_weight=0.5)
    train = tiny_train(n_pairs=40)
    context = jax.jit(model.epoch_context)(model.prepare(train, capacity=60), jax.random.key(5))
    params = model.init(jax.random.key(2), context)
    user_ego, item_ego = embedding_tables(params)
    users, pos, neg = np.array([0, 2, 3, 5]), np.array([1, 2, 6, 0]), np.array([4, 5, 0, 3])
    batch = padded_batch(users, pos, neg)

    full_adjacency = dense_normalized_adjacency(N_USERS, N_ITEMS, train.users, train.items)
    main = dense_light_gcn([full_adjacency] * 2, user_ego, item_ego)
    views = []
    for view_weights in context.view_weights:
        per_layer = view_weights if augmentation == "RW" else [view_weights] * 2
        views.append(dense_light_gcn([view_adjacency(context, w)[0] for w in per_layer], user_ego, item_ego))
    differences = np.sum(main[0][users] * (main[1][pos] - main[1][neg]), axis=1)
    bpr = np.sum(np.log1p(np.exp(-differences)))
    regularizer = sum(np.linalg.norm(x) for x in (user_ego[users], item_ego[pos], item_ego[neg])) / len(users)

    def ssl(view1, view2, rows):
        unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
        z1, z2, all_z2 = unit(view1[rows]), unit(view2[rows]), unit(view2)
        return -np.sum(np.log(np.exp(np.sum(z1 * z2, 1) / 0.2) / np.exp(z1 @ all_z2.T / 0.2).sum(1)))

    ssl_total = ssl(views[0][0], views[1][0], users) + ssl(views[0][1], views[1][1], pos)
    expected = bpr + 0.5 * regularizer + 0.1 * ssl_total
    actual = jax.jit(model.loss)(params, context, batch, jax.random.key(0))
    assert actual == pytest.approx(expected, rel=1e-5)


def test_sgl_rejects_unknown_augmentation():
    with pytest.raises(ValueError, match="type"):
        build_model("SGL", type="XX")


def test_pop_scores_are_normalized_counts():
    train = tiny_train()
    model = build_model("Pop")
    context = model.prepare(train)
    counts = np.bincount(train.items, minlength=N_ITEMS)
    scores = jax.jit(model.scores)(model.init(jax.random.key(0), context), context, {"users": np.array([0, 3, 3])})
    np.testing.assert_allclose(scores, np.tile(counts / counts.max(), (3, 1)), rtol=1e-6)


def test_itemknn_scores_match_dense_top_k_cosine():
    rng = np.random.default_rng(2)  # a seed whose top-3 sets have no ties, see the assert below
    n_users, n_items, k, shrink = 9, 8, 3, 0.5
    users = rng.integers(0, n_users, 40).astype(np.int32)
    items = rng.integers(0, n_items, 40).astype(np.int32)
    train = CFTrainData(n_users, n_items, users, items)
    counts = np.zeros((n_users, n_items))
    np.add.at(counts, (users, items), 1.0)  # repeated pairs add up, as in RecBole's CSR matrix
    assert counts.max() > 1
    norms = np.linalg.norm(counts, axis=0)
    similarity = counts.T @ counts / (norms[:, None] * norms[None, :] + shrink + 1e-6)
    np.fill_diagonal(similarity, 0.0)
    ranked = np.sort(similarity, axis=0)[::-1]
    assert np.all(ranked[k - 1] > ranked[k] + 1e-6)  # the top-k sets are unique
    pruned = np.where(similarity >= ranked[k - 1][None, :], similarity, 0.0)  # W[i, j], top-k per column j

    model = build_model("ItemKNN", k=k, shrink=shrink)
    context = model.prepare(train)
    query = np.array([0, 4, 8, 4], np.int32)
    scores = jax.jit(model.scores)(model.init(jax.random.key(0), context), context, {"users": query})
    np.testing.assert_allclose(scores, (counts @ pruned)[query], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in model_names() if get_model_class(n).task == "CF"])  # SBR: test_sbr_models.py
def test_every_model_jits_with_finite_loss_gradient_and_scores(name):
    hyperparameters = {"ItemKNN": {"k": 3}}.get(name, {"embedding_size": 8} if get_model_class(name).trainable else {})
    model = build_model(name, **hyperparameters)
    train = tiny_train()
    context = model.prepare(train, capacity=len(train) + 4)
    context = jax.jit(model.epoch_context)(context, jax.random.key(7))
    params = model.init(jax.random.key(0), context)
    batch = padded_batch(np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([4, 5, 6]))
    loss, grads = jax.jit(jax.value_and_grad(model.loss))(params, context, batch, jax.random.key(1))
    assert loss.shape == () and np.isfinite(loss)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    scores = jax.jit(model.scores)(params, context, {"users": np.array([0, 5, 2, 2, 1], np.int32)})
    assert scores.shape == (5, N_ITEMS) and scores.dtype == jnp.float32 and np.isfinite(scores).all()


@pytest.mark.slow
def test_bpr_training_lowers_the_loss_on_latent_factor_data():
    rng = np.random.default_rng(0)
    n_users, n_items, n_liked = 60, 50, 8
    true_scores = rng.normal(size=(n_users, 4)) @ rng.normal(size=(4, n_items))
    liked = np.argsort(-true_scores, axis=1)[:, :n_liked]
    users = np.repeat(np.arange(n_users), n_liked).astype(np.int32)
    train = CFTrainData(n_users, n_items, users, liked.ravel().astype(np.int32))
    model = build_model("BPR", embedding_size=8)
    context = model.prepare(train)
    params = model.init(jax.random.key(0), context)
    optimizer = optax.adam(0.01)
    state = optimizer.init(params)

    def sample_batch(key, size=128):
        row_key, neg_key = jax.random.split(key)
        rows = jax.random.randint(row_key, (size,), 0, len(train))
        neg = jax.random.randint(neg_key, (size,), 0, n_items)
        pairs = {"users": jnp.asarray(train.users)[rows], "pos": jnp.asarray(train.items)[rows]}
        return {**pairs, "neg": neg, "weight": jnp.ones(size)}

    def train_step(carry, key):
        params, state = carry
        grads = jax.grad(model.loss)(params, context, sample_batch(key), key)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    evaluation_batch = sample_batch(jax.random.key(123), size=2048)
    evaluation_loss = jax.jit(lambda params: model.loss(params, context, evaluation_batch, jax.random.key(0)))
    initial = evaluation_loss(params)
    train_steps = jax.jit(lambda carry, keys: jax.lax.scan(train_step, carry, keys)[0])
    params, _ = train_steps((params, state), jax.random.split(jax.random.key(1), 300))
    final = evaluation_loss(params)
    assert initial == pytest.approx(math.log(2), abs=0.05)
    assert final < 0.5 * initial
