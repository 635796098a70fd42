"""Row-chunked losses and curvature products of a basket model equal the one-piece computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.data.baskets import bucket_shapes
from erase_jax.models import build_model
from erase_jax.models.nbr import row_chunks
from erase_jax.models.nbr.base import BasketShape
from erase_jax.unlearn.influence.curvature import curvature_operator
from tests.evaluators.test_basket_queries import N_ITEMS, H, stored_histories

WIDTH, ROWS, CELLS = 40, 13, 40 * H * 3  # three rows per chunk at the full width


def training_batch():
    """13 histories with targets and weights: two padding rows (weight 0), one row weighted 2.5."""
    batch = stored_histories(WIDTH, seed=3, n_users=ROWS)
    rng = np.random.default_rng(4)
    batch["targets"] = jnp.asarray(rng.integers(0, N_ITEMS + 1, (ROWS, 4)), jnp.int32)  # N_ITEMS: padding
    weight = np.ones(ROWS, np.float32)
    weight[[2, 9]], weight[5] = 0.0, 2.5
    batch["weight"] = jnp.asarray(weight)
    return batch


@pytest.fixture
def dnntsp():
    model, context = build_model("DNNTSP", embedding_size=8, n_heads=2), BasketShape(N_ITEMS, H)
    return model, context, model.init(jax.random.key(0), context)


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(row_chunks, "CHUNK_CELLS", CELLS)


def test_chunks_hold_every_real_row_once_sorted_by_length():
    batch = training_batch()
    plan = row_chunks.RowChunks.of(batch, H)
    weight = np.asarray(plan.chunks["weight"]).ravel()
    lengths = np.asarray(plan.chunks["lengths"]).ravel()[weight > 0]
    assert sorted(np.asarray(plan.chunks["users"]).ravel()[weight > 0]) == [u for u in range(ROWS) if u not in (2, 9)]
    assert np.all(np.diff(lengths) >= 0)
    for c, b in enumerate(np.asarray(plan.bucket)):
        real = np.asarray(plan.chunks["weight"][c]) > 0
        if not real.any():
            assert b == -1
            continue
        w, t = plan.shapes[b]
        assert np.asarray(plan.chunks["lengths"][c])[real].max() <= w
        assert np.asarray(plan.chunks["n_baskets"][c])[real].max() <= t


def test_chunked_loss_and_gradient_equal_the_one_piece_loss(dnntsp):
    model, context, params = dnntsp
    batch = training_batch()
    assert row_chunks.is_large(batch, H)
    whole = lambda p: model.loss_at(p, context, batch, None, None)
    chunked = lambda p: model.loss(p, context, batch, None)
    (v1, g1), (v2, g2) = jax.value_and_grad(whole)(params), jax.jit(jax.value_and_grad(chunked))(params)
    np.testing.assert_allclose(v2, v1, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), g2, g1)


@pytest.mark.parametrize("curvature", ["gauss_newton", "hessian"])
def test_chunked_curvature_products_equal_the_one_piece_products(dnntsp, curvature, monkeypatch):
    model, context, params = dnntsp
    batch = training_batch()
    v = jax.tree.map(lambda a: jax.random.normal(jax.random.key(a.size), a.shape), params)
    chunked = jax.jit(lambda p, v: curvature_operator(curvature, model, context, batch, None, p)(v))(params, v)
    monkeypatch.setattr(type(model), "chunked_rows", lambda self, context, batch: None)  # one piece
    whole = curvature_operator(curvature, model, context, batch, None, params)(v)
    # a chunk may run at more basket steps than its rows need (`chunk_shapes`): the same product, other rounding
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=3e-4, atol=5e-6), chunked, whole)


@pytest.mark.parametrize("width,max_steps", [(473, 48), (WIDTH, H), (5, 48), (473, 1)])
def test_chunk_shapes_hold_every_bucket_with_fewer_step_counts(width, max_steps):
    shapes, buckets = row_chunks.chunk_shapes(width, max_steps), bucket_shapes(width, max_steps)
    assert set(shapes) <= set(buckets)
    for w, t in buckets:  # a fitting chunk shape of the same width
        assert any(ww == w and tt >= t for ww, tt in shapes)
    for w, t in shapes:  # only step counts of at least w / OCCURRENCES_PER_STEP, or the width's largest
        assert t * row_chunks.OCCURRENCES_PER_STEP >= w or t == max(tt for ww, tt in buckets if ww == w)


def test_the_ta_feng_request_ladder_has_half_the_training_buckets():
    assert (len(bucket_shapes(473, 48)), len(row_chunks.chunk_shapes(473, 48))) == (43, 22)


def test_chunk_bucket_is_the_smallest_chunk_shape_that_holds_the_histories():
    width, max_steps = 473, 48
    shapes = row_chunks.chunk_shapes(width, max_steps)
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = rng.integers(1, width + 1, 3)
        n_baskets = np.minimum(rng.integers(1, max_steps + 1, 3), lengths)
        got = shapes[int(row_chunks.chunk_bucket(jnp.asarray(lengths), jnp.asarray(n_baskets), width, max_steps))]
        fitting = [(w, t) for w, t in shapes if w >= lengths.max() and t >= n_baskets.max()]
        assert got == min(fitting)
