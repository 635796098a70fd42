"""Kookmin's compiled phases (`kookmin._kookmin_pass`: the score pass and each fine-tuning epoch as
one `fori_loop` over a device gather of the joined F | C | R rows) against a reference that
serves the same request as a host loop over its loader batches, gathering each 256-row batch in
numpy and calling one jitted program per batch (the module's implementation before the phases).

Both draw from the same numpy generator in the same order, so they must give the same
parameters, Adam state and diagnostics, to float tolerance (the loss and gradient of a batch are
computed in different programs). The requests have several loader batches per pass and fewer
real batches than the padded maximum (the rest of the gather plan is never visited), with and
without clean rows, with and without the retain cut to k rows per batch.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model
from erase_jax.unlearn.methods import kookmin
from erase_jax.unlearn.methods.base import RequestData, build_method
from erase_jax.unlearn.methods.batches import LOADER_BATCH
from erase_jax.unlearn.methods.finetune import adam_step

N_USERS, N_ITEMS = 40, 30


def take_rows(source: dict, rows: np.ndarray) -> dict:
    """A LOADER_BATCH-row batch of `rows` of a host batch; padding rows repeat row 0, weight 0."""
    index = np.zeros(LOADER_BATCH, np.int64)
    index[:len(rows)] = rows
    batch = {name: values[index] for name, values in source.items()}
    batch["weight"] = np.where(np.arange(LOADER_BATCH) < len(rows), batch["weight"], 0).astype(np.float32)
    return batch


@functools.partial(jax.jit, static_argnums=0)
def reference_batch_step(model, params, opt_state, score, masks, batch, context, sign, adam_on, lr, key, phase, index):
    batch_key = jax.random.fold_in(jax.random.fold_in(key, phase), index)
    loss, grads = jax.value_and_grad(lambda p: model.loss(p, context, batch, batch_key))(params)
    score = jax.tree.map(lambda s, g: s + sign * g, score, grads)
    scaled = jax.tree.map(lambda g, m: jnp.where(m, kookmin.SCALE_FOR_REINIT_PARAMS * g, g), grads, masks)
    stepped, stepped_state = adam_step(params, opt_state, scaled, lr)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(adam_on, a, b), new, old)
    return keep(stepped, params), keep(stepped_state, opt_state), score, loss


def reference_unlearn(method, model, params, request: RequestData, key):
    """The request as a host loop over its loader batches (same draws, same order)."""
    rng = kookmin.request_generator(key)
    host = lambda batch: None if batch is None else {name: np.asarray(v) for name, v in batch.items()}
    forget, clean, retain = host(request.forget), host(request.clean), host(request.retain)
    gradient_rows = kookmin.GRADIENT_ROWS_PER_FORGET_ROW * request.n_forget_rows
    finetune_rows = kookmin.FINETUNE_ROWS_PER_FORGET_ROW * request.n_forget_rows
    lr = np.float32(kookmin.KOOKMIN_LR_SCALE * method.learning_rate)
    no_masks = jax.tree.map(lambda p: np.zeros(p.shape, bool), params)
    running = jax.tree.map(lambda p: np.zeros(p.shape, p.dtype), params)
    opt_state = kookmin.fresh_adam_state(params)

    def step(params, opt_state, running, masks, source, rows, context, sign, adam_on, phase, index):
        return reference_batch_step(model, params, opt_state, running, masks, take_rows(source, rows), context,
                                    np.float32(sign), np.bool_(adam_on), lr, key, np.int32(phase), np.int32(index))

    n_clean = 0 if clean is None else int(np.sum(clean["weight"] > 0))
    parts = [(forget, None, request.context_before, -1.0)]
    if clean is not None:
        parts.append((clean, None, request.context_after, 1.0))
    parts.append((retain, max(0, gradient_rows - n_clean), request.context_after, 1.0))
    index, pass_batches = 0, []
    for source, first, context, sign in parts:
        for rows in kookmin.loader_row_batches(rng, source["weight"], first=first):
            _, _, running, _ = step(params, opt_state, running, no_masks, source, rows, context, sign, False, 0, index)
            index += 1
        pass_batches.append(index - sum(pass_batches))
    score = jax.tree.map(lambda s: np.asarray(s) / gradient_rows, running)
    params, masks = kookmin.reinitialise(params, score, method.kookmin_init_rate, rng)
    n_retain = int(np.sum(retain["weight"] > 0))
    n_epochs = 1 + finetune_rows // n_retain if n_retain > 0 else 0
    losses = []
    for epoch in range(n_epochs):
        losses = []
        for index, rows in enumerate(kookmin.loader_row_batches(rng, retain["weight"], cap=finetune_rows)):
            params, opt_state, running, loss = step(params, opt_state, running, masks, retain, rows,
                                                  request.context_after, 0.0, True, 1 + epoch, index)
            losses.append(loss)
        pass_batches.append(len(losses))
    diagnostics = {
        "reinitialised": int(sum(np.sum(m) for m in jax.tree.leaves(masks))),
        "score_norm": float(np.sqrt(sum(np.sum(np.square(s, dtype=np.float64)) for s in jax.tree.leaves(score)))),
        "finetune_epochs": n_epochs,
        "finetune_loss": float(np.mean([np.asarray(v) for v in losses])) if losses else 0.0,
    }
    return params, opt_state, diagnostics, pass_batches


def padded(users, pos, neg, size: int) -> dict:
    """A CF batch padded to `size` rows; real rows weigh 1 and 2 in turn (the gather keeps weights)."""
    n = len(users)
    pad = lambda x: jnp.asarray(np.concatenate([np.asarray(x), np.zeros(size - n)]), jnp.int32)
    return {"users": pad(users), "pos": pad(pos), "neg": pad(neg),
            "weight": jnp.asarray(np.where(np.arange(size) < n, 1 + np.arange(size) % 2, 0), jnp.float32)}


def request_of(model_name: str, n_forget: int, n_removed: int, n_retain: int, with_clean: bool):
    """User 0's n_forget rows (its first n_removed removed), n_retain rows of users 1..; F and C
    padded to 512 rows (2 loader batches), R to 1024 (4)."""
    rng = np.random.default_rng(0)
    users = np.concatenate([np.zeros(n_forget), rng.integers(1, N_USERS, n_retain)]).astype(np.int32)
    pos = rng.integers(0, N_ITEMS, len(users)).astype(np.int32)
    neg = rng.integers(0, N_ITEMS, len(users)).astype(np.int32)
    removed = np.zeros(len(users), bool)
    removed[:n_removed] = True
    model = build_model(model_name, embedding_size=8)
    before = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, pos), 2048)
    after = model.prepare(CFTrainData(N_USERS, N_ITEMS, users[~removed], pos[~removed]), 2048)
    params = model.init(jax.random.PRNGKey(0), before)
    f = slice(0, n_forget)
    c = slice(n_removed, n_forget)
    forget = padded(users[f], pos[f], neg[f], 512)
    clean = padded(users[c], pos[c], neg[c], 512) if with_clean else None
    retain = padded(users[n_forget:], pos[n_forget:], neg[n_forget:], 1024)
    return model, params, RequestData(0, np.array([0]), forget, clean, retain, n_forget, n_removed, before, after)


CASES = {
    # F 300 rows (2 batches), C 200 (1), R 600 (3): 4 of 6 planned batches; 9 epochs of 3 batches
    "several batches with clean rows": (300, 100, 600, True),
    # one forget row: k = 128 - 0 cuts every R batch to 128 rows; 1 epoch of 16 rows
    "retain cut to k rows without clean rows": (1, 1, 600, False),
}


@pytest.mark.parametrize("case, model_name", [(case, "BPR") for case in CASES]
                         + [("several batches with clean rows", "LightGCN")])  # graph contexts before / after
def test_compiled_phases_equal_the_per_batch_host_loop(case, model_name):
    model, params, request = request_of(model_name, *CASES[case])
    method = build_method("kookmin", kookmin_init_rate=0.05)
    key = jax.random.PRNGKey(11)
    expected_params, expected_state, expected, pass_batches = reference_unlearn(method, model, params, request, key)
    new_params, new_state, diagnostics = method.unlearn(model, params, method.init(model, params), request, key)
    n_planned = max(512 // LOADER_BATCH, (512 + 1024) // LOADER_BATCH)  # F's, or C's and R's loader batches
    assert kookmin.loader_batch_count(512) + kookmin.loader_batch_count(1024) == n_planned
    score_batches = pass_batches[:-expected["finetune_epochs"]]  # F, C, R (C absent without clean rows)
    assert sum(score_batches[:1]) < n_planned and sum(score_batches[1:]) < n_planned  # both score passes padded
    assert max(pass_batches[len(score_batches):]) < n_planned  # and every epoch
    assert diagnostics["finetune_epochs"] == expected["finetune_epochs"] > 0
    assert diagnostics["reinitialised"] == expected["reinitialised"]
    np.testing.assert_allclose(diagnostics["score_norm"], expected["score_norm"], rtol=1e-5)
    np.testing.assert_allclose(diagnostics["finetune_loss"], expected["finetune_loss"], rtol=1e-5)
    for got, want in zip(jax.tree.leaves((new_params, new_state)), jax.tree.leaves((expected_params, expected_state))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    n_steps = sum(pass_batches[len(score_batches):])  # Adam steps: the fine-tuning batches, no padded one
    assert [int(c) for c in jax.tree.leaves(new_state.count)] == [n_steps] * len(jax.tree.leaves(new_state.count))


def test_a_gather_plan_repeats_each_batchs_first_row_and_rejects_overflow():
    index, lengths = kookmin.stacked_batches([(np.array([7, 3]), 0), (np.array([1]), 100)], 3)
    np.testing.assert_array_equal(index[0, :3], [7, 3, 0])
    np.testing.assert_array_equal(index[1, :2], [101, 100])
    np.testing.assert_array_equal(lengths, [2, 1, 0])
    assert index.shape == (3, LOADER_BATCH) and index.dtype == np.int32
    with pytest.raises(ValueError, match="do not fit"):
        kookmin.stacked_batches([(np.array([1]), 0)] * 4, 3)
