"""GIF, CEU and IDEA: exact convex checks of each correct-mode step (explicit Hessians), the noise
they add, and smoke runs of both compat modes on tiny BPR and LightGCN requests."""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model
from erase_jax.unlearn.influence.curvature import newton_damping, resolve_curvature
from erase_jax.unlearn.influence.solvers import SolverStatus
from erase_jax.unlearn.methods import ceu, gif, idea  # noqa: F401  (register "gif", "ceu", "idea")
from erase_jax.unlearn.methods.base import RequestData, build_method
from erase_jax.unlearn.methods.finetune import fine_tunes
from erase_jax.unlearn.methods.newton import removal_newton_system, same_context
from erase_jax.unlearn.methods.noise import NOISE_STREAM, gaussian_noise

PADDED_ROWS = 64
N_USERS, N_ITEMS, ROWS_PER_USER, DIM, REG = 12, 7, 6, 3, 0.1


@dataclasses.dataclass(frozen=True)
class ContextItemRidgeMF:
    """Ridge MF whose item embeddings live in the context (not in params): per row
    (<e_u, i_pos> - 1)^2 + <e_u, i_neg>^2 + reg |e_u|^2, a weighted mean. "All parameters" is
    then the user table, in which the loss is quadratic, so Newton steps are exact."""

    name: ClassVar[str] = "ContextItemRidgeMF"
    reg: float = REG

    def loss(self, params, items, batch, key):
        e = params["params"]["user_embedding"]["embedding"][batch["users"]]
        pos, neg = jnp.sum(e * items[batch["pos"]], -1), jnp.sum(e * items[batch["neg"]], -1)
        rows = (pos - 1.0) ** 2 + neg**2 + self.reg * jnp.sum(e * e, -1)
        return jnp.sum(batch["weight"] * rows) / jnp.maximum(jnp.sum(batch["weight"]), 1e-12)


def rows_batch(users, pos, neg) -> dict:
    n = len(users)
    pad = lambda x: jnp.asarray(np.concatenate([x, np.zeros(PADDED_ROWS - n)]), jnp.int32)
    return {"users": pad(users), "pos": pad(pos), "neg": pad(neg), "weight": jnp.asarray(np.arange(PADDED_ROWS) < n, jnp.float32)}


def select(rows, mask):
    return rows_batch(*(np.asarray(rows[k])[mask] for k in ("users", "pos", "neg")))


def ridge_optimum(items, rows, reg):
    items = np.asarray(items, np.float64)
    optimum = {}
    for u in np.unique(rows["users"]):
        mine = rows["users"] == u
        a, b = items[rows["pos"][mine]], items[rows["neg"][mine]]
        optimum[u] = np.linalg.solve(a.T @ a + b.T @ b + reg * mine.sum() * np.eye(items.shape[1]), a.sum(0))
    return optimum


def table(params):
    return np.asarray(params["params"]["user_embedding"]["embedding"], np.float64)


@pytest.fixture(scope="module")
def convex():
    """Users trained to the exact optimum; user 1 forgets 2 of its 6 rows; retain = users 3-5."""
    rng = np.random.default_rng(0)
    items = jnp.asarray(rng.normal(size=(N_ITEMS, DIM)), jnp.float32)
    rows = {
        "users": np.repeat(np.arange(N_USERS), ROWS_PER_USER),
        "pos": rng.integers(0, N_ITEMS, N_USERS * ROWS_PER_USER),
        "neg": rng.integers(0, N_ITEMS, N_USERS * ROWS_PER_USER),
    }
    optimum = ridge_optimum(items, rows, REG)
    params = {"params": {"user_embedding": {"embedding": jnp.asarray([optimum[u] for u in range(N_USERS)], jnp.float32)}}}
    user_1 = rows["users"] == 1
    forgotten = user_1 & np.isin(np.arange(len(user_1)) % ROWS_PER_USER, [0, 4])
    retain_mask = np.isin(rows["users"], [3, 4, 5])
    forget, clean, retain = select(rows, user_1), select(rows, user_1 & ~forgotten), select(rows, retain_mask)
    req = RequestData(0, np.array([1]), forget, clean, retain, ROWS_PER_USER, 2, items, items)
    kept = {k: v[~forgotten] for k, v in rows.items()}
    retrained = ridge_optimum(items, kept, REG)
    expected = np.array([retrained[u] for u in range(N_USERS)])
    return ContextItemRidgeMF(), params, req, rows, (user_1, forgotten, retain_mask), expected


def explicit_pieces(convex):
    """g = (sum_F grad l - sum_C grad l) / N (the R terms cancel on one graph) and the explicit
    Hessian of the mean loss over C and R, both by hand / jax.hessian on the flat table."""
    model, params, req, rows, (user_1, forgotten, retain_mask), _ = convex
    items = np.asarray(req.context_before, np.float64)
    e = table(params)

    def row_grad(r):
        u, p, n = rows["users"][r], rows["pos"][r], rows["neg"][r]
        out = np.zeros_like(e)
        out[u] = 2 * (e[u] @ items[p] - 1) * items[p] + 2 * (e[u] @ items[n]) * items[n] + 2 * REG * e[u]
        return out

    n_kept = (user_1 & ~forgotten).sum() + retain_mask.sum()
    g = sum(row_grad(r) for r in np.flatnonzero(user_1 & forgotten)) / n_kept  # sum_F - sum_C = sum_{F\C}
    kept_rows = select(rows, (user_1 & ~forgotten) | retain_mask)
    flat_loss = lambda flat: model.loss({"params": {"user_embedding": {"embedding": flat.reshape(e.shape)}}}, req.context_after, kept_rows, None)
    hessian = np.asarray(jax.hessian(flat_loss)(jnp.asarray(e.ravel(), jnp.float32)), np.float64)
    return g.ravel(), hessian, e


@pytest.mark.slow
def test_gif_correct_is_the_lissa_recursion_of_the_paper(convex):
    model, params, req, *_ = convex
    damping, scale, iterations = 0.01, 5.0, 30
    method = build_method("gif", gif_solver="lissa", gif_damping=damping, gif_scale_factor=scale, gif_iterations=iterations)
    new, _, diag = method.unlearn(model, params, method.init(model, params), req, jax.random.PRNGKey(1))
    g, hessian, e = explicit_pieces(convex)
    x = g / scale  # h_0 / s; x_t = x_{t-1} + (g - (H + d s I) x_{t-1}) / s, update + h_T / s
    for _ in range(iterations):
        x = x + (g - (hessian + damping * scale * np.eye(len(g))) @ x) / scale
    np.testing.assert_allclose(table(new) - e, x.reshape(e.shape), atol=2e-6, rtol=1e-4)
    assert np.linalg.norm(x) > 1e-3 and not diag["skipped"]


def test_gif_cg_solver_solves_the_damped_newton_system(convex):
    """gif_solver="cg" (the default): CG on (H + gif_cg_damping I) x = g, checked with an explicit
    solve; the damping defaults to 0.01 with the exact Hessian (this model has no Gauss-Newton hook)."""
    model, params, req, *_ = convex
    method = build_method("gif")
    assert method.solver == "cg" and build_method("gif", gif_solver="lissa").solver == "lissa"
    new, _, diag = method.unlearn(model, params, method.init(model, params), req, jax.random.PRNGKey(1))
    g, hessian, e = explicit_pieces(convex)
    x = np.linalg.solve(hessian + 0.01 * np.eye(len(g)), g)
    np.testing.assert_allclose(table(new) - e, x.reshape(e.shape), atol=1e-5, rtol=1e-4)
    assert not diag["skipped"]


@pytest.mark.slow
def test_gif_erase_reproduces_the_recursion_without_the_final_division(convex):
    model, params, req, rows, (user_1, *_), _ = convex
    damping, scale, iterations = 0.01, 1000.0, 20
    method = build_method("gif", compat="erase", gif_iterations=iterations, learning_rate=0.0)
    new, _, diag = method.unlearn(model, params, method.init(model, params), req, jax.random.PRNGKey(1))
    e = table(params)
    # delta = g_F (one 256-row batch mean / |F|) + g_orig - g_rem (equal: one graph)
    grad_mean = lambda batch: np.asarray(jax.grad(lambda p: model.loss(p, req.context_before, batch, None))(params)["params"]["user_embedding"]["embedding"], np.float64)
    delta = (grad_mean(req.forget) / ROWS_PER_USER).ravel()
    flat_loss = lambda flat: model.loss({"params": {"user_embedding": {"embedding": flat.reshape(e.shape)}}}, req.context_before, req.retain, None)
    hessian = np.asarray(jax.hessian(flat_loss)(jnp.asarray(e.ravel(), jnp.float32)), np.float64)
    h = delta
    for _ in range(iterations):
        h = delta + h - (damping / scale) * hessian @ h
    np.testing.assert_allclose(table(new) - e, h.reshape(e.shape), atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(h, (iterations + 1) * delta, rtol=1e-3)  # the Q-GIF-3 quirk: about (T+1) delta


def test_ceu_correct_lands_on_the_retrained_optimum(convex):
    """(IDEA's is checked, with its noise, in test_idea_noise_is_exactly_the_reported_scale.)"""
    model, params, req, *_, expected = convex
    method = build_method("ceu", ceu_lambda=0.0, ceu_sigma=0.0)
    new, _, diag = method.unlearn(model, params, method.init(model, params), req, jax.random.PRNGKey(1))
    before = table(params)
    assert np.linalg.norm(expected[1] - before[1]) > 0.05 * np.linalg.norm(expected[1])  # a real move
    np.testing.assert_allclose(table(new), expected, atol=2e-4)
    assert diag["noise_scale"] == 0.0 and not diag["skipped"]
    assert diag["solver_status"] == SolverStatus.CONVERGED


@pytest.mark.slow
def test_newton_system_weights_the_retain_sample_up_to_the_data_size(convex):
    """With the data's size n given, g = sum_{F minus C} grad l / n and H is the Hessian of
    (sum_C l + w sum_R l) / n, w = (n - |C|) / |R|: the retain sample stands for the other rows."""
    model, params, req, rows, (user_1, forgotten, retain_mask), _ = convex
    n_train = len(rows["users"]) - int(forgotten.sum())
    system = removal_newton_system(
        model, params, (req.context_before, req.context_after), (req.forget, req.clean, req.retain),
        jax.random.PRNGKey(0), "hessian", jnp.float32(n_train),
    )
    g_sample, _, e = explicit_pieces(convex)  # normalised by the sample size |C| + |R|
    n_clean, n_retain = int((user_1 & ~forgotten).sum()), int(retain_mask.sum())
    g = g_sample * (n_clean + n_retain) / n_train
    weight = (n_train - n_clean) / n_retain
    weighted = {**select(rows, retain_mask), "weight": select(rows, retain_mask)["weight"] * weight}
    kept = {k: jnp.concatenate([select(rows, user_1 & ~forgotten)[k], weighted[k]]) for k in weighted}

    def flat_loss(flat):
        p = {"params": {"user_embedding": {"embedding": flat.reshape(e.shape)}}}
        return model.loss(p, req.context_after, kept, None)  # weighted mean: divides by |C| + w |R| = n

    hessian = np.asarray(jax.hessian(flat_loss)(jnp.asarray(e.ravel(), jnp.float32)), np.float64)
    np.testing.assert_allclose(
        np.concatenate([np.ravel(x) for x in jax.tree.leaves(system[0])]), g, rtol=1e-4, atol=1e-7
    )
    v = np.random.default_rng(3).normal(size=e.size)
    hv = system[1]({"params": {"user_embedding": {"embedding": jnp.asarray(v.reshape(e.shape), jnp.float32)}}})
    np.testing.assert_allclose(np.ravel(table(hv)), hessian @ v, rtol=1e-4, atol=1e-6)
    assert weight > 1.5  # the check above is not the unweighted case


def test_ceu_lands_on_the_retrained_optimum_whatever_the_data_size(convex):
    """The request's own rows are all in C, so without damping its users' step does not depend on
    the normalisation: with n given (retain rows weighted up) it still lands on the retrain."""
    model, params, req, rows, (_, forgotten, _), expected = convex
    req = dataclasses.replace(req, n_train_rows=len(rows["users"]) - int(forgotten.sum()))
    method = build_method("ceu", ceu_lambda=0.0, ceu_sigma=0.0)
    new, _, diag = method.unlearn(model, params, method.init(model, params), req, jax.random.PRNGKey(1))
    np.testing.assert_allclose(table(new), expected, atol=2e-4)
    assert diag["solver_status"] == SolverStatus.CONVERGED


@pytest.mark.slow
def test_ceu_correct_is_the_damped_step_plus_noise_of_the_reported_scale(convex):
    """x = (H + lambda I)^-1 g (lambda counted once), then exactly sigma * xi for the method's key.

    Default noise_mode "release": the state keeps e + x and the released copy adds the noise;
    "accumulate" (the original's placement) puts the noise into the model itself.
    """
    model, params, req, *_ = convex
    lam, sigma, key = 0.05, 0.5, jax.random.PRNGKey(7)
    g, hessian, e = explicit_pieces(convex)
    x = np.linalg.solve(hessian + lam * np.eye(len(g)), g).reshape(e.shape)

    # default ceu_noise_scale "per_node": sigma / (|F| + |C|) per entry, the original's magnitude
    nodes = int(np.sum(np.asarray(req.forget["weight"]) > 0))
    nodes += 0 if req.clean is None else int(np.sum(np.asarray(req.clean["weight"]) > 0))
    for scale, expected in (("per_node", sigma / nodes), ("absolute", sigma)):
        method = build_method("ceu", ceu_lambda=lam, ceu_sigma=sigma, ceu_noise_scale=scale)
        released, noiseless, diag = method.unlearn(model, params, method.init(model, params), req, key)
        noise = table(gaussian_noise(jax.random.fold_in(key, NOISE_STREAM), params, expected))
        np.testing.assert_allclose(table(noiseless) - e, x, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(table(released) - table(noiseless), noise, atol=1e-6)
        assert diag["noise_scale"] == pytest.approx(expected) and diag["certification_residual"] < 1e-4
    assert nodes > 1 and build_method("ceu").ceu_noise_scale == "per_node"
    assert abs(np.std(noise) - sigma) < 0.2  # 36 entries: a loose statistical check on top of the exact one
    with pytest.raises(ValueError, match="ceu_noise_scale"):
        build_method("ceu", ceu_noise_scale="huge")

    method = build_method("ceu", ceu_lambda=lam, ceu_sigma=sigma, noise_mode="accumulate", ceu_noise_scale="absolute")
    new, _, diag = method.unlearn(model, params, method.init(model, params), req, key)
    noise = table(gaussian_noise(jax.random.split(key)[1], params, sigma))
    np.testing.assert_allclose(table(new) - e - noise, x, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_released_noise_does_not_compound_over_requests(convex):
    """Two requests. "release": the released model is the noiseless state plus exactly the LAST
    request's draw (the second step starts from the noiseless state). "accumulate": both draws
    stay in the model, so the leftover noise has about twice the variance."""
    model, params, req, *_ = convex
    sigma, keys = 0.5, jax.random.split(jax.random.PRNGKey(3))
    leftover = {}
    for mode in ("release", "accumulate"):
        method = build_method("ceu", ceu_lambda=0.0, ceu_sigma=sigma, noise_mode=mode, ceu_noise_scale="absolute")
        quiet = build_method("ceu", ceu_lambda=0.0, ceu_sigma=0.0, noise_mode=mode)
        p, state = params, method.init(model, params)
        q, quiet_state = params, quiet.init(model, params)
        for key in keys:
            p, state, _ = method.unlearn(model, p, state, req, key)
            q, quiet_state, _ = quiet.unlearn(model, q, quiet_state, req, key)
        leftover[mode] = table(p) - table(q)
        if mode == "release":
            last_draw = table(gaussian_noise(jax.random.fold_in(keys[-1], NOISE_STREAM), params, sigma))
            np.testing.assert_allclose(leftover[mode], last_draw, atol=1e-5)
    # Same keys in both modes: a deterministic comparison, not a statistical one.
    assert np.var(leftover["accumulate"]) > 1.5 * np.var(leftover["release"]), leftover


@pytest.mark.slow
def test_idea_noise_is_exactly_the_reported_scale(convex):
    model, params, req, *_, expected = convex
    key = jax.random.PRNGKey(7)
    method = build_method("idea", idea_damping=0.0, idea_sigma=0.3, learning_rate=0.0)
    new, state, diag = method.unlearn(model, params, method.init(model, params), req, key)
    noise = table(gaussian_noise(jax.random.fold_in(key, NOISE_STREAM), params, 0.3))
    np.testing.assert_allclose(table(new) - noise, expected, atol=2e-4)  # retrained optimum + noise
    np.testing.assert_allclose(table(state["noiseless"]), expected, atol=2e-4)
    assert diag["noise_scale"] == pytest.approx(0.3) and diag["required_noise_scale"] == 0.0


def test_unknown_compat_is_rejected():
    for name in ("gif", "ceu", "idea"):
        with pytest.raises(ValueError, match="compat"):
            build_method(name, compat="faithful")


def tiny_requests():
    rng = np.random.default_rng(2)
    n_users, n_items = 12, 15
    users = np.concatenate([np.arange(n_users), rng.integers(0, n_users, 40)]).astype(np.int32)
    items = rng.integers(0, n_items, len(users)).astype(np.int32)
    negs = rng.integers(0, n_items, len(users)).astype(np.int32)
    removed = (users == 3) & (np.arange(len(users)) % 2 == 0)
    rows = {"users": users, "pos": items, "neg": negs}
    forget, clean, retain = select(rows, users == 3), select(rows, (users == 3) & ~removed), select(rows, users >= 6)
    out = {}
    for name in ("BPR", "LightGCN", "SGL"):
        model = build_model(name, embedding_size=8)
        before = model.prepare(CFTrainData(n_users, n_items, users, items), 64)
        after = model.prepare(CFTrainData(n_users, n_items, users[~removed], items[~removed]), 64)
        params = model.init(jax.random.PRNGKey(0), before)
        n_forget = int((users == 3).sum())
        out[name] = (model, params, RequestData(0, np.array([3]), forget, clean, retain, n_forget, int(removed.sum()), before, after))
    return out


@pytest.fixture(scope="module")
def tiny():
    return tiny_requests()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gif", "ceu", "idea"])
@pytest.mark.parametrize("compat, model_name", [("correct", "LightGCN"), ("erase", "BPR"), ("correct", "SGL")])
def test_runs_on_bpr_lightgcn_and_sgl(tiny, name, compat, model_name):
    """The correct mode on LightGCN (before/after graphs, Gauss-Newton on its forward-mode twin)
    and on SGL (exact Hessian: no Gauss-Newton hook), the erase mode on BPR; other pairings add
    compile time only (the convex tests above cover the correct mode's arithmetic)."""
    model, params, req = tiny[model_name]
    method = build_method(name, compat=compat)
    assert method.retain_budget(req.n_forget_rows) > 0
    new, state, diag = method.unlearn(model, params, method.init(model, params), req, jax.random.PRNGKey(1))
    assert all(np.isfinite(np.asarray(v, np.float64)).all() for v in diag.values()), diag
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(new))
    assert not diag["skipped"], diag
    if name == "idea":  # sigma = max(sigma_0, calibrated), Gaussian mechanism (divided in "erase")
        damping = newton_damping(None, resolve_curvature("auto", model, compat), model, compat)
        factor, zeta = math.sqrt(2 * math.log(1.25 / 0.01)), damping * float(diag["solution_norm"])
        required = zeta * factor / 0.1 if compat == "correct" else zeta / (0.1 * factor)
        assert float(diag["sensitivity"]) == pytest.approx(zeta, rel=1e-5)
        assert float(diag["required_noise_scale"]) == pytest.approx(required, rel=1e-5)
        floor = 0.0 if compat == "correct" else 0.1  # sigma_0: the paper has none, the original 0.1
        assert method.sigma_floor == floor and build_method(name, compat=compat, idea_sigma=0.3).sigma_floor == 0.3
        assert float(diag["noise_scale"]) == pytest.approx(max(floor, required), rel=1e-5)
    changed = any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)))
    assert changed


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gif", "idea"])
def test_retain_finetuning_runs_only_in_erase_mode_unless_asked(convex, name):
    """The papers stop at the influence step; ERASE's fine-tuning on R is compat="erase"'s
    default and an option (`retain_finetune`) in "correct"."""
    model, params, req, *_ = convex
    noiseless = {"idea_sigma": 0.0, "noise_mode": "accumulate"} if name == "idea" else {}
    key = jax.random.PRNGKey(1)
    moved = {}
    for finetune in (None, True):
        method = build_method(name, learning_rate=0.05, retain_finetune=finetune, **noiseless)
        new, _, diag = method.unlearn(model, params, method.init(model, params), req, key)
        moved[finetune] = table(new)
        assert not diag["skipped"]
    no_finetune = build_method(name, learning_rate=0.0, **noiseless)
    step_only = table(no_finetune.unlearn(model, params, no_finetune.init(model, params), req, key)[0])
    np.testing.assert_allclose(moved[None], step_only, atol=1e-6)  # lr does not matter: no fine-tuning
    assert np.abs(moved[True] - step_only).max() > 1e-3  # fine-tuning asked for: it moves
    assert fine_tunes(build_method(name, compat="erase")) and not fine_tunes(build_method(name))


def test_newton_system_without_the_terms_that_cancel_is_the_same(convex):
    """One context before and after (`same_context`): R's before-minus-after gradient is not
    traced; a request without C: C's gradient is not traced. The system is the same."""
    model, params, req, *_ = convex
    assert same_context(dataclasses.replace(req, context_after=req.context_before))
    contexts, key, n_train = (req.context_after, req.context_after), jax.random.PRNGKey(0), jnp.float32(100)
    v = {"params": {"user_embedding": {"embedding": jnp.ones_like(params["params"]["user_embedding"]["embedding"])}}}
    for clean in (req.clean, None):
        batches = (req.forget, clean, req.retain)
        g, matvec = removal_newton_system(model, params, contexts, batches, key, "hessian", n_train)
        g_cut, matvec_cut = jax.jit(lambda p, b: removal_newton_system(model, p, contexts, b, key, "hessian", n_train,
                                                                        same_context=True))(params, batches)
        np.testing.assert_allclose(table(g_cut), table(g), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(table(matvec_cut(v)), table(matvec(v)), rtol=1e-6)
