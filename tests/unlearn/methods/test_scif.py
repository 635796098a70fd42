"""SCIF through the method registry: the convex acceptance case (one Newton step lands on the
retrained optimum), the exactness of the row block, and smoke runs of both modes on BPR."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model
from erase_jax.models.cf.base import CFModelBase
from erase_jax.models.cf.bpr import BPR, CFShape
from erase_jax.unlearn.influence.solvers import SolverStatus
from erase_jax.unlearn.methods import scif  # noqa: F401  (registers "scif")
from erase_jax.unlearn.methods.base import RequestData, build_method

PADDED_ROWS = 64


def users_of(params):
    return params["params"]["user_embedding"]["embedding"]


def items_of(params):
    return params["params"]["item_embedding"]["embedding"]


@dataclasses.dataclass(frozen=True)
class FrozenItemRidgeMF(CFModelBase):
    """Squared-loss MF: per row (<e_u, e_pos> - 1)^2 + <e_u, e_neg>^2 + reg |e_u|^2.

    Quadratic and strictly convex in the user embeddings; SCIF never moves the item
    embeddings, so with items frozen one exact Newton step reaches the retrained optimum.
    """

    name: ClassVar[str] = "FrozenItemRidgeMF"
    trainable: ClassVar[bool] = True
    user_rows_are_local: ClassVar[bool] = True

    embedding_size: int = 4
    reg: float = 0.1

    def prepare(self, train, capacity=None):
        return CFShape(train.n_users, train.n_items)

    def init(self, key, context):
        user_key, item_key = jax.random.split(key)
        return {
            "params": {
                "user_embedding": {"embedding": jax.random.normal(user_key, (context.n_users, self.embedding_size))},
                "item_embedding": {"embedding": jax.random.normal(item_key, (context.n_items, self.embedding_size))},
            }
        }

    def loss(self, params, context, batch, key):
        e = users_of(params)[batch["users"]]
        pos = jnp.sum(e * items_of(params)[batch["pos"]], axis=-1)
        neg = jnp.sum(e * items_of(params)[batch["neg"]], axis=-1)
        rows = (pos - 1.0) ** 2 + neg**2 + self.reg * jnp.sum(e * e, axis=-1)
        return jnp.sum(batch["weight"] * rows) / jnp.maximum(jnp.sum(batch["weight"]), 1e-12)

    def scores(self, params, context, query):
        return users_of(params)[query["users"]] @ items_of(params).T


def rows_batch(users, pos, neg) -> dict:
    """A flat CF batch padded with weight-0 rows to PADDED_ROWS, as the runner builds them."""
    n = len(users)
    pad = lambda x: jnp.asarray(np.concatenate([x, np.zeros(PADDED_ROWS - n)]), jnp.int32)
    weight = jnp.asarray(np.arange(PADDED_ROWS) < n, jnp.float32)
    return {"users": pad(users), "pos": pad(pos), "neg": pad(neg), "weight": weight}


def select(rows: dict, mask) -> dict:
    return rows_batch(*(rows[k][mask] for k in ("users", "pos", "neg")))


def request(context, forget, clean, retain, n_forget, n_removed=0):
    return RequestData(0, np.array([1]), forget, clean, retain, n_forget, n_removed, context, context)


def ridge_optimum(items, rows, reg):
    """Each user's exact minimiser of the sum of FrozenItemRidgeMF row losses (float64)."""
    items = np.asarray(items, np.float64)
    d = items.shape[1]
    optimum = {}
    for u in np.unique(rows["users"]):
        mine = rows["users"] == u
        a, b = items[rows["pos"][mine]], items[rows["neg"][mine]]
        lhs = a.T @ a + b.T @ b + reg * mine.sum() * np.eye(d)
        optimum[u] = np.linalg.solve(lhs, a.sum(axis=0))
    return optimum


@pytest.fixture(scope="module")
def ridge_setting():
    """70 users with 8 rows each, trained to the exact optimum; user 1 will forget 3 rows.

    More users than padded batch rows, so SCIF works on a row block, not the whole table.
    """
    rng = np.random.default_rng(0)
    n_users, n_items = 70, 10
    model = FrozenItemRidgeMF()
    context = model.prepare(CFTrainData(n_users, n_items, np.zeros(1, np.int32), np.zeros(1, np.int32)))
    params = model.init(jax.random.PRNGKey(0), context)
    rows = {
        "users": np.repeat(np.arange(n_users), 8),
        "pos": rng.integers(0, n_items, 8 * n_users),
        "neg": rng.integers(0, n_items, 8 * n_users),
    }
    items = items_of(params)
    trained = np.array([ridge_optimum(items, rows, model.reg)[u] for u in range(n_users)])
    params = {"params": {**params["params"], "user_embedding": {"embedding": jnp.asarray(trained, jnp.float32)}}}
    forgotten = (rows["users"] == 1) & np.isin(np.arange(len(rows["users"])) % 8, [0, 3, 5])
    method = build_method("scif", damping=0.0)  # lambda = 0: the undamped Newton step is exact
    return model, context, params, rows, forgotten, method


def test_convex_case_lands_on_the_retrained_optimum(ridge_setting):
    model, context, params, rows, forgotten, method = ridge_setting
    user_1, retain_users = rows["users"] == 1, np.isin(rows["users"], [3, 4, 5])
    forget, clean, retain = select(rows, user_1), select(rows, user_1 & ~forgotten), select(rows, retain_users)

    new_params, state, diagnostics = method.unlearn(
        model, params, method.init(model, params), request(context, forget, clean, retain, 8, 3), jax.random.PRNGKey(1)
    )

    kept = {k: v[~forgotten] for k, v in rows.items()}
    retrained = ridge_optimum(items_of(params), kept, model.reg)
    expected = np.array([retrained[u] for u in range(70)])
    got = np.asarray(users_of(new_params))
    before = np.asarray(users_of(params))
    assert np.linalg.norm(expected[1] - before[1]) > 0.1 * np.linalg.norm(expected[1])  # a real move
    assert np.linalg.norm(got[1] - expected[1]) < 1e-3 * np.linalg.norm(expected[1])
    assert np.linalg.norm(got - expected) < 1e-3 * np.linalg.norm(expected)
    np.testing.assert_array_equal(np.delete(got, [1, 3, 4, 5], axis=0), np.delete(before, [1, 3, 4, 5], axis=0))
    np.testing.assert_array_equal(items_of(new_params), items_of(params))
    assert diagnostics["cg_status"] == SolverStatus.CONVERGED and not diagnostics["skipped"]
    assert state == ()


def test_forget_and_clean_terms_cancel_when_nothing_is_removed(ridge_setting):
    model, context, params, rows, _, method = ridge_setting
    off_optimum = jax.tree.map(lambda x: x + 0.3, params)
    user_1 = select(rows, rows["users"] == 1)
    no_retain = select(rows, np.zeros(len(rows["users"]), bool))
    new_params, _, _ = method.unlearn(
        model, off_optimum, (), request(context, user_1, user_1, no_retain, 8), jax.random.PRNGKey(1)
    )
    change = users_of(new_params) - users_of(off_optimum)
    assert np.max(np.abs(change)) < 1e-5


def test_a_non_finite_solution_is_skipped_and_recorded(ridge_setting):
    model, context, params, rows, forgotten, method = ridge_setting
    broken = {"params": {**params["params"], "item_embedding": {"embedding": items_of(params) * jnp.nan}}}
    user_1 = rows["users"] == 1
    forget, clean = select(rows, user_1), select(rows, user_1 & ~forgotten)
    req = request(context, forget, clean, select(rows, np.isin(rows["users"], [3, 4, 5])), 8, 3)
    new_params, _, diagnostics = method.unlearn(model, broken, (), req, jax.random.PRNGKey(1))
    assert diagnostics["skipped"] and diagnostics["cg_status"] == SolverStatus.NONFINITE
    np.testing.assert_array_equal(users_of(new_params), users_of(params))


@dataclasses.dataclass(frozen=True)
class BPROnWholeTable(BPR):
    """BPR with SCIF forced onto the whole user-embedding table instead of the row block."""

    user_rows_are_local: ClassVar[bool] = False


@pytest.fixture(scope="module")
def bpr_request():
    """A small BPR model and one request: user 3 forgets 3 of 10 rows; 40 retain rows.

    300 users: more than the padded rows of all batches, so SCIF uses a row block.
    """
    rng = np.random.default_rng(1)
    n_users, n_items = 300, 30
    model = build_model("BPR", embedding_size=8)
    context = model.prepare(CFTrainData(n_users, n_items, np.zeros(1, np.int32), np.zeros(1, np.int32)))
    params = model.init(jax.random.PRNGKey(0), context)
    forget_rows = {"users": np.full(10, 3), "pos": rng.integers(0, n_items, 10), "neg": rng.integers(0, n_items, 10)}
    forget = select(forget_rows, np.ones(10, bool))
    clean = select(forget_rows, np.arange(10) >= 3)
    retain_users = rng.choice(np.delete(np.arange(20), 3), 40)
    retain = rows_batch(retain_users, rng.integers(0, n_items, 40), rng.integers(0, n_items, 40))
    return model, context, params, request(context, forget, clean, retain, 10, 3), {3, *retain_users.tolist()}


@pytest.mark.slow
@pytest.mark.parametrize("compat", ["correct", "erase"])
def test_bpr_changes_only_the_user_embeddings_of_batch_users(bpr_request, compat):
    model, context, params, req, batch_users = bpr_request
    method = build_method("scif", compat=compat)
    new_params, _, diagnostics = method.unlearn(model, params, method.init(model, params), req, jax.random.PRNGKey(2))

    np.testing.assert_array_equal(items_of(new_params), items_of(params))
    change = np.abs(users_of(new_params) - users_of(params)).sum(1)
    assert change[3] > 0
    assert set(np.flatnonzero(change)) <= batch_users
    assert all(np.isfinite(np.asarray(v, np.float64)).all() for v in diagnostics.values())
    assert not diagnostics["skipped"] and diagnostics["cg_iterations"] > 0
    assert diagnostics["cg_status"] < SolverStatus.NONFINITE


def test_row_block_equals_the_whole_table_update(bpr_request):
    """For BPR the row block over the users of F, C and R is exactly the original's table update.

    (Shown for the correct mode; the erase mode shares `target_block` and the argument.)
    """
    model, context, params, req, _ = bpr_request
    assert scif.target_block(model, params, [req.forget, req.clean, req.retain]).rows[0] is not None
    method = build_method("scif")
    by_rows, _, _ = method.unlearn(model, params, (), req, jax.random.PRNGKey(2))
    by_table, _, _ = method.unlearn(BPROnWholeTable(embedding_size=8), params, (), req, jax.random.PRNGKey(2))
    np.testing.assert_allclose(
        users_of(by_rows), users_of(by_table), rtol=1e-4, atol=1e-6
    )


def test_unknown_compat_mode_is_rejected():
    with pytest.raises(ValueError, match="compat"):
        build_method("scif", compat="faithful")


@pytest.mark.slow
def test_lightgcn_moves_only_user_embeddings_with_the_graph_contexts():
    """LightGCN: whole user table (propagation is not row-local), HVPs through its custom_vjp."""
    rng = np.random.default_rng(2)
    n_users, n_items = 12, 15
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, 40)]).astype(np.int32)
    items = rng.integers(0, n_items, len(users)).astype(np.int32)
    removed = (users == 3) & (np.arange(len(users)) % 2 == 0)
    model = build_model("LightGCN", embedding_size=8)
    before = model.prepare(CFTrainData(n_users, n_items, users, items), 64)
    after = model.prepare(CFTrainData(n_users, n_items, users[~removed], items[~removed]), 64)
    params = model.init(jax.random.PRNGKey(0), before)
    mine = {"users": users[users == 3], "pos": items[users == 3], "neg": rng.integers(0, n_items, (users == 3).sum())}
    forget, clean = select(mine, np.ones(len(mine["users"]), bool)), select(mine, ~removed[users == 3])
    retain = select({"users": users, "pos": items, "neg": rng.integers(0, n_items, len(users))}, users >= 6)
    req = RequestData(0, np.array([3]), forget, clean, retain, len(mine["users"]), int(removed.sum()), before, after)

    # An untrained LightGCN is far from convex; the damping of the original keeps the first CG
    # direction positive here so that a step is taken.
    method = build_method("scif", damping=0.01)
    new_params, _, diagnostics = method.unlearn(model, params, (), req, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(items_of(new_params), items_of(params))
    assert not np.array_equal(users_of(new_params), users_of(params))
    assert all(np.isfinite(np.asarray(v, np.float64)).all() for v in diagnostics.values())
    # LightGCN is not convex in the user table: CG may stop at negative curvature and then
    # applies its truncated (Newton-CG) iterate.
    assert diagnostics["cg_status"] in (SolverStatus.CONVERGED, SolverStatus.NOT_POSITIVE_DEFINITE)
    assert not diagnostics["skipped"] and diagnostics["cg_iterations"] > 0
