"""Device-side batching: the CSR membership test and BPR negative sampling."""

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.batching import CFBatcher, PositiveIndex
from erase_jax.data.cf import CFTrainData


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
