"""Fanchuan: uniform pseudo-labels on the forget users, a contrastive push, then retain repair.

A NeurIPS 2023 machine-unlearning competition solution ("iterative contrastive"), as ERASE's
`trainer.fanchuan` runs it (unlearning-algorithms spec 6.4; detail spec section 4). One
persistent Adam at `learning_rate` (the config lr); U = 16 F_n; J = 8 and t = 1.15 hard-coded.

Stage 1. One Adam step per F loader batch b (256 rows, one shuffled pass) on

    KL(Uniform || softmax(S_b)) = (1/|b|) sum_i sum_j (1/n)(log(1/n) - log(P_ij + 1e-20)),

S_b the scores of b's rows over all n items (as the original's `full_sort_predict` reshaped to
[B, n_items]): row i's "output distribution" is the softmax over every item of the scores of
its query (`task.query_of`: the row's user, or its sequence prefix), one distribution per ROW of
F (when the query is the user, all rows of a one-user request are identical), averaged over the
batch's real rows.

Stage 2, J times: for each F batch t (a fresh shuffle), take the retain window
V = R[I[(j n_Fb + t) 256 : (j n_Fb + t + 1) 256]] from an index stream I of independent
permutations of R's real rows (non-repeating across iterations; windows may cross a
permutation boundary); if C still has a batch t, one Adam step on L(F_t, C_t); then one on
L(F_t, V). L(a, c) = mean over real (i, j) of -log softmax_j(z_a,i . z_c,j / t), z the row's
representation (`model.representation`: the RAW layer-0 user embedding where the query is a
user, not a graph-propagated one; the sequence encoder's output otherwise). Only the tensors
it reads (`model.representation_paths`) get a gradient, so the Adam step leaves every other
tensor and its state untouched (torch skips grad-None tensors, Q4). Then 1 + U // |R| retain
epochs, each a fresh shuffle capped at U rows.

Decisions: the index stream's permutation r is argsort of uniform priorities drawn from
fold_in(key, r), evaluated per window position on device (the original concatenates
floor(J n_Fb 256 / N_R) + 2 numpy permutations; every position it reads is generated here the same
way); KL scores and the fine-tuning use `context_after`; the softmax includes every item (the
original includes the padding item 0 because RecBole reserves it; this port has no padding item).
The time limit is not checked.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp

from erase_jax.tasks.base import task_of
from erase_jax.unlearn.methods.base import Batch, RequestData, register
from erase_jax.unlearn.methods.batches import LOADER_BATCH, loader_batches, real_rows, shuffle_rows
from erase_jax.unlearn.methods.finetune import adam_init, adam_step, retain_epochs

FINETUNE_ROWS_PER_FORGET_ROW = 16  # U = 16 F_n (the original's dispatcher override)
UNLEARN_ITERS_CONTRASTIVE = 8  # J, hard-coded in the original
TEMPERATURE = 1.15  # t, hard-coded in the original
LOG_EPS = 1e-20


def kl_to_uniform(scores: jax.Array, weight: jax.Array) -> jax.Array:
    """KLDiv(batchmean)(log(softmax(scores) + 1e-20), uniform) over the rows with weight > 0."""
    n_items = scores.shape[-1]
    log_p = jnp.log(jax.nn.softmax(scores, axis=-1) + LOG_EPS)
    rows = jnp.sum((1.0 / n_items) * (jnp.log(1.0 / n_items) - log_p), axis=-1)
    real = weight > 0
    return jnp.sum(jnp.where(real, rows, 0.0)) / jnp.maximum(jnp.sum(real), 1)


def contrastive_loss(z_a, weight_a, z_c, weight_c, temperature: float = TEMPERATURE) -> jax.Array:
    """mean over real (i, j) of -log softmax_j(z_a,i . z_c,j / t), softmax over real columns."""
    logits = z_a @ z_c.T / temperature
    col = weight_c > 0
    log_p = jax.nn.log_softmax(jnp.where(col[None, :], logits, -jnp.inf), axis=-1)
    pair = (weight_a > 0)[:, None] & col[None, :]
    return -jnp.sum(jnp.where(pair, log_p, 0.0)) / jnp.maximum(jnp.sum(pair), 1)


def contrastive_active(model, params):
    """Per-tensor activity for the contrastive step: the tensors the representations depend on
    (`model.representation_paths`; None: every tensor). A user-embedding representation reads
    only the user table (the original's Adam skips tensors without a gradient); a sequence
    encoder (`model.forward`) declares None, as it reads them all.
    """
    paths = model.representation_paths
    if paths is None:
        return jax.tree.map(lambda _: True, params)

    def reads(path, _):
        keys = tuple(getattr(entry, "key", getattr(entry, "idx", None)) for entry in path)
        return any(keys[: len(p)] == tuple(p) for p in paths)

    return jax.tree_util.tree_map_with_path(reads, params)


def retain_window(retain: Batch, start, key, size: int = LOADER_BATCH) -> Batch:
    """Rows I[start : start + size] of the stream of independent permutations of R's real rows.

    Permutation r is the argsort of uniform priorities from fold_in(key, r) (padding last). When R
    has at least `size` real rows a window spans at most two permutations, and only those two are
    drawn; otherwise each position draws its own permutation (same values, more work).
    """
    n_real = jnp.maximum(real_rows(retain), 1)
    positions = start + jnp.arange(size)

    def permutation(repeat):
        draws = jax.random.uniform(jax.random.fold_in(key, repeat), retain["weight"].shape)
        priority = jnp.where(retain["weight"] > 0, draws, 2.0)
        return jnp.argsort(priority)

    def two_permutations(_):
        first = start // n_real
        both = jnp.stack([permutation(first), permutation(first + 1)])
        return both[positions // n_real - first, positions % n_real]

    def per_position(_):
        return jax.vmap(lambda position: permutation(position // n_real)[position % n_real])(positions)

    index = jax.lax.cond(n_real >= size, two_permutations, per_position, None)
    window = jax.tree.map(lambda a: a[index], retain)
    return {**window, "weight": jnp.where(real_rows(retain) > 0, window["weight"], 0.0)}


@register
@dataclasses.dataclass(frozen=True)
class Fanchuan:
    """Fanchuan with the original's constants (module docstring).

    learning_rate: the config learning rate of the persistent Adam.
    """

    name: ClassVar[str] = "fanchuan"
    retain_pool_multiplier: ClassVar[int] = 8  # the original draws its retain pool 8x larger for Fanchuan

    learning_rate: float = 1e-3
    unlearn_iters_contrastive: int = UNLEARN_ITERS_CONTRASTIVE
    temperature: float = TEMPERATURE

    def retain_budget(self, n_forget_rows: int) -> int:
        return max(64 * n_forget_rows, 32)  # the original's dispatcher rule

    def init(self, model, params):
        return adam_init(params)

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        return _fanchuan_request(self, model, params, state, request.forget, request.clean, request.retain,
                                 request.context_after, request.n_forget_rows, key)


def uniform_step(model, context, params, opt_state, batch: Batch, lr):
    """Stage 1 on one F batch: one Adam step on the KL to uniform (no step without real rows)."""

    def take(carry):
        params, opt_state = carry
        loss_fn = lambda p: kl_to_uniform(model.scores(p, context, task_of(model).query_of(batch)), batch["weight"])
        loss, grads = jax.value_and_grad(loss_fn)(params)
        params, opt_state = adam_step(params, opt_state, grads, lr)
        return (params, opt_state), loss

    return jax.lax.cond(real_rows(batch) > 0, take, lambda c: (c, jnp.float32(0.0)), (params, opt_state))


def contrastive_step(model, context, params, opt_state, a: Batch, c: Batch, lr, temperature, take, key):
    """One Adam step on L(a, c) over the representations' tensors, when `take`.

    Representations are computed in train mode (dropout from `key`), as the original's
    `model.forward` in train mode; an embedding row has no dropout.
    """

    def step(carry):
        params, opt_state = carry

        def loss_fn(p):
            key_a, key_c = jax.random.split(key)
            z_a = model.representation(p, context, a, key_a)
            z_c = model.representation(p, context, c, key_c)
            return contrastive_loss(z_a, a["weight"], z_c, c["weight"], temperature)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        params, opt_state = adam_step(params, opt_state, grads, lr, active=contrastive_active(model, params))
        return (params, opt_state), loss

    ok = take & (real_rows(a) > 0) & (real_rows(c) > 0)
    return jax.lax.cond(ok, step, lambda carry: (carry, jnp.float32(0.0)), (params, opt_state))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _fanchuan_request(method: Fanchuan, model, params, opt_state, forget, clean, retain, context, n_forget, key):
    lr, temperature = method.learning_rate, method.temperature
    stage1_key, stage2_key, stream_key = jax.random.split(key, 3)
    forget_batches = loader_batches(shuffle_rows(forget, stage1_key))
    n_slots = forget_batches["weight"].shape[0]
    n_forget_batches = jnp.sum(jnp.sum(forget_batches["weight"] > 0, axis=1) > 0)

    def stage1(carry, batch):
        params, opt_state = carry
        return uniform_step(model, context, params, opt_state, batch, lr)

    (params, opt_state), kl_losses = jax.lax.scan(stage1, (params, opt_state), forget_batches)

    finetune_rows = FINETUNE_ROWS_PER_FORGET_ROW * jnp.asarray(n_forget, jnp.int32)
    n_retain = real_rows(retain)
    n_epochs = jnp.where(n_retain > 0, 1 + finetune_rows // jnp.maximum(n_retain, 1), 0)
    after_loss = lambda p, b, k: model.loss(p, context, b, k)

    def iteration(j, carry):
        params, opt_state, _ = carry
        f_key, c_key, r_key = jax.random.split(jax.random.fold_in(stage2_key, j), 3)
        f_batches = loader_batches(shuffle_rows(forget, f_key))
        c_batches = None if clean is None else loader_batches(shuffle_rows(clean, c_key))

        def per_forget_batch(t, carry):
            params, opt_state, loss_sum = carry
            f_batch = jax.tree.map(lambda a: a[t], f_batches)
            is_real = real_rows(f_batch) > 0
            if c_batches is not None:
                c_index = jnp.minimum(t, c_batches["weight"].shape[0] - 1)
                c_batch = jax.tree.map(lambda a: a[c_index], c_batches)
                has_c = (t < c_batches["weight"].shape[0]) & is_real
                (params, opt_state), _ = contrastive_step(model, context, params, opt_state, f_batch, c_batch, lr,
                                                          temperature, has_c, jax.random.fold_in(c_key, t))
            start = (j * n_forget_batches + t) * LOADER_BATCH
            window = retain_window(retain, start, stream_key)
            (params, opt_state), loss = contrastive_step(model, context, params, opt_state, f_batch, window, lr,
                                                         temperature, is_real, jax.random.fold_in(r_key, t))
            return params, opt_state, loss_sum + loss

        start_carry = (params, opt_state, jnp.float32(0.0))
        params, opt_state, contrast = jax.lax.fori_loop(0, n_slots, per_forget_batch, start_carry)
        params, opt_state, _ = retain_epochs(after_loss, params, opt_state, retain, finetune_rows, n_epochs, lr, r_key)
        return params, opt_state, contrast / jnp.maximum(n_forget_batches, 1)

    params, opt_state, last_contrast = jax.lax.fori_loop(
        0, method.unlearn_iters_contrastive, iteration, (params, opt_state, jnp.float32(0.0))
    )
    diagnostics = {
        "uniform_kl": jnp.sum(kl_losses) / jnp.maximum(n_forget_batches, 1),
        "contrastive_loss": last_contrast,
        "finetune_epochs": n_epochs,
    }
    return params, opt_state, diagnostics
