"""Kookmin, SEIF and Fanchuan: their exact pieces (re-initialisation masks, relative noise, the
class-weighted repair loss, the KL-to-uniform step) and smoke runs through the registry on a tiny
BPR and a tiny LightGCN, including bit-identical reruns with the same key."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model
from erase_jax.unlearn.methods import fanchuan, kookmin, seif
from erase_jax.unlearn.methods.base import RequestData, build_method
from erase_jax.unlearn.methods.finetune import adam_init

PADDED_ROWS = 64
N_USERS, N_ITEMS = 16, 12


def rows_batch(users, pos, neg) -> dict:
    n = len(users)
    pad = lambda x: jnp.asarray(np.concatenate([np.asarray(x), np.zeros(PADDED_ROWS - n)]), jnp.int32)
    weight = jnp.asarray(np.arange(PADDED_ROWS) < n, jnp.float32)
    return {"users": pad(users), "pos": pad(pos), "neg": pad(neg), "weight": weight}


def tiny_request(model_name: str):
    """User 3 forgets 3 of its 8 rows; 30 retain rows of users 6..15."""
    rng = np.random.default_rng(0)
    users = np.concatenate([np.full(8, 3), rng.integers(6, N_USERS, 30)]).astype(np.int32)
    pos = rng.integers(0, N_ITEMS, len(users)).astype(np.int32)
    neg = rng.integers(0, N_ITEMS, len(users)).astype(np.int32)
    removed = np.zeros(len(users), bool)
    removed[:3] = True
    model = build_model(model_name, embedding_size=8)
    before = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, pos), 64)
    after = model.prepare(CFTrainData(N_USERS, N_ITEMS, users[~removed], pos[~removed]), 64)
    params = model.init(jax.random.PRNGKey(0), before)
    forget = rows_batch(users[:8], pos[:8], neg[:8])
    clean = rows_batch(users[3:8], pos[3:8], neg[3:8])
    retain = rows_batch(users[8:], pos[8:], neg[8:])
    return model, params, RequestData(0, np.array([3]), forget, clean, retain, 8, 3, before, after)


# ---------------------------------------------------------------------------------------------
# Kookmin


def test_kookmin_reinitialises_exactly_the_smallest_fraction_per_tensor():
    rng = np.random.default_rng(0)
    params = {"params": {"user_embedding": {"embedding": jnp.full((30, 8), 7.0)},
                         "item_embedding": {"embedding": jnp.full((20, 8), 7.0)},
                         "bias": jnp.full((5,), 7.0)}}
    score = jax.tree.map(lambda p: rng.normal(size=p.shape).astype(np.float32), params)  # distinct magnitudes
    new, masks = kookmin.reinitialise(params, score, 0.1, np.random.default_rng(1))
    for (p, n, m, s) in zip(*(jax.tree.leaves(t) for t in (params, new, masks, score))):
        expected = kookmin.reinit_count(p.size, 0.1)  # max(1, int(n * rate)): 24, 16 and 1
        assert int(m.sum()) == expected
        chosen = np.sort(np.flatnonzero(np.asarray(m).ravel()))
        np.testing.assert_array_equal(chosen, np.sort(np.argsort(np.abs(np.asarray(s)).ravel())[:expected]))
        changed = np.asarray(n) != np.asarray(p)
        np.testing.assert_array_equal(changed, np.asarray(m))  # fresh values never equal 7
    assert [kookmin.reinit_count(n, 0.1) for n in (240, 160, 5)] == [24, 16, 1]


def test_kookmin_ties_go_to_the_lowest_index():
    chosen = kookmin.smallest_magnitude_entries(np.zeros((10, 4)), 0.1)  # all tied, as untouched embedding rows are
    np.testing.assert_array_equal(chosen, [0, 1, 2, 3])


@pytest.mark.parametrize("n_zero_rows", [0, 3, 40, 200])  # zeros fewer / more than m = 80
def test_kookmin_selection_equals_a_stable_sort_with_and_without_enough_zeros(n_zero_rows):
    """The zero-count shortcut and the sort pick the same entries as numpy's stable argsort."""
    rng = np.random.default_rng(n_zero_rows)
    score = rng.normal(size=(200, 40)).astype(np.float32)
    score[rng.permutation(200)[:n_zero_rows]] = 0.0  # rows the request never touched
    score[5, :3] = -0.0
    chosen = kookmin.smallest_magnitude_entries(score, 0.01)
    np.testing.assert_array_equal(np.sort(chosen), np.sort(np.argsort(np.abs(score).ravel(), kind="stable")[:80]))


@pytest.mark.parametrize("name, shape, low, high, std", [
    ("params/user_embedding/embedding", (1000, 4), -0.5, 0.5, 0.5 / np.sqrt(3)),  # U(+-1/sqrt(dim)), fan_in = dim
    ("params/dense/kernel", (16, 300), -0.25, 0.25, 0.25 / np.sqrt(3)),  # U(+-1/sqrt(16)), fan_in = shape[0]
    ("params/conv/kernel", (8, 3, 2, 2), None, None, np.sqrt(2.0 / (8 * 4))),  # kaiming normal, fan_out
    ("params/bias", (50,), None, None, 0.02),
])
def test_kookmin_fresh_values_follow_the_original_initialisers(name, shape, low, high, std):
    """The m fresh values drawn for the chosen entries of a tensor (`n`) and a whole tensor's draw
    come from the same distribution: its range, mean and standard deviation."""
    rng = np.random.default_rng(0)
    whole = kookmin.fresh_values(name, shape, rng)
    some = kookmin.fresh_values(name, shape, rng, 40_000)
    assert whole.shape == shape and whole.dtype == np.float32 and some.shape == (40_000,)
    for values in (some, np.concatenate([kookmin.fresh_values(name, shape, rng).ravel() for _ in range(200)])):
        if low is not None:
            assert values.min() >= low and values.max() <= high and values.max() > 0.98 * high
        assert abs(values.mean()) < 0.03 * std and abs(values.std() / std - 1) < 0.03


def test_kookmin_loader_batches_are_a_uniform_shuffle_of_the_real_rows():
    """Each pass: every real row once (at most `cap`), no padding row, batches of at most 256 rows
    cut to `first`, none empty; over many passes each real row leads a pass equally often."""
    weight = np.zeros(700, np.float32)
    real = np.sort(np.random.default_rng(1).choice(700, 600, replace=False))
    weight[real] = 1.0
    rng = np.random.default_rng(2)
    batches = kookmin.loader_row_batches(rng, weight)
    assert [len(b) for b in batches] == [256, 256, 88]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), real)
    capped = np.concatenate(kookmin.loader_row_batches(rng, weight, cap=300))
    assert len(capped) == 300 and len(set(capped)) == 300 and set(capped) <= set(real)
    assert [len(b) for b in kookmin.loader_row_batches(rng, weight, first=10)] == [10, 10, 10]
    assert kookmin.loader_row_batches(rng, weight, first=0) == []
    small = np.r_[np.ones(6), np.zeros(2)].astype(np.float32)
    leaders = np.bincount([kookmin.loader_row_batches(rng, small)[0][0] for _ in range(6000)], minlength=8)
    assert leaders[6:].sum() == 0 and np.all(np.abs(leaders[:6] - 1000) < 5 * np.sqrt(1000))


def expected_score(model, params, request, parts):
    """(sum of the parts' signed gradients of their mean losses) / K, each part in ONE loader
    batch (the tiny request's F, C and R have fewer than 256 rows: the shuffle cannot change it)."""
    total = jax.tree.map(jnp.zeros_like, params)
    for batch, context, sign in parts:
        grads = jax.grad(lambda p: model.loss(p, context, batch, jax.random.PRNGKey(0)))(params)
        total = jax.tree.map(lambda t, g: t + sign * g, total, grads)
    return jax.tree.map(lambda t: np.asarray(t) / (kookmin.GRADIENT_ROWS_PER_FORGET_ROW * request.n_forget_rows), total)


def test_kookmin_reinitialises_where_the_directly_computed_score_is_smallest():
    """Without retain rows nothing is fine-tuned, so exactly the re-initialised entries change:
    they are the smallest |(g_C - g_F) / K| per tensor, g computed here by jax.grad directly."""
    model, params, request = tiny_request("BPR")
    request = dataclasses.replace(request, retain={**request.retain, "weight": jnp.zeros_like(request.retain["weight"])})
    method = build_method("kookmin", kookmin_init_rate=0.1)
    new, _, diagnostics = method.unlearn(model, params, method.init(model, params), request, jax.random.PRNGKey(3))
    score = expected_score(model, params, request, [(request.forget, request.context_before, -1.0),
                                                    (request.clean, request.context_after, 1.0)])
    assert diagnostics["finetune_epochs"] == 0
    for p, n, s in zip(*(jax.tree.leaves(t) for t in (params, new, score))):
        changed = np.flatnonzero(np.asarray(n).ravel() != np.asarray(p).ravel())
        expected = np.argsort(np.abs(s).ravel(), kind="stable")[:kookmin.reinit_count(s.size, 0.1)]
        np.testing.assert_array_equal(changed, np.sort(expected))
    norm = np.sqrt(sum(np.sum(np.square(s, dtype=np.float64)) for s in jax.tree.leaves(score)))
    np.testing.assert_allclose(diagnostics["score_norm"], norm, rtol=1e-6)


@pytest.mark.parametrize("model_name", ["BPR", "LightGCN"])
def test_kookmin_score_with_retain_rows_equals_the_direct_gradients(model_name):
    model, params, request = tiny_request(model_name)
    method = build_method("kookmin")
    _, _, diagnostics = method.unlearn(model, params, method.init(model, params), request, jax.random.PRNGKey(3))
    score = expected_score(model, params, request, [(request.forget, request.context_before, -1.0),
                                                    (request.clean, request.context_after, 1.0),
                                                    (request.retain, request.context_after, 1.0)])
    norm = np.sqrt(sum(np.sum(np.square(s, dtype=np.float64)) for s in jax.tree.leaves(score)))
    np.testing.assert_allclose(diagnostics["score_norm"], norm, rtol=1e-5)
    assert diagnostics["finetune_epochs"] == 1 + 16 * 8 // 30  # E = 1 + U // |R|, U = 16 F_n


# ---------------------------------------------------------------------------------------------
# SEIF


def test_seif_erase_noise_is_relative_with_the_requested_std():
    params = {"params": {"item_embedding": {"embedding": jnp.full((200, 100), 2.0).at[0].set(0.0)},
                         "dense": {"kernel": jnp.ones((10, 10))}}}
    noisy = jax.jit(seif.relative_noise)(params, 0.6, jax.random.PRNGKey(3))
    relative = (np.asarray(noisy["params"]["item_embedding"]["embedding"][1:]) - 2.0) / 2.0
    assert abs(relative.std() - 0.6) < 0.01 and abs(relative.mean()) < 0.01
    np.testing.assert_array_equal(noisy["params"]["item_embedding"]["embedding"][0], 0.0)  # zeros stay zero
    np.testing.assert_array_equal(noisy["params"]["dense"]["kernel"], params["params"]["dense"]["kernel"])


def test_seif_erase_noise_compounds_over_requests_into_random_signs():
    """Why the defaults collapse a model over a request stream: every request re-noises the
    whole table, so after n requests an entry has flipped sign an odd number of times with
    probability (1 - (1 - 2q)^n) / 2, q = Phi(-1 / std) (one request's flip: 1 + std * z < 0),
    and its expected square has grown by (1 + std^2)^n."""
    from math import erf, sqrt

    std, n = 0.6, 5
    q = 0.5 * (1 + erf(-1 / std / sqrt(2)))
    params = {"params": {"user_embedding": {"embedding": jnp.full((500, 400), 1.0)}}}
    noise = jax.jit(seif.relative_noise)
    for request in range(n):
        params = noise(params, std, jax.random.PRNGKey(request))
    table = np.asarray(params["params"]["user_embedding"]["embedding"], np.float64)
    assert abs((table < 0).mean() - (1 - (1 - 2 * q) ** n) / 2) < 0.005  # 0.20 at n = 5
    assert abs(np.log((table ** 2).mean()) - n * np.log(1 + std ** 2)) < 0.1


def test_seif_repair_loss_weights_forget_items_by_the_class_weight():
    model, params, req = tiny_request("BPR")
    forget_items = set(np.asarray(req.forget["pos"][:8]).tolist())
    batch = rows_batch([6, 7, 8, 9], [sorted(forget_items)[0], 11, sorted(forget_items)[1], 11], [0, 1, 2, 3])
    hand_w = np.array([0.05 if i in forget_items else 1.0 for i in np.asarray(batch["pos"][:4])])
    expected = float(jax.jit(model.loss)(params, req.context_after, batch, None)) * hand_w.mean()
    loss = jax.jit(seif.repair_loss(model, req.context_after, req.forget, 0.05))(params, batch, None)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    assert 0.05 in hand_w and 1.0 in hand_w


# ---------------------------------------------------------------------------------------------
# Fanchuan


@pytest.mark.slow
def test_fanchuan_uniform_step_lowers_the_kl_on_the_forget_users():
    model, params, req = tiny_request("BPR")
    params = jax.tree.map(lambda p: 3.0 * p, params)  # peaked score distributions
    kl = lambda p: float(fanchuan.kl_to_uniform(model.scores(p, req.context_after, {"users": req.forget["users"]}),
                                                req.forget["weight"]))
    state = adam_init(params)
    step = jax.jit(lambda p, s: fanchuan.uniform_step(model, req.context_after, p, s, req.forget, 1e-2))
    new, _ = step(params, state)[0]
    assert kl(new) < kl(params)
    np.testing.assert_allclose(float(fanchuan.kl_to_uniform(jnp.zeros((2, 5)), jnp.ones(2))), 0.0, atol=1e-6)


def test_fanchuan_contrastive_step_moves_only_the_user_table():
    model, params, req = tiny_request("BPR")
    state = adam_init(params)
    step = jax.jit(lambda p, s: fanchuan.contrastive_step(model, req.context_after, p, s, req.forget, req.retain,
                                                          1e-2, 1.15, True, jax.random.PRNGKey(0)))
    (new, new_state), _ = step(params, state)
    table = lambda p, name: p["params"][name]["embedding"]
    np.testing.assert_array_equal(table(new, "item_embedding"), table(params, "item_embedding"))
    assert int(table(new_state.count, "item_embedding")) == 0
    assert not np.array_equal(table(new, "user_embedding"), table(params, "user_embedding"))


# ---------------------------------------------------------------------------------------------
# All three through the registry


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["BPR", "LightGCN"])
@pytest.mark.parametrize("method_name", ["kookmin", "seif", "fanchuan"])
def test_runs_finite_and_is_deterministic(method_name, model_name):
    model, params, req = tiny_request(model_name)
    method = build_method(method_name)
    state = method.init(model, params)
    key = jax.random.PRNGKey(5)
    first = method.unlearn(model, params, state, req, key)
    second = method.unlearn(model, params, state, req, key)
    new_params, new_state, diagnostics = first
    assert diagnostics and all(np.isfinite(np.asarray(v, np.float64)).all() for v in diagnostics.values())
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(new_params))
    assert not np.array_equal(users := new_params["params"]["user_embedding"]["embedding"],
                              params["params"]["user_embedding"]["embedding"]) and users is not None
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert method.retain_budget(8) > 0
