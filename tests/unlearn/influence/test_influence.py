"""Exact checks of the influence core: HVPs against explicit Hessians, solvers against
`jnp.linalg.solve`, divergence reporting, and data-parallel losses over 4 host devices."""

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
from erase_jax.unlearn.influence.blocks import (
    USER_EMBEDDING,
    apply_update,
    leaf_block,
    loss_on_block,
    user_rows_block,
)
from erase_jax.unlearn.influence.hvp import hvp, hvp_operator, supports_forward_mode
from erase_jax.unlearn.influence.solvers import (
    SolverStatus,
    cg_solve,
    lissa_solve,
    richardson_solve,
)

N_USERS, N_ITEMS, DIM = 5, 6, 3


def tiny_bpr():
    """A BPR model with an L2 term (so its Hessian has more than rank-one blocks) and a batch."""
    model = build_model("BPR", embedding_size=DIM, reg_weight=0.1)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, np.zeros(1, np.int32), np.zeros(1, np.int32)))
    params = model.init(jax.random.PRNGKey(0), context)
    rng = np.random.default_rng(0)
    n_rows = 9
    batch = {
        "users": jnp.asarray(rng.integers(0, N_USERS, n_rows), jnp.int32),
        "pos": jnp.asarray(rng.integers(0, N_ITEMS, n_rows), jnp.int32),
        "neg": jnp.asarray(rng.integers(0, N_ITEMS, n_rows), jnp.int32),
        "weight": jnp.asarray([1, 1, 1, 1, 1, 1, 1, 0, 0], jnp.float32),
    }
    loss = lambda p: model.loss(p, context, batch, jax.random.PRNGKey(1))
    return model, context, params, batch, loss


def random_like(tree, seed):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def test_hvp_equals_explicit_hessian_on_all_parameters():
    _, _, params, _, loss = tiny_bpr()
    assert supports_forward_mode(loss, params)
    flat, unravel = ravel_pytree(params)
    hessian = jax.jit(jax.hessian(lambda f: loss(unravel(f))))(flat)
    v = random_like(params, 1)
    expected = hessian @ ravel_pytree(v)[0]
    got = jax.jit(lambda p, v: (hvp(loss, p, v), hvp_operator(loss, p)(v)))(params, v)
    for product in got:
        np.testing.assert_allclose(ravel_pytree(product)[0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_hvp_through_a_custom_vjp_falls_back_to_reverse_over_reverse():
    """LightGCN's graph product is a custom_vjp, which forward mode cannot differentiate."""
    rng = np.random.default_rng(0)
    users = np.concatenate([np.arange(N_USERS), rng.integers(0, N_USERS, 8)]).astype(np.int32)
    items = rng.integers(0, N_ITEMS, len(users)).astype(np.int32)
    model = build_model("LightGCN", embedding_size=DIM)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items), 20)
    params = model.init(jax.random.PRNGKey(0), context)
    batch = {"users": users[:6], "pos": items[:6], "neg": items[6:12], "weight": np.ones(6, np.float32)}
    loss = lambda p: model.loss(p, context, batch, None)
    assert not supports_forward_mode(loss, params)

    flat, unravel = ravel_pytree(params)
    hessian = jax.jit(jax.jacrev(jax.grad(lambda f: loss(unravel(f)))))(flat)
    v = random_like(params, 1)
    got = jax.jit(lambda p, v: (hvp(loss, p, v), hvp_operator(loss, p)(v)))(params, v)
    for product in got:
        np.testing.assert_allclose(ravel_pytree(product)[0], hessian @ ravel_pytree(v)[0], rtol=1e-4, atol=1e-5)


def test_hvp_on_a_row_block_is_the_principal_submatrix():
    _, _, params, _, loss = tiny_bpr()
    rows = np.array([3, 0, N_USERS])  # N_USERS: a padding entry outside the table
    block = user_rows_block(rows)
    values = block.values(params)
    np.testing.assert_array_equal(values[0][2], 0.0)

    table = params["params"]["user_embedding"]["embedding"]
    table_hessian = jax.jit(jax.hessian(lambda t: loss(leaf_block(USER_EMBEDDING).insert(params, (t,)))))(table)
    table_hessian = table_hessian.reshape(N_USERS * DIM, N_USERS * DIM)
    entries = (rows[:2, None] * DIM + np.arange(DIM)).ravel()
    v = (jax.random.normal(jax.random.PRNGKey(2), (3, DIM)),)
    got = jax.jit(lambda values, v: hvp(loss_on_block(loss, params, block), values, v))(values, v)[0]
    expected = table_hessian[np.ix_(entries, entries)] @ v[0][:2].ravel()
    np.testing.assert_allclose(got[:2].ravel(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(got[2], 0.0)


def test_block_insert_and_update_touch_only_the_block_rows():
    _, _, params, _, _ = tiny_bpr()
    block = user_rows_block(np.array([1, 4, N_USERS]))
    assert jax.tree.all(jax.tree.map(jnp.array_equal, block.insert(params, block.values(params)), params))
    updated = apply_update(params, block, (jnp.ones((3, DIM)),))
    change = updated["params"]["user_embedding"]["embedding"] - params["params"]["user_embedding"]["embedding"]
    np.testing.assert_allclose(change, np.isin(np.arange(N_USERS), [1, 4])[:, None] * np.ones(DIM))
    assert updated["params"]["item_embedding"] is params["params"]["item_embedding"]


def spd_matrix(n, low, high, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return jnp.asarray((q * np.linspace(low, high, n)) @ q.T, jnp.float32)


def test_solvers_match_a_direct_solve():
    matrix = spd_matrix(12, 0.5, 2.0)
    g = jnp.asarray(np.random.default_rng(1).normal(size=12), jnp.float32)
    matvec = lambda v: matrix @ v
    damping = 0.1
    expected = jnp.linalg.solve(matrix + damping * jnp.eye(12), g)

    x, info = cg_solve(matvec, g, damping, tol=1e-6, max_iter=50)
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)
    assert info.status == SolverStatus.CONVERGED and 0 < info.iterations <= 12
    history = np.asarray(info.residual_history)
    assert history[0] == pytest.approx(float(jnp.linalg.norm(g)))
    assert np.isnan(history[info.iterations + 1 :]).all() and np.isfinite(history[: info.iterations + 1]).all()

    # Richardson with the optimal step 2 / (lambda_min + lambda_max) of H + damping I.
    x, info = richardson_solve(matvec, g, damping, step=2 / (0.6 + 2.1), iterations=200)
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)
    assert info.status == SolverStatus.MAX_ITERATIONS

    # LiSSA solves (H + d s I) x = g: d s = damping with scale s = 2 (> lambda_max / 2).
    x, info = lissa_solve(matvec, g, damping=damping / 2.0, scale=2.0, iterations=200)
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)


def test_cg_works_on_pytrees():
    matrix = spd_matrix(6, 1.0, 3.0)
    g = (jnp.arange(4.0), jnp.ones((1, 2)))
    flat_g, unravel = ravel_pytree(g)
    x, info = cg_solve(lambda v: unravel(matrix @ ravel_pytree(v)[0]), g, tol=1e-6)
    np.testing.assert_allclose(ravel_pytree(x)[0], jnp.linalg.solve(matrix, flat_g), rtol=1e-4, atol=1e-5)
    assert info.status == SolverStatus.CONVERGED


def test_divergence_is_reported_not_applied():
    matrix = spd_matrix(8, 0.5, 2.0)
    g = jnp.ones(8)
    # Scale 0.5 puts lambda_max / s = 4 outside (0, 2): the recursion blows up.
    _, info = lissa_solve(lambda v: matrix @ v, g, damping=0.0, scale=0.5, iterations=200)
    assert info.status in (SolverStatus.RESIDUAL_GROWTH, SolverStatus.NONFINITE)
    assert info.iterations < 200

    indefinite = jnp.diag(jnp.array([1.0, 2.0, -1.0]))
    x, info = cg_solve(lambda v: indefinite @ v, jnp.ones(3), max_iter=10)
    assert info.status == SolverStatus.NOT_POSITIVE_DEFINITE
    assert np.isfinite(np.asarray(x)).all()

    x, info = cg_solve(lambda v: v * jnp.nan, jnp.ones(3))
    assert info.status == SolverStatus.NONFINITE and info.iterations == 0
    np.testing.assert_array_equal(x, 0.0)


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.flatten_util import ravel_pytree
    from erase_jax.data.cf import CFTrainData
    from erase_jax.models import build_model
    from erase_jax.unlearn.influence.hvp import hvp
    from erase_jax.unlearn.influence.sharding import pad_rows, sharded_loss

    model = build_model("BPR", embedding_size=4)
    context = model.prepare(CFTrainData(7, 9, np.zeros(1, np.int32), np.zeros(1, np.int32)))
    params = model.init(jax.random.PRNGKey(0), context)
    rng = np.random.default_rng(0)
    n = 37  # not a multiple of 4: pad_rows adds weight-0 rows
    batch = {"users": rng.integers(0, 7, n), "pos": rng.integers(0, 9, n), "neg": rng.integers(0, 9, n)}
    batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items()}
    batch["weight"] = jnp.asarray(rng.integers(0, 2, n), jnp.float32)
    loss = lambda p, b: model.loss(p, context, b, None)
    padded = pad_rows(batch, 4)
    v = jax.tree.map(lambda x: jnp.ones_like(x) * 0.3, params)
    flat = lambda t: np.asarray(ravel_pytree(t)[0])
    value_grad_hvp = lambda f: jax.jit(lambda p, b: (f(p, b), jax.grad(f)(p, b), hvp(lambda q: f(q, b), p, v)))
    single = value_grad_hvp(loss)(params, batch)
    multi = value_grad_hvp(sharded_loss(loss, 4))(params, padded)
    print(json.dumps({
        "devices": jax.local_device_count(),
        "rows": int(padded["weight"].shape[0]),
        "errors": [float(np.max(np.abs(flat(a) - flat(b))) / np.max(np.abs(flat(a)))) for a, b in zip(single, multi)],
    }))
    """
)


SCIF_SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from erase_jax.data.cf import CFTrainData
    from erase_jax.models import build_model
    from erase_jax.unlearn import build_method
    from erase_jax.unlearn.methods.base import RequestData
    from erase_jax.unlearn.influence.curvature import curvature_operator
    from erase_jax.unlearn.influence.sharding import loss_is_row_mean, set_data_parallel_devices

    rng = np.random.default_rng(1)
    n_users, n_items = 30, 40
    users = np.repeat(np.arange(n_users), 6).astype(np.int32)
    items = rng.integers(0, n_items, len(users)).astype(np.int32)
    neg = rng.integers(0, n_items, len(users)).astype(np.int32)

    def batch(mask):
        size = 64
        out = {k: np.zeros(size, np.int32) for k in ("users", "pos", "neg")}
        k = int(mask.sum())
        out["users"][:k], out["pos"][:k], out["neg"][:k] = users[mask], items[mask], neg[mask]
        out = {key: jnp.asarray(v) for key, v in out.items()}
        out["weight"] = jnp.asarray((np.arange(size) < k).astype(np.float32))
        return out

    forgotten = (users == 2) & (np.arange(len(users)) % 3 == 0)
    report = {"devices": jax.local_device_count()}
    for name in ("BPR", "LightGCN"):
        model = build_model(name, embedding_size=4, **({"require_pow": True} if name == "LightGCN" else {}))
        before = model.prepare(CFTrainData(n_users, n_items, users, items), 256)
        after = model.prepare(CFTrainData(n_users, n_items, users[~forgotten], items[~forgotten]), 256)
        params = model.init(jax.random.PRNGKey(0), before)
        req = RequestData(0, np.array([2]), batch(users == 2), batch((users == 2) & ~forgotten),
                          batch(users >= 20), 6, int(forgotten.sum()), before, after)
        method = build_method("scif", damping=0.01)
        sharded, _, _ = method.unlearn(model, params, (), req, jax.random.PRNGKey(3))
        set_data_parallel_devices(1)
        jax.clear_caches()  # the jitted request was compiled with the 4-way split
        single, _, _ = method.unlearn(model, params, (), req, jax.random.PRNGKey(3))
        set_data_parallel_devices(None)
        jax.clear_caches()
        a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(sharded)])
        b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(single)])
        p = np.concatenate([np.ravel(x) for x in jax.tree.leaves(params)])
        report[name] = {"moved": float(np.max(np.abs(b - p))), "error": float(np.max(np.abs(a - b)))}
        report[name + "_row_mean"] = loss_is_row_mean(model)
    print(json.dumps(report))
    """
)


@pytest.mark.slow
def test_scif_step_sharded_over_four_devices_equals_one_device():
    """SCIF's whole request with its rows split over 4 forced host devices equals the
    one-device request (BPR, and LightGCN with its per-row regulariser)."""
    result = subprocess.run([sys.executable, "-c", SCIF_SHARDED_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and report["BPR_row_mean"] and report["LightGCN_row_mean"]
    for name in ("BPR", "LightGCN"):
        assert report[name]["moved"] > 1e-4, report  # the request changed the parameters
        assert report[name]["error"] < 1e-5 * max(1.0, report[name]["moved"]) + 1e-6, report


@pytest.mark.slow
def test_sharded_loss_gradient_and_hvp_match_one_device():
    result = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and report["rows"] == 40
    assert max(report["errors"]) < 1e-5, report
