"""Bucketed basket epochs: every example in exactly one batch, buckets holding their examples,
and a model's loss on a bucketed batch equal to its loss at the full shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.batching.baskets import BasketBatcher
from erase_jax.data import baskets
from erase_jax.data.baskets import bucket_index, bucket_shapes, rows_for_width
from erase_jax.models import build_model
from tests.models.nbr.hand_rows import basket_rows

N_ITEMS, MAX_BASKETS = 30, 6


def rows(n: int = 40, seed: int = 0):
    """Random histories of 1-6 baskets of 1-2 items."""
    rng = np.random.default_rng(seed)
    histories, targets = [], []
    for _ in range(n):
        n_baskets = int(rng.integers(1, MAX_BASKETS + 1))
        histories.append([sorted(rng.choice(N_ITEMS, int(rng.integers(1, 3)), replace=False).tolist()) for _ in range(n_baskets)])
        targets.append(sorted(rng.choice(N_ITEMS, int(rng.integers(1, 4)), replace=False).tolist()))
    return basket_rows(histories, targets, N_ITEMS, MAX_BASKETS)


def test_bucket_index_is_the_smallest_shape_holding_the_history():
    train = rows()
    shapes = bucket_shapes(train.max_length, MAX_BASKETS)
    index = bucket_index(train.lengths, train.n_baskets, train.max_length, MAX_BASKETS)
    for r, i in enumerate(index):
        w, t = shapes[i]
        assert train.lengths[r] <= w and train.n_baskets[r] <= t
        smaller = [s for s in shapes if train.lengths[r] <= s[0] and train.n_baskets[r] <= s[1]]
        assert (w, t) == min(smaller)


@pytest.mark.parametrize("mix_lengths", [False, True])
def test_an_epoch_holds_every_example_once_at_a_shape_that_fits(mix_lengths):
    train = rows()
    batcher = BasketBatcher.build(train, batch_size=8, mix_lengths=mix_lengths)
    order = batcher.shuffled_order(seed=3, epoch=1)
    epoch = batcher.epoch(jax.random.PRNGKey(0), jnp.asarray(order))
    real = np.asarray(epoch["weight"]) > 0
    assert sorted(np.asarray(epoch["users"])[real].tolist()) == sorted(train.users.tolist())
    shapes = batcher.shapes
    for batch in range(batcher.n_batches):
        w, t = shapes[int(epoch["bucket"][batch])]
        members = real[batch]
        assert np.all(np.asarray(epoch["lengths"][batch])[members] <= w)
        assert np.all(np.asarray(epoch["n_baskets"][batch])[members] <= t)


@pytest.mark.parametrize("name, params", [("DNNTSP", {"embedding_size": 8, "n_heads": 2}),
                                          pytest.param("Sets2Sets", {"embedding_size": 8, "hidden_size": 8},
                                                       marks=pytest.mark.slow)])
def test_a_bucketed_batch_has_the_loss_and_gradient_of_the_full_shape(name, params, monkeypatch):
    monkeypatch.setattr(baskets, "FULL_BATCH_WIDTH", 4)  # so that wider buckets cut their batches' rows
    train = rows(n=24)
    train = train.select(train.n_baskets <= 4)  # fewer bucket shapes, so fewer branches to compile
    model = build_model(name, **params)
    context = model.prepare(train)
    weights = model.init(jax.random.PRNGKey(1), context)
    batcher = BasketBatcher.build(train, batch_size=16)
    assert rows_for_width(16, train.max_length) < 16  # the widest bucket's batches hold fewer rows
    epoch = batcher.epoch(jax.random.PRNGKey(0), jnp.asarray(batcher.shuffled_order(seed=3, epoch=0)))
    loss = jax.jit(jax.value_and_grad(lambda p, batch: model.loss(p, context, batch, jax.random.PRNGKey(2))))
    for batch in range(batcher.n_batches):
        bucketed = {k: v[batch] for k, v in epoch.items()}
        full = {k: v for k, v in bucketed.items() if k != "bucket"}
        (a, grad_a), (b, grad_b) = loss(weights, bucketed), loss(weights, full)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)
        for x, y in zip(jax.tree.leaves(grad_a), jax.tree.leaves(grad_b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-7)
