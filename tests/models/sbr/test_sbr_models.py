"""Session-based models: SR-GNN's graphs, masking, training on a tiny task, evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.batching.sequences import SequenceBatcher
from erase_jax.data.interactions import from_tokens
from erase_jax.data.sequences import augment, split_rows
from erase_jax.evaluators.metrics import ranking_metrics
from erase_jax.evaluators.sequence_ranking import evaluate_sbr
from erase_jax.models import build_model
from erase_jax.models.sbr.base import SequenceShape
from erase_jax.models.sbr.srgnn import session_graph
from erase_jax.train import TrainConfig, init_state, make_optimizer, make_train_epoch

SMALL = {
    "GRU4Rec": dict(embedding_size=8, hidden_size=12),
    "NARM": dict(embedding_size=8, hidden_size=10),
    "SASRec": dict(hidden_size=8, inner_size=16),
    "SRGNN": dict(embedding_size=8),
}
N_ITEMS = 12


def test_srgnn_graph_matches_a_hand_built_adjacency():
    pad = 99
    # items 5 7 5 9: nodes by first occurrence 5 -> 0, 7 -> 1, 9 -> 2; edges 0->1, 1->0, 0->2
    items = jnp.array([[5, 7, 5, 9, pad, pad], [4, 4, 6, 4, 6, pad]])
    lengths = jnp.array([4, 5])
    node_items, alias, incoming, outgoing = (np.asarray(a) for a in session_graph(items, lengths, pad))
    assert node_items[0].tolist() == [5, 7, 9, pad, pad, pad]
    assert alias[0, :4].tolist() == [0, 1, 0, 2]
    expected_in = np.zeros((6, 6))
    expected_in[0, 1] = 1.0  # node 0 has one predecessor (7)
    expected_in[1, 0] = 1.0
    expected_in[2, 0] = 1.0
    expected_out = np.zeros((6, 6))
    expected_out[0, 1] = expected_out[0, 2] = 0.5  # node 0 has two successors
    expected_out[1, 0] = 1.0
    np.testing.assert_allclose(incoming[0], expected_in)
    np.testing.assert_allclose(outgoing[0], expected_out)
    # 4 4 6 4 6: nodes 4 -> 0, 6 -> 1; edges 0->0 (self loop), 0->1, 1->0 (each counted once)
    assert node_items[1, :2].tolist() == [4, 6] and alias[1, :5].tolist() == [0, 0, 1, 0, 1]
    adjacency = np.array([[1, 1], [1, 0]], float)
    np.testing.assert_allclose(incoming[1, :2, :2], adjacency.T / adjacency.sum(0)[:, None])
    np.testing.assert_allclose(outgoing[1, :2, :2], adjacency / adjacency.sum(1)[:, None])
    assert np.all(incoming[1, 2:] == 0) and np.all(outgoing[1, :, 2:] == 0)


def _random_sequences(n, width, seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, n)
    items = rng.integers(0, N_ITEMS, (n, width))
    items[np.arange(width)[None, :] >= lengths[:, None]] = N_ITEMS
    return jnp.asarray(items, jnp.int32), jnp.asarray(lengths, jnp.int32)


@pytest.mark.parametrize("name", [n if n == "GRU4Rec" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(SMALL)])
def test_representation_ignores_padding_and_bucket_width(name):
    model = build_model(name, **SMALL[name])
    context = SequenceShape(N_ITEMS, 16)
    params = model.init(jax.random.PRNGKey(0), context)
    items, lengths = _random_sequences(6, 8, seed=1)
    represent = jax.jit(lambda p, i, n: model.represent(p, context, i, n, None))
    reference = represent(params, items, lengths)
    # the same rows in a wider bucket whose padding holds real item ids
    garbage = jax.random.randint(jax.random.PRNGKey(2), (6, 16), 0, N_ITEMS)
    wide = jnp.where(jnp.arange(16)[None, :] < lengths[:, None], jnp.pad(items, ((0, 0), (0, 8))), garbage)
    np.testing.assert_allclose(represent(params, wide, lengths), reference, rtol=1e-5, atol=1e-6)


def test_sasrec_no_position_sees_the_future_or_padding():
    model = build_model("SASRec", **SMALL["SASRec"])
    context = SequenceShape(N_ITEMS, 8)
    params = model.init(jax.random.PRNGKey(0), context)
    items, lengths = _random_sequences(5, 8, seed=3)
    lengths = jnp.maximum(lengths, 4)
    encode = jax.jit(lambda i, n: model.encode(params, context, i, n, None))
    states = np.asarray(encode(items, lengths))
    for position in range(8):
        later = jnp.arange(8)[None, :] > position
        perturbed = jnp.where(later, (items + 3) % N_ITEMS, items)
        changed = np.asarray(encode(perturbed, lengths))
        np.testing.assert_allclose(changed[:, : position + 1], states[:, : position + 1], rtol=1e-5, atol=1e-6)
    # the last-position shortcut of `represent` gives the full pass's numbers
    last = np.asarray(jax.jit(lambda i, n: model.represent(params, context, i, n, None))(items, lengths))
    np.testing.assert_allclose(last, states[np.arange(5), np.asarray(lengths) - 1], rtol=1e-5, atol=1e-6)
    # a longer length lets the last position see more: the mask is not vacuous
    assert not np.allclose(np.asarray(encode(items, lengths + 1))[:, -1], states[:, -1])


def _cyclic_task(n_sequences=40, length=9, seed=0, max_length=8):
    """Each sequence walks the items in a fixed cycle from a random start: next item = item + 1."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sequences):
        start = rng.integers(N_ITEMS)
        rows += [(f"s{s}", f"i{(start + t) % N_ITEMS}", t) for t in range(length)]
    users, items, times = zip(*rows)
    inter = from_tokens(np.asarray(users), np.asarray(items), timestamps=np.asarray(times, float),
                        item_vocabulary=np.asarray([f"i{k}" for k in range(N_ITEMS)]))
    return split_rows(augment(inter, max_length=max_length))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMALL))
def test_loss_decreases_and_ranking_learns_the_cycle(name):
    split = _cyclic_task()
    model = build_model(name, **SMALL[name])
    context = model.prepare(split.train)
    batcher = SequenceBatcher.build(split.train, batch_size=64)
    config = TrainConfig(learning_rate=0.02)
    optimizer = make_optimizer(config, batcher.n_batches)
    state = init_state(model, context, optimizer, seed=0)
    train_epoch = make_train_epoch(model, optimizer)
    losses = []
    for epoch in range(20):
        state, loss = train_epoch(state, context, batcher, batcher.shuffled_order(0, epoch))
        losses.append(float(loss))
    assert losses[-1] < 0.5 * losses[0], losses
    metrics = evaluate_sbr(model, state.params, context, split.test, ks=(1, 5))
    assert metrics["hit@5"] > 0.5, metrics


def test_evaluation_matches_brute_force_ranking():
    split = _cyclic_task(n_sequences=30, length=20, seed=4, max_length=16)
    model = build_model("GRU4Rec", **SMALL["GRU4Rec"])
    context = model.prepare(split.train)
    params = model.init(jax.random.PRNGKey(1), context)
    rows = split.test
    got = evaluate_sbr(model, params, context, rows, ks=(3, 5), block_size=4)
    scores = np.asarray(model.scores(params, context, {"items": jnp.asarray(rows.prefixes), "lengths": jnp.asarray(rows.lengths)}))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    expected = ranking_metrics(top == rows.targets[:, None], np.ones(len(rows), int), (3, 5))
    assert got.keys() == expected.keys()
    for key in got:
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def test_sknn_scores_by_jaccard_neighbours():
    # training sequences A: 0 1 2 (latest), B: 1 3, C: 4 (earliest); item 5 exists but is never seen
    rows = [("A", "i0", 10), ("A", "i1", 11), ("A", "i2", 12), ("B", "i1", 5), ("B", "i3", 6), ("C", "i4", 1), ("C", "i4", 2)]
    users, items, times = zip(*rows)
    inter = from_tokens(np.asarray(users), np.asarray(items), timestamps=np.asarray(times, float),
                        item_vocabulary=np.asarray([f"i{k}" for k in range(6)]))
    train = augment(inter, max_length=4)
    query = {"items": jnp.array([[1, 2, 6, 6]]), "lengths": jnp.array([2])}  # the set {1, 2}; 6 = padding
    scores = lambda **hyper: np.asarray(build_model("SKNN", **hyper).scores({}, build_model("SKNN").prepare(train), query))[0]
    # Jaccard: A 2/3, B 1/3, C 0; item scores sum the neighbours' similarities, divided by the max
    np.testing.assert_allclose(scores(), [2 / 3, 1, 2 / 3, 1 / 3, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(scores(k=1), [1, 1, 1, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(scores(sample_size=1), [1, 1, 1, 0, 0, 0], rtol=1e-6)  # A is the most recent
    np.testing.assert_allclose(scores(normalize=False), [2 / 3, 1, 2 / 3, 1 / 3, 0, 0], rtol=1e-6)


@pytest.mark.slow
def test_srgnn_cell_is_recbole_gnncell():
    """One propagation step against RecBole's GNNCell written out in numpy: messages over the
    [in; out] adjacency, gates from concat([in, out]) @ w_ih, and h' = (1 - z) h + z n."""
    model = build_model("SRGNN", **SMALL["SRGNN"])
    context = SequenceShape(N_ITEMS, 6)
    params = model.init(jax.random.PRNGKey(3), context)
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(2, 6, 8)).astype(np.float32)
    incoming, outgoing = (rng.uniform(size=(2, 6, 6)).astype(np.float32) for _ in range(2))
    network = model.network(context)
    got = np.asarray(network.apply(params, incoming, outgoing, hidden, method=type(network).gnn_cell))
    p = {k: np.asarray(v) for k, v in params["params"].items()}
    messages = np.concatenate([incoming @ (hidden @ p["edge_in"] + p["edge_in_b"]) + p["b_iah"],
                               outgoing @ (hidden @ p["edge_out"] + p["edge_out_b"]) + p["b_ioh"]], axis=-1)
    i_r, i_z, i_n = np.split(messages @ p["w_ih"] + p["b_ih"], 3, axis=-1)
    h_r, h_z, h_n = np.split(hidden @ p["w_hh"] + p["b_hh"], 3, axis=-1)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))
    reset, update = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
    expected = (1 - update) * hidden + update * np.tanh(i_n + reset * h_n)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_narm_gru_has_no_biases():
    params = build_model("NARM", **SMALL["NARM"]).init(jax.random.PRNGKey(0), SequenceShape(N_ITEMS, 8))
    assert not {"b_ih", "b_hh"} & set(params["params"])  # RecBole's NARM builds nn.GRU(bias=False)


@pytest.mark.parametrize("rate", [0.25, 0.3, 0.5])
def test_dropout_keeps_the_rate_and_scales(rate):
    from erase_jax.models.layers import dropout

    x = jnp.ones((64, 50, 64))
    first, second = (np.asarray(dropout(x, rate, jax.random.PRNGKey(s))) for s in (0, 1))
    dropped = first == 0
    assert abs(dropped.mean() - rate) < 0.005
    np.testing.assert_allclose(first[~dropped], 1 / (1 - rate), rtol=1e-6)
    assert abs(((first == 0) & (second == 0)).mean() - rate**2) < 0.005  # keys give independent masks
    assert np.array_equal(np.asarray(dropout(x, rate, None)), np.asarray(x))


def test_mixed_length_batches_cover_every_row_at_a_wide_enough_width():
    from erase_jax.batching.sequences import bucket_widths

    split = _cyclic_task(n_sequences=30, length=20, seed=5, max_length=16)
    batcher = SequenceBatcher.build(split.train, batch_size=32, mix_lengths=True)
    assert batcher.n_batches == -(-len(split.train) // 32)
    order = batcher.shuffled_order(1, 0)
    batches = jax.jit(lambda b, o: b.epoch(jax.random.PRNGKey(0), o))(batcher, order)
    weight = np.asarray(batches["weight"]).reshape(-1)
    assert sorted(order[weight > 0].tolist()) == list(range(len(split.train)))
    widths = bucket_widths(16)
    for lengths, bucket in zip(np.asarray(batches["lengths"]), np.asarray(batches["bucket"])):
        assert lengths.max() <= widths[bucket]
    assert len(set(np.asarray(batches["bucket"]).tolist())) == 1  # random rows: every batch needs the widest
