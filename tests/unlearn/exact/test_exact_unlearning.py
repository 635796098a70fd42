"""Exact unlearning (SISA, RecEraser): partitions, vmapped shard training, aggregation, requests.

Checked exactly where there is math to check: the vectorised capacity-limited assignment
against a plain sequential loop, shard capacities, the per-dimension anchor update, the
vmapped training of padded shards against each shard trained alone, an epoch's pre-drawn
negatives against the draws made step by step, attention weights that sum to one. The
request tests run the real method on a tiny synthetic run and check that only the shard
holding the removed interactions is retrained, that its data no longer holds them, and that
the result equals that shard trained from scratch without them; and that a removed
validation row retrains exactly the shards whose early stopping ranked it.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.config import load_config
from erase_jax.data.cf import CFTrainData
from erase_jax.evaluators.cf_ranking import evaluate_cf
from erase_jax.models import build_model
from erase_jax.run import build_experiment
from erase_jax.train import TrainConfig
from erase_jax.unlearn.exact import partition, shards, training
from erase_jax.unlearn.exact.aggregators import AttentionAggregator, MeanOfScores, ShardEmbeddings
from erase_jax.unlearn.exact.rows import remaining_train_rows, remaining_valid_rows, shard_data
from erase_jax.unlearn.exact.sisa import SISA
from erase_jax.unlearn.exact.validation import (
    OWN_ITEM_SLOTS,
    OwnItemsRanker,
    own_item_slots,
    own_validation_set,
    remaining_valid_set,
)
from erase_jax.unlearn.methods.base import build_method

N_USERS, N_ITEMS, N_SHARDS = 40, 30, 4


def random_pairs(n_pairs=600, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, N_USERS, n_pairs).astype(np.int32)
    items = rng.integers(0, N_ITEMS, n_pairs).astype(np.int32)
    user_embeddings = rng.normal(size=(N_USERS, 8))
    item_embeddings = rng.normal(size=(N_ITEMS, 8))
    return users, items, user_embeddings, item_embeddings


# ---------------------------------------------------------------------------------------------
# partitions


def sequential_greedy(distance: np.ndarray, shard_capacity: int) -> np.ndarray:
    """Algorithm 1's assignment written as the plain loop over sorted pairs."""
    n_units, n_shards = distance.shape
    assignment, counts = np.full(n_units, -1), np.zeros(n_shards, int)
    for flat in np.argsort(distance, axis=None, kind="stable"):
        unit, shard = divmod(int(flat), n_shards)
        if assignment[unit] < 0 and counts[shard] < shard_capacity:
            assignment[unit], counts[shard] = shard, counts[shard] + 1
    return assignment


@pytest.mark.parametrize("n_units,n_shards", [(50, 3), (400, 10), (13, 10)])
def test_capacity_greedy_equals_the_sequential_loop(monkeypatch, n_units, n_shards):
    monkeypatch.setattr(partition, "GREEDY_CHUNK", 32)  # many chunks, shards filling inside them
    rng = np.random.default_rng(n_units)
    distance = rng.random((n_units, n_shards)) ** 3
    distance[:, 0] *= 0.1  # one popular anchor: it fills early
    t = partition.capacity(n_units, n_shards)
    np.testing.assert_array_equal(partition.capacity_greedy(distance, t), sequential_greedy(distance, t))


@pytest.mark.parametrize("method", ["ubp", "ibp", "inbp"])
def test_balanced_partitions_respect_capacity_and_the_seed(method):
    users, items, user_emb, item_emb = random_pairs()
    made = partition.balanced_partition(method, users, items, user_emb, item_emb, N_SHARDS, seed=3, max_rounds=10)
    units = {"ubp": users, "ibp": items, "inbp": np.arange(len(users))}[method]
    units_per_shard = [len(np.unique(units[made.shard_of_row == s])) for s in range(N_SHARDS)]
    assert made.capacity == partition.capacity(len(np.unique(units)), N_SHARDS)
    assert max(units_per_shard) <= made.capacity and sum(units_per_shard) == len(np.unique(units))
    if method != "inbp":  # every pair follows its user (item)
        assert all(len(np.unique(made.shard_of_row[units == u])) == 1 for u in np.unique(units))
    again = partition.balanced_partition(method, users, items, user_emb, item_emb, N_SHARDS, seed=3, max_rounds=10)
    other = partition.balanced_partition(method, users, items, user_emb, item_emb, N_SHARDS, seed=4, max_rounds=10)
    np.testing.assert_array_equal(made.shard_of_row, again.shard_of_row)
    assert not np.array_equal(made.shard_of_row, other.shard_of_row)
    assert sum(made.summary()["shard_sizes"]) == len(users)


def test_partition_unit_norm_partitions_on_the_embeddings_divided_by_their_norms(tiny_experiment):
    experiment, params = tiny_experiment
    method = build_method("receraser", n_shards=3, partition_rounds=5, partition_unit_norm=True)
    made = method.make_partition(experiment.model, params, experiment)
    users, items = (np.asarray(e) for e in shards.final_embeddings(experiment.model, params, experiment.context))
    train = experiment.examples.train
    by_hand = partition.balanced_partition(
        "inbp", train.users, train.items, users / np.sqrt((users**2).sum(1))[:, None],
        items / np.sqrt((items**2).sum(1))[:, None], 3, experiment.config.seed, 5)
    np.testing.assert_array_equal(made.shard_of_row, by_hand.shard_of_row)
    raw = dataclasses.replace(method, partition_unit_norm=False).make_partition(experiment.model, params, experiment)
    assert not np.array_equal(made.shard_of_row, raw.shard_of_row)  # the option changes something
    np.testing.assert_array_equal(partition.unit_rows(np.zeros((2, 3))), np.zeros((2, 3)))


def test_a_balanced_partition_measures_on_the_given_embeddings_when_there_are_some(tiny_experiment):
    # The paper pre-trains WMF for the partition: any (users, items) arrays replace the run's.
    experiment, params = tiny_experiment
    method = build_method("receraser", n_shards=3, partition_rounds=5)
    train = experiment.examples.train
    rng = np.random.default_rng(7)
    other = rng.normal(size=(train.n_users, 4)), rng.normal(size=(train.n_items, 4))
    given = method.make_partition(experiment.model, params, experiment, other)
    by_hand = partition.balanced_partition("inbp", train.users, train.items, *other, 3, experiment.config.seed, 5)
    np.testing.assert_array_equal(given.shard_of_row, by_hand.shard_of_row)
    own = method.make_partition(experiment.model, params, experiment)
    assert not np.array_equal(given.shard_of_row, own.shard_of_row)


@pytest.mark.parametrize("unit", ["interactions", "users"])
def test_random_partition_is_balanced_and_seeded(unit):
    users = random_pairs()[0]
    made = partition.random_partition(users, N_SHARDS, seed=1, unit=unit)
    units = np.arange(len(users)) if unit == "interactions" else users
    per_shard = [len(np.unique(units[made.shard_of_row == s])) for s in range(N_SHARDS)]
    assert max(per_shard) - min(per_shard) <= 1
    np.testing.assert_array_equal(made.shard_of_row, partition.random_partition(users, N_SHARDS, 1, unit).shard_of_row)
    assert not np.array_equal(made.shard_of_row, partition.random_partition(users, N_SHARDS, 2, unit).shard_of_row)


def test_anchor_update_is_per_dimension_unless_the_compat_flag_asks_for_the_scalar_mean():
    points = np.array([[0.0, 10.0], [2.0, 20.0], [5.0, 5.0]])
    assignment = np.array([0, 0, 1])
    fallback = np.full((3, 2), -1.0)
    means = partition._shard_means(points, assignment, 3, fallback, scalar=False)
    np.testing.assert_allclose(means, [[1.0, 15.0], [5.0, 5.0], [-1.0, -1.0]])  # empty shard keeps its anchor
    scalar = partition._shard_means(points, assignment, 3, fallback, scalar=True)
    np.testing.assert_allclose(scalar[:2], [[8.0, 8.0], [5.0, 5.0]])


# ---------------------------------------------------------------------------------------------
# vmapped shard training


@pytest.mark.slow
@pytest.mark.parametrize("negatives, sampler", [("all", "rows"), ("shard_items", "rows"), ("shard_items", "users")])
def test_vmapped_shards_equal_each_shard_trained_alone(negatives, sampler):
    users, items, _, _ = random_pairs(140)
    sizes = [100, 40]  # under vmap the small shard runs 2 padding-only batches per epoch
    shard_users, shard_items = [users[:100], users[100:]], [items[:100], items[100:]]
    model = build_model("BPR", embedding_size=8, reg_weight=1e-3)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items))
    config = TrainConfig(epochs=2, batch_size=32, learning_rate=0.01, optimizer="adam", sampler=sampler)  # momentum: masking matters
    seeds = np.array([11, 12])
    stacked = shards.ShardData.build(N_USERS, N_ITEMS, shard_users, shard_items)
    together = training.train_shards(model, context, stacked, seeds, config, None, N_ITEMS, negatives=negatives)
    for s in range(2):
        alone_data = shards.ShardData.build(N_USERS, N_ITEMS, [shard_users[s]], [shard_items[s]])
        steps = shards.n_batches(alone_data, config.batch_size)
        epoch = shards.make_shard_epoch(model, shards.config_key(config), N_ITEMS, config.batch_size, steps, vmapped=False,
                                        negatives=negatives)
        params, opt_state = jax.tree.map(lambda x: x[0], shards.init_shards(model, context, config, seeds[s:s + 1], steps))
        key = shards.run_keys(seeds[s:s + 1])[0]
        one = jax.tree.map(lambda x: x[0], alone_data)
        user_rows = shards.shard_user_rows(alone_data, N_USERS) if sampler == "users" else None
        for e in range(config.epochs):
            order = shards.epoch_orders(np.array([sizes[s]]), seeds[s:s + 1], e, steps * config.batch_size, user_rows)[0]
            params, opt_state, _ = epoch(params, opt_state, jnp.bool_(True), context, one, order, jax.random.fold_in(key, e),
                                         jnp.int32(steps))
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(shards.shard_slice(together.params, s))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert shards.n_batches(stacked, config.batch_size) == 4 > steps == 2


@pytest.mark.slow
@pytest.mark.parametrize("negatives", ["all", "shard_items"])
def test_a_padded_one_shard_retrain_skips_its_padding_steps_and_equals_the_masked_epoch(negatives):
    users, items, _, _ = random_pairs(40, seed=3)
    model = build_model("BPR", embedding_size=8, reg_weight=1e-3)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items))
    config = TrainConfig(epochs=3, batch_size=16, learning_rate=0.01, optimizer="adam")
    seeds = np.array([7])
    padded = shards.ShardData.build(N_USERS, N_ITEMS, [users], [items], n_padded_rows=100)  # as after a partition
    steps = shards.n_batches(padded, config.batch_size)
    assert steps == 7 and shards.real_steps(np.array([40]), np.array([True]), config.batch_size) == 3
    assert shards.real_steps(np.array([40, 90]), np.array([True, False]), config.batch_size) == 3  # stopped shards don't count
    epoch = shards.make_shard_epoch(model, shards.config_key(config), N_ITEMS, config.batch_size, steps, negatives=negatives)
    start = shards.init_shards(model, context, config, seeds, steps)
    key = shards.run_keys(seeds)

    def run(n_steps):  # n_steps = steps: every padding-only batch runs, masked (the code before the bound)
        params, opt_state = start
        for e in range(config.epochs):
            orders = shards.epoch_orders(np.array([40]), seeds, e, steps * config.batch_size)
            epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(key, e)
            params, opt_state, loss = epoch(params, opt_state, jnp.array([True]), context, padded, jnp.asarray(orders), epoch_keys,
                                            jnp.int32(n_steps))
        return params, opt_state, loss

    bounded, masked = run(3), run(steps)
    for a, b in zip(jax.tree.leaves(bounded), jax.tree.leaves(masked)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    fit = training.train_shards(model, context, padded, seeds, config, None, N_ITEMS, negatives=negatives)
    alone = training.train_shards(model, context, shards.ShardData.build(N_USERS, N_ITEMS, [users], [items]), seeds, config, None,
                                  N_ITEMS, negatives=negatives)
    # train_shards runs one shard through the unvmapped epoch (a branch, not a select, per
    # step): the same arithmetic as the vmapped bounded epoch, fused differently.
    for a, b, c in zip(jax.tree.leaves(fit.params), jax.tree.leaves(bounded[0]), jax.tree.leaves(alone.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-5, atol=1e-6)


def test_user_sampler_draws_each_shard_user_equally_and_only_the_shards_rows():
    users = np.array([0] * 30 + [1] * 5 + [3] * 5, np.int32)  # user 2 has no row in this shard
    data = shards.ShardData.build(N_USERS, N_ITEMS, [users], [np.arange(40) % N_ITEMS], n_padded_rows=64)
    (user_rows,) = shards.shard_user_rows(data, N_USERS)
    orders = shards.epoch_orders(np.array([40]), np.array([5]), 0, 64, [user_rows])[0]
    assert orders[40:].tolist() == [0] * 24  # padding
    drawn = orders[:40]
    assert drawn.max() < 40
    counts = np.bincount(users[drawn], minlength=4)
    assert counts[2] == 0 and sorted(counts[[0, 1, 3]]) == [13, 13, 14]  # 40 draws over 3 users, not 30/5/5
    again = shards.epoch_orders(np.array([40]), np.array([5]), 0, 64, [user_rows])[0]
    np.testing.assert_array_equal(orders, again)  # (seed, epoch) fixes the draw


def test_shard_item_negatives_come_from_the_shard_and_avoid_its_positives():
    users = np.array([0, 0, 1, 2, 2, 2], np.int32)
    items = np.array([3, 5, 5, 7, 9, 3], np.int32)
    data = jax.tree.map(lambda x: x[0], shards.ShardData.build(N_USERS, N_ITEMS, [users], [items]))
    assert int(data.n_items_seen) == 4 and np.asarray(data.items_seen)[:4].tolist() == [3, 5, 7, 9]
    positives = shards.PositiveIndex(offsets=None, items=None, bitmap=data.positives)
    queries = jnp.asarray(np.repeat([0, 1, 2], 200).astype(np.int32))
    drawn = np.asarray(shards.shard_item_negatives(jax.random.PRNGKey(0), queries, positives, data.items_seen, data.n_items_seen,
                                                   max_redraws=40))  # user 2 owns 3 of the 4 items
    assert set(drawn.tolist()) <= {3, 5, 7, 9}
    own = {0: {3, 5}, 1: {5}, 2: {3, 7, 9}}
    assert all(int(v) not in own[int(u)] for u, v in zip(np.asarray(queries), drawn))
    assert set(drawn[np.asarray(queries) == 1].tolist()) == {3, 7, 9}  # uniform over the rest


@pytest.mark.slow
@pytest.mark.parametrize("negatives", ["all", "shard_items"])
def test_an_epochs_predrawn_negatives_are_the_draws_made_step_by_step(negatives):
    # A shard epoch draws every batch's negatives before its loop, in one vmap
    # (`epoch_negatives`), on the claim that they are the draws of a step-by-step epoch. Here
    # each step draws alone, in a plain loop, with its own key, and must match exactly.
    users, items, _, _ = random_pairs(70, seed=4)
    data = jax.tree.map(lambda x: x[0], shards.ShardData.build(N_USERS, N_ITEMS, [users], [items], n_padded_rows=100))
    batch_size, n_steps, seed = 16, 7, 3  # padded as after a partition: the last 2 batches are padding rows only
    order = shards.epoch_orders(np.array([70]), np.array([seed]), 0, n_steps * batch_size)[0]
    batch_users = data.users[jnp.asarray(order).reshape(n_steps, batch_size)]
    epoch_key = jax.random.fold_in(shards.run_keys(np.array([seed]))[0], 2)  # the run's third epoch
    predraw = jax.jit(shards.epoch_negatives, static_argnames=("n_items", "negatives"))
    predrawn = np.asarray(predraw(epoch_key, batch_users, data, n_items=N_ITEMS, negatives=negatives))
    for step in range(n_steps):
        negatives_key, _ = shards.step_keys(epoch_key, step)
        drawn = shards.batch_negatives(negatives_key, batch_users[step], data, N_ITEMS, negatives)
        np.testing.assert_array_equal(predrawn[step], np.asarray(drawn))
    assert len({tuple(row) for row in predrawn.tolist()}) == n_steps  # every step its own draw
    # Each step's negatives are aligned with its users: none is that user's positive in the shard.
    own_pairs = set(zip(users.tolist(), items.tolist()))
    assert not own_pairs & set(zip(np.asarray(batch_users).ravel().tolist(), predrawn.ravel().tolist()))
    if negatives == "shard_items":
        assert set(predrawn.ravel().tolist()) <= set(items.tolist())


@pytest.mark.slow
def test_warm_start_begins_at_the_given_parameters_and_fresh_optimiser_state():
    users, items, _, _ = random_pairs(100)
    model = build_model("BPR", embedding_size=8)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items))
    data = shards.ShardData.build(N_USERS, N_ITEMS, [users], [items])
    start = jax.tree.map(lambda x: x[None] + 1.0, model.init(jax.random.PRNGKey(5), context))
    frozen = TrainConfig(epochs=1, batch_size=32, learning_rate=0.0)
    fit = training.train_shards(model, context, data, np.array([3]), frozen, None, N_ITEMS, init_params=start)
    for a, b in zip(jax.tree.leaves(fit.params), jax.tree.leaves(start)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    moving = training.train_shards(model, context, data, np.array([3]), dataclasses.replace(frozen, learning_rate=0.01), None,
                                   N_ITEMS, init_params=start)
    scratch = training.train_shards(model, context, data, np.array([3]), dataclasses.replace(frozen, learning_rate=0.01), None, N_ITEMS)
    leaf = lambda fit: np.asarray(jax.tree.leaves(fit.params)[0])  # noqa: E731
    assert np.abs(leaf(moving) - np.asarray(jax.tree.leaves(start)[0])).max() < 0.1  # near the start, not the init
    assert np.abs(leaf(moving) - leaf(scratch)).max() > 0.5


# ---------------------------------------------------------------------------------------------
# aggregation


@pytest.mark.slow
def test_aggregator_loss_from_tables_equals_the_loss_from_gathered_rows():
    rng = np.random.default_rng(2)
    context = ShardEmbeddings(jnp.asarray(rng.normal(size=(4, N_USERS, 8)), jnp.float32),
                              jnp.asarray(rng.normal(size=(4, N_ITEMS, 8)), jnp.float32))
    aggregator = AttentionAggregator(attention_size=16, reg_weight=0.01, reg_require_pow=True, transfer_reg=1e-3)
    params = aggregator.init(jax.random.PRNGKey(1), context)
    params["transfer_w"] = params["transfer_w"] + 0.1 * jnp.asarray(rng.normal(size=params["transfer_w"].shape), jnp.float32)
    batch = {"users": jnp.asarray(rng.integers(0, N_USERS, 50), jnp.int32), "pos": jnp.asarray(rng.integers(0, N_ITEMS, 50), jnp.int32),
             "neg": jnp.asarray(rng.integers(0, N_ITEMS, 50), jnp.int32), "weight": jnp.asarray(rng.random(50) > 0.2, jnp.float32)}
    key = jax.random.PRNGKey(0)
    gathered, gathered_grad = jax.value_and_grad(lambda p: aggregator.loss(p, context, batch, key, from_tables=False))(params)
    tables, tables_grad = jax.value_and_grad(lambda p: aggregator.loss(p, context, batch, key, from_tables=True))(params)
    np.testing.assert_allclose(float(tables), float(gathered), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(tables_grad), jax.tree.leaves(gathered_grad)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert 3 * 50 > N_USERS + N_ITEMS  # so the default picks the tables here
    np.testing.assert_allclose(float(aggregator.loss(params, context, batch, key)), float(tables), rtol=1e-6)


@pytest.mark.slow
def test_aggregator_retrain_sees_only_the_remaining_rows_and_warm_starts(tiny_experiment, monkeypatch):
    from erase_jax.unlearn.exact import ensemble as ensemble_module

    experiment, params = tiny_experiment
    method = build_method("receraser", n_shards=3, shard_epochs=1, aggregator_epochs=2, aggregator_batch_size=64,
                          partition_rounds=3, aggregator_warm_start=True, aggregator_warm_epochs=1,
                          aggregator_learning_rate=0.01, aggregator_warm_learning_rate=0.002, aggregator_optimizer="adagrad")
    ensemble, state, _ = method.build_ensemble(experiment.model, params, experiment)
    inter, train_rows = experiment.data.interactions, experiment.data.split.train
    removed_rows = train_rows[[0, 7, 11]]
    seen, optimizers = [], []
    original = ensemble_module.train_shards

    def spy(model, context, data, seeds, config, validate, n_items, init_params=None, negatives="all"):
        seen.append((data, init_params, config.epochs, config.learning_rate))
        optimizers.append((config.optimizer, config.adagrad_initial_accumulator, config.adagrad_eps))
        return original(model, context, data, seeds, config, validate, n_items, init_params, negatives)

    monkeypatch.setattr(ensemble_module, "train_shards", spy)
    method.forget_rows(experiment.model, ensemble, state, experiment, removed_rows)
    (_, shard_start, _, _), (data, aggregator_start, epochs, learning_rate) = seen
    assert shard_start is None and epochs == 1 and learning_rate == 0.002  # the shard from scratch, the aggregator warm
    # the aggregator's optimiser is its own; Adagrad's accumulator settings are the run's
    train = experiment.config.train
    assert optimizers[1] == ("adagrad", train.adagrad_initial_accumulator, train.adagrad_eps)
    assert optimizers[0][0] == train.optimizer
    for a, b in zip(jax.tree.leaves(aggregator_start), jax.tree.leaves(ensemble["aggregator"])):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b))
    n = int(data.n_rows[0])
    trained = set(zip(np.asarray(data.users)[0, :n].tolist(), np.asarray(data.items)[0, :n].tolist()))
    assert n == len(train_rows) - len(removed_rows)
    assert not trained & set(zip(inter.users[removed_rows].tolist(), inter.items[removed_rows].tolist()))


@pytest.mark.slow
def test_attention_weights_sum_to_one_per_user_and_item():
    rng = np.random.default_rng(0)
    context = ShardEmbeddings(jnp.asarray(rng.normal(size=(5, N_USERS, 8)), jnp.float32),
                              jnp.asarray(rng.normal(size=(5, N_ITEMS, 8)), jnp.float32))
    aggregator = AttentionAggregator(attention_size=32)
    params = aggregator.init(jax.random.PRNGKey(0), context)
    params["user_attention"]["h"] = params["user_attention"]["h"] * 100  # far from uniform
    user_weights, item_weights = aggregator.attention_weights(params, context)
    assert user_weights.shape == (N_USERS, 5) and item_weights.shape == (N_ITEMS, 5)
    np.testing.assert_allclose(np.asarray(user_weights.sum(1)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(item_weights.sum(1)), 1.0, rtol=1e-5)
    assert float(user_weights.std()) > 1e-3
    scores = aggregator.scores(params, context, {"users": jnp.arange(3)})
    users, _ = aggregator.aggregate(params, context.users, "user")
    items, _ = aggregator.aggregate(params, context.items, "item")
    np.testing.assert_allclose(np.asarray(scores), np.asarray(users[:3] @ items.T), rtol=1e-4, atol=1e-5)


def test_mean_of_scores_is_the_mean_of_the_submodels_scores():
    rng = np.random.default_rng(1)
    users, items = rng.normal(size=(3, N_USERS, 4)), rng.normal(size=(3, N_ITEMS, 4))
    context = ShardEmbeddings(jnp.asarray(users), jnp.asarray(items))
    got = MeanOfScores().scores({}, context, {"users": jnp.array([0, 5])})
    expected = np.mean([users[s][[0, 5]] @ items[s].T for s in range(3)], axis=0)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# requests


@pytest.fixture(scope="module")
def tiny_experiment():
    config = load_config(None, [
        "model=BPR", "dataset=synthetic", "data.synthetic={n_users: 60, n_items: 40, avg_interactions: 12}",
        "train.epochs=2", "train.batch_size=64", "model_params.embedding_size=8",
    ])
    experiment = build_experiment(config)
    params = experiment.model.init(jax.random.PRNGKey(0), experiment.context)  # "pre-trained" embeddings
    return experiment, params


@pytest.mark.slow
@pytest.mark.parametrize("name, shard_reg_weight", [("sisa", None), ("receraser", None), ("receraser", 0.05)])
def test_request_retrains_only_the_affected_shard_and_its_data_excludes_the_removed_rows(tiny_experiment, name, shard_reg_weight):
    experiment, params = tiny_experiment
    method = build_method(name, n_shards=3, shard_epochs=2, aggregator_epochs=1, aggregator_batch_size=64, partition_rounds=5,
                          shard_reg_weight=shard_reg_weight)
    shard_model = method.shard_model(experiment.model)
    assert shard_model.reg_weight == (experiment.model.reg_weight if shard_reg_weight is None else shard_reg_weight)
    ensemble, state, record = method.build_ensemble(experiment.model, params, experiment)
    assert record["partition"] == ("random_interactions" if name == "sisa" else "inbp")
    like, _ = method.start(experiment.model, params, experiment, train=False)
    assert jax.tree.structure(like) == jax.tree.structure(ensemble)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(like), jax.tree.leaves(ensemble)))

    shard_of_row = np.asarray(state["shard_of_row"])
    target = 1
    removed_rows = np.nonzero(shard_of_row == target)[0][:5]
    new, new_state, diagnostics = method.forget_rows(experiment.model, ensemble, state, experiment, removed_rows)

    assert diagnostics["retrained_shards"] == [target] and diagnostics["forgotten_rows_in_retrained_shards"] == 0
    for s in range(3):
        changed = any(not np.array_equal(np.asarray(a)[s], np.asarray(b)[s])
                      for a, b in zip(jax.tree.leaves(ensemble["shards"]), jax.tree.leaves(new["shards"])))
        assert changed == (s == target)
    data, rows = shard_data(experiment, shard_of_row, np.asarray(new_state["removed"]), np.array([target]))
    assert not np.isin(removed_rows, rows[0]).any() and len(rows[0]) == (shard_of_row == target).sum() - 5
    assert int(data.n_rows[0]) == len(rows[0])
    if name == "receraser":
        assert not all(np.array_equal(np.asarray(a), np.asarray(b))
                       for a, b in zip(jax.tree.leaves(ensemble["aggregator"]), jax.tree.leaves(new["aggregator"])))
    # Exactness: the retrained shard is that shard trained from scratch without the removed rows,
    # and so is every other shard (its training, early stopping included, never saw them).
    config, removed = method.shard_train_config(experiment), np.asarray(new_state["removed"])
    def from_scratch(model, data, which):
        return training.train_shards(model, experiment.context, data, method.shard_seeds(experiment.config.seed)[which], config,
                                     method.shard_validators(model, experiment, shard_of_row, removed, which, config),
                                     experiment.examples.train.n_items)

    fresh = from_scratch(shard_model, data, np.array([target]))
    for a, b in zip(jax.tree.leaves(fresh.params), jax.tree.leaves(new["shards"])):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[target])
    if shard_reg_weight is not None:  # the submodels really trained with their own L2 strength
        base = from_scratch(experiment.model, data, np.array([target]))
        assert not all(np.allclose(np.asarray(a)[0], np.asarray(b)[target])
                       for a, b in zip(jax.tree.leaves(base.params), jax.tree.leaves(new["shards"])))
    everything, _ = shard_data(experiment, shard_of_row, removed, np.arange(3))
    scratch = from_scratch(shard_model, everything, np.arange(3))
    for a, b in zip(jax.tree.leaves(scratch.params), jax.tree.leaves(new["shards"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    scoring_model, scoring_params, context = method.scorer(experiment.model, new, experiment)
    scores = scoring_model.scores(scoring_params, context, {"users": jnp.arange(4)})
    assert scores.shape == (4, experiment.examples.train.n_items) and np.isfinite(np.asarray(scores)).all()


@pytest.mark.slow
def test_removing_a_validation_row_retrains_the_shards_that_validated_on_it(tiny_experiment):
    # With "own" validation a shard's early stopping ranks the validation rows of its items, so
    # a removed validation row can move its stopping epoch: the shards holding the row's item,
    # and only they, are retrained, and the ensemble is the one built without the row.
    experiment, params = tiny_experiment
    inter, split = experiment.data.interactions, experiment.data.split
    # Four shards: a few validation items are missing from one of them. Eight epochs at a large
    # learning rate: one validation row can move a shard's best epoch (the loop below finds one).
    method = build_method("sisa", n_shards=4, shard_epochs=8, shard_learning_rate=0.05, aggregation="attention",
                          aggregator_epochs=1, aggregator_batch_size=64)
    ensemble, state, _ = method.build_ensemble(experiment.model, params, experiment)
    shard_of_row = np.asarray(state["shard_of_row"])
    holds_item = np.zeros((4, inter.n_items), bool)
    for s in range(4):
        holds_item[s, inter.items[shard_of_row == s]] = True
    partly_held = [row for row in split.valid if 0 < holds_item[:, inter.items[row]].sum() < 4]
    assert partly_held
    config, seeds = method.shard_train_config(experiment), method.shard_seeds(experiment.config.seed)
    leaves = lambda params: [np.asarray(leaf) for leaf in jax.tree.leaves(params)]  # noqa: E731

    for valid_row in partly_held:
        new, new_state, diagnostics = method.forget_rows(experiment.model, ensemble, state, experiment, np.array([valid_row]))
        holders = np.nonzero(holds_item[:, inter.items[valid_row]])[0].tolist()
        assert diagnostics["removed_valid_rows"] == 1 and diagnostics["removed_train_rows"] == 0
        assert diagnostics["retrained_shards"] == diagnostics["retrained_for_validation"] == holders
        assert diagnostics["retrained_aggregator"] and new_state["n_retrains"].tolist() == [int(s in holders) for s in range(4)]
        for before, after in zip(leaves(ensemble["shards"]), leaves(new["shards"])):
            for s in set(range(4)) - set(holders):
                np.testing.assert_array_equal(before[s], after[s])
        # Exactness: every shard, and the aggregator, as trained from scratch without the row.
        removed = np.asarray(new_state["removed"])
        everything, _ = shard_data(experiment, shard_of_row, removed, np.arange(4))
        scratch = training.train_shards(experiment.model, experiment.context, everything, seeds, config,
                                        method.shard_validators(experiment.model, experiment, shard_of_row, removed, np.arange(4), config),
                                        experiment.examples.train.n_items)
        for a, b in zip(leaves(scratch.params), leaves(new["shards"])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        aggregator, _ = method.train_aggregator(experiment.model, new["shards"], experiment, removed)
        for a, b in zip(leaves(aggregator), leaves(new["aggregator"])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        moved = [s for s in holders if not all(np.allclose(a[s], b[s], rtol=1e-5, atol=1e-6)
                                               for a, b in zip(leaves(ensemble["shards"]), leaves(new["shards"])))]
        if moved:
            break
    # The checks above can fail: without the retrain, a moved shard would keep its old parameters.
    assert moved, "no validation row moved a shard's early stopping"

    # With a training row of a shard not holding the item: both reasons, one retrain each.
    other = min(set(range(4)) - set(holders))
    train_row = np.nonzero(shard_of_row == other)[0][:1]
    _, _, both = method.forget_rows(experiment.model, ensemble, state, experiment, np.array([valid_row, *train_row]))
    assert both["retrained_shards"] == sorted([*holders, other]) and both["retrained_for_validation"] == holders
    assert (both["removed_train_rows"], both["removed_valid_rows"]) == (1, 1)
    # "all" validation retrains no shard for a validation row (documented as not exact), but
    # the aggregator, which validates on the remaining validation rows, is retrained.
    validating_on_all = dataclasses.replace(method, shard_validation="all")
    _, _, on_all = validating_on_all.forget_rows(experiment.model, ensemble, state, experiment, np.array([valid_row]))
    assert on_all["retrained_shards"] == on_all["retrained_for_validation"] == [] and on_all["retrained_aggregator"]
    # A test row is used by no training or validation (the remaining training and validation
    # rows stay the same), so removing it retrains nothing: the parameters are the same arrays.
    test_row = split.test[:1]
    after, after_state, diagnostics = method.forget_rows(experiment.model, new, new_state, experiment, test_row)
    assert (diagnostics["retrained_shards"], diagnostics["removed_train_rows"], diagnostics["removed_valid_rows"]) == ([], 0, 0)
    assert not diagnostics["retrained_aggregator"] and "aggregator_epochs" not in diagnostics
    assert after["shards"] is new["shards"] and after["aggregator"] is new["aggregator"]
    assert after_state["removed"][test_row].all() and after_state["removed"].sum() == 2
    np.testing.assert_array_equal(after_state["n_retrains"], new_state["n_retrains"])
    for remaining in (remaining_train_rows, remaining_valid_rows):
        np.testing.assert_array_equal(remaining(experiment, after_state["removed"]), remaining(experiment, removed))


@pytest.mark.slow
def test_shard_options_override_the_runs_settings_and_eval_step_spaces_the_validations(tiny_experiment):
    experiment, _ = tiny_experiment
    method = build_method("sisa", shard_eval_step=3, shard_stopping_step=2, shard_batch_size=32)
    config = method.shard_train_config(experiment)
    assert (config.eval_step, config.stopping_step, config.batch_size) == (3, 2, 32)
    assert config.learning_rate == experiment.config.train.learning_rate
    users, items, _, _ = random_pairs(80)
    model = build_model("BPR", embedding_size=8)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items))
    calls = []
    training.train_shards(model, context, shards.ShardData.build(N_USERS, N_ITEMS, [users], [items]), np.array([1]),
                          TrainConfig(epochs=6, batch_size=32, eval_step=3, stopping_step=5), lambda p: calls.append(1) or 0.0, N_ITEMS)
    assert len(calls) == 2  # after epochs 3 and 6


def test_shard_reg_weight_needs_a_model_with_one():
    with pytest.raises(ValueError, match="reg_weight"):
        SISA(shard_reg_weight=0.1).shard_model(build_model("Pop"))


def test_sisa_rejects_models_with_data_dependent_contexts(tiny_experiment):
    experiment, _ = tiny_experiment
    lightgcn = dataclasses.replace(experiment, model=build_model("LightGCN", embedding_size=8))
    lightgcn = dataclasses.replace(lightgcn, context=lightgcn.model.prepare(experiment.examples.train))
    with pytest.raises(ValueError, match="sharded training supports"):
        SISA().start(lightgcn.model, None, lightgcn)


@pytest.mark.slow
def test_a_request_compiles_no_training_epoch_after_the_ensemble_is_built(tiny_experiment, caplog):
    # The ensemble trains its shards as one vmap; `compile_requests` compiles the retrain of
    # one shard and of every smaller vmap, and the warm aggregator's epoch, up front, so a
    # request's time is training.
    experiment, params = tiny_experiment
    method = build_method("receraser", n_shards=3, shard_epochs=1, aggregator_epochs=1, aggregator_batch_size=64,
                          partition_rounds=3, aggregator_warm_start=True, aggregator_warm_epochs=1,
                          aggregator_learning_rate=0.01, aggregator_warm_learning_rate=0.002, shard_reg_weight=0.02)
    ensemble, state, record = method.build_ensemble(experiment.model, params, experiment)
    assert record["request_compile_seconds"] > 0
    removed_row = experiment.data.split.train[:1]
    shard_of_row = np.asarray(state["shard_of_row"])
    two_shards_rows = np.array([np.nonzero(shard_of_row == s)[0][0] for s in (0, 2)])
    for rows, n_retrained in ((removed_row, 1), (two_shards_rows, 2)):
        caplog.clear()
        with jax.log_compiles(), caplog.at_level(logging.WARNING):
            _, _, diagnostics = method.forget_rows(experiment.model, ensemble, state, experiment, rows)
        assert diagnostics["n_retrained_shards"] == n_retrained
        compiled = [r.getMessage() for r in caplog.records if "one_shard" in r.getMessage()]
        assert not compiled, compiled
    # and the check can fail: a learning rate never compiled before does compile its epoch
    other = dataclasses.replace(method, aggregator_warm_learning_rate=0.003)
    caplog.clear()
    with jax.log_compiles(), caplog.at_level(logging.WARNING):
        other.forget_rows(experiment.model, ensemble, state, experiment, removed_row)
    assert any("one_shard" in r.getMessage() for r in caplog.records)


def test_own_shard_validation_is_built_from_the_shards_data_alone(tiny_experiment):
    experiment, _ = tiny_experiment
    inter, split = experiment.data.interactions, experiment.data.split
    shard_of_row = np.full(len(inter.users), -1, np.int32)
    shard_of_row[split.train] = partition.random_partition(inter.users[split.train], 3, 0).shard_of_row
    removed = np.zeros(len(shard_of_row), bool)
    own, own_items = own_validation_set(experiment, shard_of_row, removed, 0)
    rows = np.nonzero(shard_of_row == 0)[0]
    np.testing.assert_array_equal(np.nonzero(own_items)[0], np.unique(inter.items[rows]))
    assert np.isin(own.target_items, inter.items[rows]).all() and len(own.target_items) > 0
    assert sorted(zip(own.history_users, own.history_items)) == sorted(set(zip(inter.users[rows], inter.items[rows])))
    # A row of another shard is removed: shard 0's validation does not change; the "all"
    # validation's history (every remaining training row) does: the control.
    other = np.zeros_like(removed)
    other[np.nonzero(shard_of_row == 1)[0][0]] = True
    after, after_items = own_validation_set(experiment, shard_of_row, other, 0)
    np.testing.assert_array_equal(own_items, after_items)
    for name in ("target_users", "target_items", "history_users", "history_items"):
        np.testing.assert_array_equal(getattr(own, name), getattr(after, name))
    assert len(remaining_valid_set(experiment, other).history_users) == len(remaining_valid_set(experiment, removed).history_users) - 1
    method = build_method("receraser", n_shards=3, shard_validation="own")
    validators = method.shard_validators(experiment.model, experiment, shard_of_row, removed, np.array([0, 2]), method.shard_train_config(experiment))
    assert len(validators) == 2 and all(callable(v) for v in validators)
    # The validator ranks the shard's items only, in slots: slot j scores item_ids[j], padding
    # slots -inf; its score equals ranking all items with the others at -inf (independent).
    params = experiment.model.init(jax.random.PRNGKey(1), experiment.context)
    slotted, item_ids, real = own_item_slots(own, own_items)
    assert len(item_ids) % OWN_ITEM_SLOTS == 0 and real.sum() == own_items.sum()
    np.testing.assert_array_equal(item_ids[real], np.nonzero(own_items)[0])
    slot_params = {"model": params, "item_ids": jnp.asarray(item_ids), "real": jnp.asarray(real)}
    scores = np.asarray(OwnItemsRanker(experiment.model).scores(slot_params, experiment.context, {"users": jnp.arange(3)}))
    full = np.asarray(experiment.model.scores(params, experiment.context, {"users": jnp.arange(3)}))
    assert np.isneginf(scores[:, ~real]).all()
    np.testing.assert_allclose(scores[:, real], full[:, own_items], rtol=1e-6)

    @dataclasses.dataclass(frozen=True)
    class MaskedToOwnItems:
        def scores(self, params, context, query):
            return jnp.where(jnp.asarray(own_items), experiment.model.scores(params, context, query), -jnp.inf)

    for metric in ("recall@20", "ndcg@10"):
        name, k = metric.split("@")
        config = dataclasses.replace(method.shard_train_config(experiment), valid_metric=metric)
        validate = method.shard_validators(experiment.model, experiment, shard_of_row, removed, np.array([0]), config)[0]
        expected = evaluate_cf(MaskedToOwnItems(), params, experiment.context, own, (int(k),), (name,))[metric]
        assert validate(params) == pytest.approx(expected, abs=1e-9) and expected > 0
    with pytest.raises(ValueError, match="shard_validation"):
        build_method("sisa", shard_validation="test").shard_validators(experiment.model, experiment, shard_of_row, removed, np.array([0]), None)


@pytest.mark.slow
def test_a_shard_without_validator_trains_every_epoch_and_keeps_its_last_parameters():
    users, items, _, _ = random_pairs(80)
    model = build_model("BPR", embedding_size=8)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items))
    data = shards.ShardData.build(N_USERS, N_ITEMS, [users[:40], users[40:]], [items[:40], items[40:]])
    calls = []
    config = TrainConfig(epochs=6, batch_size=16, eval_step=1, stopping_step=0)
    # Shard 1's score only falls: it stops after its second validation and keeps epoch 1.
    fit = training.train_shards(model, context, data, np.array([1, 2]), config, [None, lambda p: -float(len(calls.append(1) or calls))], N_ITEMS)
    assert fit.record["epochs"] == [6, 2] and fit.record["best_epoch"] == [-1, 1] and len(calls) == 2
    alone = training.train_shards(model, context, data, np.array([1, 2]), config, None, N_ITEMS)
    for a, b in zip(jax.tree.leaves(fit.params), jax.tree.leaves(alone.params)):
        np.testing.assert_allclose(np.asarray(a)[0], np.asarray(b)[0], rtol=1e-6, atol=1e-7)
