"""Device-side batching: the CSR membership test and BPR negative sampling."""

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.batching.cf import CFBatcher, PositiveIndex, host_negatives, positive_keys
from erase_jax.data.cf import CFTrainData
from erase_jax.train import TrainConfig


def _random_pairs(seed, n_users=30, n_items=20, n=200):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_users, n).astype(np.int32), rng.integers(0, n_items, n).astype(np.int32)


def test_positive_index_matches_python_sets():
    users, items = _random_pairs(0)
    users[:5] = 29  # a user with repeated pairs
    items[:5] = 3
    index = PositiveIndex.build(31, users, items, 20)  # user 30 has no items at all
    query_users = np.repeat(np.arange(31), 20).astype(np.int32)
    query_items = np.tile(np.arange(20), 31).astype(np.int32)
    truth = set(zip(users.tolist(), items.tolist()))
    want = np.array([(u, i) in truth for u, i in zip(query_users.tolist(), query_items.tolist())])
    assert index.bitmap is not None
    for variant in (index, index.without_bitmap()):  # the bitmap and the sorted-list search
        got = np.asarray(jax.jit(variant.contains)(jnp.asarray(query_users), jnp.asarray(query_items)))
        np.testing.assert_array_equal(got, want)


def test_epoch_batches_cover_every_pair_once_and_negatives_are_not_positives():
    users, items = _random_pairs(1)
    batcher = CFBatcher.build(CFTrainData(30, 20, users, items), batch_size=64)
    batches = jax.jit(CFBatcher.epoch)(batcher, jax.random.PRNGKey(0), batcher.shuffled_order(0, 0))
    assert batches["users"].shape == (4, 64)  # 200 rows -> 4 batches, the last padded
    weight = np.asarray(batches["weight"]).ravel()
    assert weight.sum() == 200 and set(np.unique(weight)) == {0.0, 1.0}
    real = weight > 0
    pairs = sorted(zip(np.asarray(batches["users"]).ravel()[real].tolist(), np.asarray(batches["pos"]).ravel()[real].tolist()))
    assert pairs == sorted(zip(users.tolist(), items.tolist()))
    truth = set(zip(users.tolist(), items.tolist()))
    negatives = zip(np.asarray(batches["users"]).ravel()[real].tolist(), np.asarray(batches["neg"]).ravel()[real].tolist())
    assert not any(pair in truth for pair in negatives)


def test_epochs_differ_by_key_and_repeat_for_the_same_key():
    users, items = _random_pairs(2)
    batcher = CFBatcher.build(CFTrainData(30, 20, users, items), batch_size=50)
    a = batcher.epoch(jax.random.PRNGKey(1), batcher.shuffled_order(0, 1))
    b = batcher.epoch(jax.random.PRNGKey(1), batcher.shuffled_order(0, 1))
    c = batcher.epoch(jax.random.PRNGKey(2), batcher.shuffled_order(0, 2))
    np.testing.assert_array_equal(a["neg"], b["neg"])
    assert not np.array_equal(a["users"], c["users"])


def test_user_sampler_weighs_every_user_the_same_and_draws_their_own_rows():
    # User 0 has 150 rows, users 1..4 ten each, user 5 none: the row sampler would give
    # user 0 75 % of an epoch; the user sampler gives each of the 5 active users 1/5.
    users = np.concatenate([np.zeros(150), np.repeat(np.arange(1, 5), 10)]).astype(np.int32)
    items = np.concatenate([np.arange(150) % 40, np.tile(np.arange(10), 4) + 40]).astype(np.int32)
    batcher = CFBatcher.build(CFTrainData(6, 50, users, items), batch_size=4, sampler="users")
    # the host-side index stays out of the pytree: nothing of it goes to the device
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(batcher))
    with np.testing.assert_raises(ValueError):  # rebuilt from leaves: no index, no draw
        jax.tree.map(lambda x: x, batcher).shuffled_order(0, 0)
    epoch = jax.jit(CFBatcher.epoch)
    pairs = set(zip(users.tolist(), items.tolist()))
    counts = np.zeros(6)
    picked_items_of_user_1 = []
    for e in range(20):
        order = batcher.shuffled_order(0, e)
        batches = epoch(batcher, jax.random.PRNGKey(e), order)
        weight = np.asarray(batches["weight"]).ravel()
        assert weight.sum() == 190  # as many examples as rows, padding weighted 0
        got_users = np.asarray(batches["users"]).ravel()[weight > 0]
        got_items = np.asarray(batches["pos"]).ravel()[weight > 0]
        assert all((u, i) in pairs for u, i in zip(got_users.tolist(), got_items.tolist()))
        # back-to-back permutations of the 5 active users: 38 each, exactly
        np.testing.assert_array_equal(np.bincount(got_users, minlength=6), [38, 38, 38, 38, 38, 0])
        # a batch of 4 inside one permutation never repeats a user
        first_batch = np.asarray(batches["users"])[0]
        assert len(set(first_batch.tolist())) == 4
        counts += np.bincount(got_users, minlength=6)
        picked_items_of_user_1 += got_items[got_users == 1].tolist()
    # the row within a user is uniform: user 1's 10 items each drawn ~76 times of 760
    per_item = np.bincount(np.asarray(picked_items_of_user_1) - 40, minlength=10)
    assert per_item.min() > 40 and per_item.max() < 115
    with np.testing.assert_raises(ValueError):
        CFBatcher.build(CFTrainData(6, 50, users, items), batch_size=4, sampler="user")
    with np.testing.assert_raises(ValueError):  # and in the settings every trainer reads
        TrainConfig(sampler="user")


def test_host_negatives_are_never_positives_and_cover_the_other_items():
    users, items = _random_pairs(2, n_users=30, n_items=20, n=300)
    keys = positive_keys(users, items, 20)
    truth = set(zip(users.tolist(), items.tolist()))
    query = np.repeat(np.arange(30), 200).astype(np.int32)
    negatives = host_negatives(np.random.default_rng(0), query, keys, 20, max_redraws=50)
    assert negatives.dtype == np.int32 and negatives.shape == query.shape
    assert not any((u, i) in truth for u, i in zip(query.tolist(), negatives.tolist()))
    for user in range(30):  # 200 draws per user reach every item the user lacks
        drawn = set(negatives[query == user].tolist())
        assert drawn == {i for i in range(20) if (user, i) not in truth}
    again = host_negatives(np.random.default_rng(0), query, keys, 20, max_redraws=50)
    np.testing.assert_array_equal(negatives, again)  # a seeded generator gives the same draws
