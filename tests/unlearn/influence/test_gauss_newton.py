"""The generalised Gauss-Newton product of the influence core against explicit matrices.

G = J^T H_out J is built here by hand: J with `jax.jacfwd` of the model's outputs, H_out with
`jax.hessian` of the loss written as a function of those outputs (not the closed forms the core
uses), on tiny GRU4Rec, SASRec and BPR models. Then: G is positive semi-definite where the exact
Hessian is not; on a block in which the outputs are linear (GRU4Rec's dense layer, BPR's user
embeddings) G is the exact Hessian; the rows split over 4 forced host devices give the same
product; and the per-model-family defaults of curvature and damping.
"""

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model
from erase_jax.models.sbr.base import SequenceShape
from erase_jax.unlearn import build_method
from erase_jax.unlearn.influence.blocks import USER_EMBEDDING, leaf_block
from erase_jax.unlearn.influence.curvature import (
    curvature_operator,
    newton_damping,
    resolve_curvature,
)

N_ITEMS, MAX_LENGTH, N_ROWS = 7, 16, 6
WEIGHT = [1.0, 1.0, 1.0, 0.5, 2.0, 0.0]  # unequal weights and a padding row
TINY_SEQUENCE = {
    "GRU4Rec": dict(embedding_size=4, hidden_size=4),
    "SASRec": dict(hidden_size=4, inner_size=8, n_heads=2),
}


def sequence_setting(name, bucketed=False):
    """A tiny untrained sequence model and a batch of prefixes (with `bucketed`, the training
    batches' form: width 16, run at the bucket of width 8)."""
    model = build_model(name, **TINY_SEQUENCE[name])
    context = SequenceShape(N_ITEMS, MAX_LENGTH)
    params = model.init(jax.random.PRNGKey(0), context)
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 9, N_ROWS)
    items = np.full((N_ROWS, MAX_LENGTH if bucketed else 8), N_ITEMS)
    for row, length in enumerate(lengths):
        items[row, :length] = rng.integers(0, N_ITEMS, length)
    batch = {
        "items": jnp.asarray(items, jnp.int32),
        "lengths": jnp.asarray(lengths, jnp.int32),
        "targets": jnp.asarray(rng.integers(0, N_ITEMS, N_ROWS), jnp.int32),
        "weight": jnp.asarray(WEIGHT, jnp.float32),
    }
    if bucketed:
        batch["bucket"] = jnp.int32(0)
    return model, context, params, batch


def cross_entropy_of_logits(batch):
    def loss(flat_logits):
        log_p = jax.nn.log_softmax(flat_logits.reshape(N_ROWS, N_ITEMS))
        nll = -jnp.take_along_axis(log_p, batch["targets"][:, None], axis=1)[:, 0]
        return jnp.sum(batch["weight"] * nll) / jnp.sum(batch["weight"])

    return loss


def explicit_gauss_newton(outputs_fn, output_loss, flat):
    """J^T H_out J from a dense Jacobian (jacfwd) and a dense output Hessian (jax.hessian)."""
    outputs = outputs_fn(flat).ravel()
    jacobian = jax.jacfwd(lambda f: outputs_fn(f).ravel())(flat)
    output_hessian = jax.hessian(output_loss)(outputs)
    return np.asarray(jacobian.T @ output_hessian @ jacobian, np.float64)


def dense_operator(matvec, values):
    """The matrix of a linear operator on a pytree, column by column."""
    flat, unravel = ravel_pytree(values)
    return jax.vmap(lambda e: ravel_pytree(matvec(unravel(e)))[0])(jnp.eye(flat.size)).T


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TINY_SEQUENCE))
def test_sequence_gauss_newton_is_jt_hout_j_and_psd_where_the_hessian_is_not(name):
    # SASRec without dropout: at hidden size 4 a dropout mask that zeroes a whole position hits
    # the layer norm's eps of 1e-12 and makes both matrices ~1e12. GRU4Rec keeps its dropout.
    model, context, params, batch = sequence_setting(name)
    key = jax.random.PRNGKey(3) if name == "GRU4Rec" else None
    flat, unravel = ravel_pytree(params)
    logits = lambda f: model.output_loss_parts(unravel(f), context, batch, key)[0]
    expected = explicit_gauss_newton(logits, cross_entropy_of_logits(batch), flat)
    np.testing.assert_allclose(
        cross_entropy_of_logits(batch)(logits(flat).ravel()), model.loss(params, context, batch, key), rtol=1e-6
    )

    operators = jax.jit(lambda p: (
        dense_operator(curvature_operator("gauss_newton", model, context, batch, key, p), p),
        dense_operator(curvature_operator("hessian", model, context, batch, key, p), p),
    ))
    got, hessian = (np.asarray(m, np.float64) for m in operators(params))
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(got, expected, atol=1e-5 * scale)
    # G is PSD (up to rounding); the exact Hessian of the same loss is not
    assert np.linalg.eigvalsh(got).min() > -1e-5 * scale
    assert np.linalg.eigvalsh((hessian + hessian.T) / 2).min() < -1e-3 * scale
    v = jax.random.normal(jax.random.PRNGKey(4), (20, flat.size))
    assert np.all(np.einsum("ki,ij,kj->k", v, got, v) >= -1e-5 * scale * flat.size)


@pytest.mark.slow
def test_bucketed_batches_give_the_loss_and_the_logits_of_their_width():
    model, context, params, batch = sequence_setting("GRU4Rec", bucketed=True)
    logits, weight, penalty = model.output_loss_parts(params, context, batch, None)
    assert logits.shape == (N_ROWS, N_ITEMS) and penalty is None
    np.testing.assert_array_equal(weight, batch["weight"])
    np.testing.assert_allclose(cross_entropy_of_logits(batch)(logits.ravel()), model.loss(params, context, batch, None), rtol=1e-6)
    narrow = {k: v for k, v in batch.items() if k != "bucket"} | {"items": batch["items"][:, :8]}
    np.testing.assert_allclose(logits, model.output_loss_parts(params, context, narrow, None)[0], rtol=1e-6, atol=1e-7)


def test_gauss_newton_is_the_exact_hessian_where_the_logits_are_linear():
    """GRU4Rec's logits are (last state @ dense_w + dense_b) @ items^T: linear in the dense layer,
    so over that block the dropped term of the Hessian vanishes and G = H; over all parameters
    the two differ."""
    model, context, params, batch = sequence_setting("GRU4Rec")
    key = jax.random.PRNGKey(3)
    block = leaf_block(("params", "dense_w"), ("params", "dense_b"))
    values = block.values(params)
    operators = jax.jit(lambda p: [
        dense_operator(curvature_operator(c, model, context, batch, key, p, b), v)
        for c in ("gauss_newton", "hessian")
        for b, v in ((block, block.values(p)), (None, p))
    ])
    block_gn, full_gn, block_hessian, full_hessian = (np.asarray(m, np.float64) for m in operators(params))
    assert block_gn.shape == (ravel_pytree(values)[0].size,) * 2
    np.testing.assert_allclose(block_gn, block_hessian, atol=1e-6 * np.max(np.abs(block_hessian)))
    assert np.max(np.abs(full_gn - full_hessian)) > 0.05 * np.max(np.abs(full_hessian))


def tiny_bpr(reg_weight=0.1):
    model = build_model("BPR", embedding_size=3, reg_weight=reg_weight, reg_require_pow=True)
    context = model.prepare(CFTrainData(5, 6, np.zeros(1, np.int32), np.zeros(1, np.int32)))
    params = model.init(jax.random.PRNGKey(0), context)
    rng = np.random.default_rng(0)
    batch = {k: jnp.asarray(rng.integers(0, n, N_ROWS), jnp.int32) for k, n in (("users", 5), ("pos", 6), ("neg", 6))}
    return model, context, params, {**batch, "weight": jnp.asarray(WEIGHT, jnp.float32)}


@pytest.mark.slow
def test_bpr_gauss_newton_is_jt_hout_j_plus_the_l2_hessian():
    model, context, params, batch = tiny_bpr()
    flat, unravel = ravel_pytree(params)
    parts = lambda f: model.output_loss_parts(unravel(f), context, batch, None)
    logistic = lambda m: -jnp.sum(batch["weight"] * jax.nn.log_sigmoid(m)) / jnp.sum(batch["weight"])
    expected = explicit_gauss_newton(lambda f: parts(f)[0], logistic, flat)
    expected += np.asarray(jax.hessian(lambda f: parts(f)[2])(flat), np.float64)
    margins, _, penalty = parts(flat)
    bpr = -jnp.sum(batch["weight"] * jnp.log(1e-10 + jax.nn.sigmoid(margins))) / jnp.sum(batch["weight"])
    np.testing.assert_allclose(bpr + penalty, model.loss(params, context, batch, None), rtol=1e-6)

    got = jax.jit(lambda p: dense_operator(curvature_operator("gauss_newton", model, context, batch, None, p), p))(params)
    got = np.asarray(got, np.float64)
    np.testing.assert_allclose(got, expected, atol=1e-6 * np.max(np.abs(expected)))
    assert np.linalg.eigvalsh(got).min() > -1e-6

    # BPR's margins are linear in the user table: there G is the exact Hessian
    block = leaf_block(USER_EMBEDDING)
    on_block = jax.jit(lambda p: [
        dense_operator(curvature_operator(c, model, context, batch, None, p, block), block.values(p))
        for c in ("gauss_newton", "hessian")
    ])
    block_gn, block_hessian = (np.asarray(m, np.float64) for m in on_block(params))
    np.testing.assert_allclose(block_gn, block_hessian, atol=1e-6 * np.max(np.abs(block_hessian)))


@pytest.mark.slow
def test_lightgcn_forward_mode_twin_and_gauss_newton_through_the_graph():
    """LightGCN's curvature products run on its forward-mode twin (graph products without the
    custom VJP): same loss and gradient; G = J^T H_out J + the L2 Hessian and H checked against
    dense matrices built by reverse mode on the ordinary model."""
    model = build_model("LightGCN", embedding_size=3, n_layers=2, reg_weight=0.1, require_pow=True)
    rng = np.random.default_rng(0)
    edges = rng.integers(0, 5, 14), rng.integers(0, 6, 14)
    context = model.prepare(CFTrainData(5, 6, edges[0].astype(np.int32), edges[1].astype(np.int32)))
    params = model.init(jax.random.PRNGKey(0), context)
    batch = {k: jnp.asarray(rng.integers(0, n, N_ROWS), jnp.int32) for k, n in (("users", 5), ("pos", 6), ("neg", 6))}
    batch["weight"] = jnp.asarray(WEIGHT, jnp.float32)
    twin = model.forward_mode()
    flat, unravel = ravel_pytree(params)
    loss = lambda m: (lambda f: m.loss(unravel(f), context, batch, None))
    np.testing.assert_allclose(loss(twin)(flat), loss(model)(flat), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(loss(twin))(flat), jax.grad(loss(model))(flat), rtol=1e-5, atol=1e-7)

    parts = lambda f: model.output_loss_parts(unravel(f), context, batch, None)
    margins, _, penalty = parts(flat)
    bpr = -jnp.sum(batch["weight"] * jnp.log(1e-10 + jax.nn.sigmoid(margins))) / jnp.sum(batch["weight"])
    np.testing.assert_allclose(bpr + penalty, loss(model)(flat), rtol=1e-6)
    jacobian = np.asarray(jax.jacrev(lambda f: parts(f)[0])(flat), np.float64)  # reverse mode, custom VJP
    logistic = lambda m: -jnp.sum(batch["weight"] * jax.nn.log_sigmoid(m)) / jnp.sum(batch["weight"])
    output_hessian = np.asarray(jax.hessian(logistic)(margins), np.float64)
    expected_gn = jacobian.T @ output_hessian @ jacobian
    expected_gn += np.asarray(jax.jacrev(jax.jacrev(lambda f: parts(f)[2]))(flat), np.float64)
    expected_hessian = np.asarray(jax.jacrev(jax.jacrev(loss(model)))(flat), np.float64)

    assert resolve_curvature("auto", model) == "gauss_newton"
    operators = jax.jit(lambda p: [
        dense_operator(curvature_operator(c, model, context, batch, None, p), p) for c in ("gauss_newton", "hessian")
    ])
    got_gn, got_hessian = (np.asarray(m, np.float64) for m in operators(params))
    np.testing.assert_allclose(got_gn, expected_gn, atol=1e-5 * np.max(np.abs(expected_gn)))
    np.testing.assert_allclose(got_hessian, expected_hessian, atol=1e-5 * np.max(np.abs(expected_hessian)))
    assert np.linalg.eigvalsh(got_gn).min() > -1e-6


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.flatten_util import ravel_pytree
    from erase_jax.data.cf import CFTrainData
    from erase_jax.models import build_model
    from erase_jax.unlearn.influence.curvature import curvature_operator
    from erase_jax.unlearn.influence.sharding import loss_is_row_mean, set_data_parallel_devices

    model = build_model("BPR", embedding_size=4, reg_weight=0.1, reg_require_pow=True)
    context = model.prepare(CFTrainData(7, 9, np.zeros(1, np.int32), np.zeros(1, np.int32)))
    params = model.init(jax.random.PRNGKey(0), context)
    rng = np.random.default_rng(0)
    n = 37  # not a multiple of 4: padded with weight-0 rows
    batch = {k: jnp.asarray(rng.integers(0, m, n), jnp.int32) for k, m in (("users", 7), ("pos", 9), ("neg", 9))}
    batch["weight"] = jnp.asarray(rng.integers(0, 3, n), jnp.float32)
    v = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
    product = lambda p, v: curvature_operator("gauss_newton", model, context, batch, None, p)(v)
    sharded = np.asarray(ravel_pytree(jax.jit(product)(params, v))[0])
    set_data_parallel_devices(1)
    single = np.asarray(ravel_pytree(jax.jit(product)(params, v))[0])  # a new function: compiled anew
    print(json.dumps({"devices": jax.local_device_count(), "row_mean": loss_is_row_mean(model),
                      "norm": float(np.max(np.abs(single))), "error": float(np.max(np.abs(sharded - single)))}))
    """
)


@pytest.mark.slow
def test_gauss_newton_sharded_over_four_devices_equals_one_device():
    result = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and report["row_mean"] and report["norm"] > 1e-3
    assert report["error"] < 1e-5 * report["norm"], report


def test_curvature_and_damping_defaults_per_model_family():
    gru, _, _, _ = sequence_setting("GRU4Rec")
    bpr, lightgcn, sgl = build_model("BPR"), build_model("LightGCN"), build_model("SGL")
    assert resolve_curvature("auto", gru) == "gauss_newton"
    assert resolve_curvature("auto", bpr) == "gauss_newton"  # CEU, IDEA, GIF: all parameters
    assert resolve_curvature("auto", bpr, default="hessian") == "hessian"  # SCIF: a convex user block
    assert resolve_curvature("auto", lightgcn) == "gauss_newton"  # on its forward-mode twin
    assert resolve_curvature("auto", sgl) == "hessian"  # no hook
    assert resolve_curvature("auto", gru, compat="erase") == "hessian"
    assert resolve_curvature("gauss_newton", bpr) == "gauss_newton" and resolve_curvature("hessian", gru) == "hessian"
    with pytest.raises(ValueError, match="output_loss_parts"):
        resolve_curvature("gauss_newton", sgl)  # no hook
    for name in ("gif", "ceu", "idea", "scif"):
        with pytest.raises(ValueError, match="curvature"):
            build_method(name, compat="erase", curvature="gauss_newton")
        with pytest.raises(ValueError, match="curvature"):
            build_method(name, curvature="newton")

    assert build_method("scif").damping_for(gru) == gru.scif_damping == 1.0
    assert build_method("scif").damping_for(bpr) == 1e-4
    assert build_method("scif", damping=0.01).damping_for(gru) == 0.01  # a given damping wins
    assert build_method("scif", compat="erase").damping_for(gru) == 0.01
    assert newton_damping(None, "gauss_newton", bpr) == 1e-4 and newton_damping(None, "hessian", bpr) == 0.01
    assert newton_damping(None, "gauss_newton", gru) == 0.01
    assert newton_damping(None, "gauss_newton", bpr, "erase") == 0.01 and newton_damping(3e-3, "hessian", gru) == 3e-3
