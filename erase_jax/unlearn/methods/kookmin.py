"""Kookmin: re-initialise the least informative weights, then fine-tune on retain data.

NeurIPS 2023 machine-unlearning competition entry (findings: arXiv 2406.09073); ERASE's
`trainer.kookmin` (unlearning-algorithms spec 6.3; detail spec section 3). Per request, with
F_n = |F| (the request's training rows), K = 128 F_n and U = 16 F_n:

    g_F = sum_{b in F} grad mean-loss(b) / K
    g_R = sum_{b in C} grad mean-loss(b) / K + sum_{b in R} grad mean-loss(b[:k]) / K,  k = max(0, K - |C|)
    s   = g_R - g_F
    per tensor P with n entries: the m = max(1, floor(n * kookmin_init_rate)) entries with the
      smallest |s| are overwritten with fresh initial values (mask M_P)
    the Adam state of every masked tensor is reset (all tensors: every one gets >= 1 entry)
    E = 1 + U // |R| epochs on R, each a fresh shuffle capped at U rows (batches of 256), Adam
      at lr = 0.1 x learning_rate, gradients of the entries in M_P multiplied by 10

Decisions where the spec leaves a choice (all faithful to the original unless said):

* Batches: F, C and R are cut into loader batches of 256 after an on-device shuffle of their
  real rows; sums of batch means are taken over those batches (the double normalisation Q7).
  The retain truncation count k is never decremented (Q-KM-1): every R batch is used, each
  cut to its first k rows, and none when k = 0.
* Ties in the smallest-|s| selection (Q-KM-2; embedding rows untouched by the request have
  exactly zero gradient): lowest flat index first (a stable sort of |s|). Exactly m entries are
  chosen per tensor, m = max(1, floor(n * rate)) (Python `int` of a positive float).
* Fresh values: rank 4 kaiming-normal (fan_out, relu gain); rank 2 kaiming-uniform with
  a = sqrt(5), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)); other ranks N(0, 0.02^2). fan_in follows
  torch's layout: shape[1] for embedding tables ([rows, dim], as torch), shape[0] for every
  other matrix (flax `kernel` leaves and the sequence models' weights are stored [in, out],
  torch [out, in]).
* Contexts: the forget gradient uses `context_before` (e.g. the graph that trained the model);
  the C and R gradients and the fine-tuning use `context_after` (the original never rebuilds a
  graph model's graph, Q6; here the graph without the removed interactions is the one the
  model should fit from now on).
* Optimiser: torch-style Adam with a step count PER TENSOR (torch keeps one per parameter), so
  that resetting one tensor's state (step 5) is exact (`finetune.adam_step`). It persists
  across requests in the method state, as the original's trainer optimiser does.
* The time limit is not checked (the request is one compiled call).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp

from erase_jax.unlearn.methods.base import Batch, RequestData, register
from erase_jax.unlearn.methods.batches import keep_first, loader_batches, real_rows, shuffle_rows
from erase_jax.unlearn.methods.finetune import adam_init, path_name, retain_epochs

GRADIENT_ROWS_PER_FORGET_ROW = 128  # K = 128 F_n (dispatcher override)
FINETUNE_ROWS_PER_FORGET_ROW = 16  # U = R_upd = 16 F_n (dispatcher override)
KOOKMIN_LR_SCALE = 0.1  # the original scales the config lr by 0.1 before building the trainer
SCALE_FOR_REINIT_PARAMS = 10.0  # hard-coded gradient multiplier on re-initialised entries


def reinit_count(n_entries: int, rate: float) -> int:
    """m = max(1, int(n * rate)): entries re-initialised in a tensor of n entries."""
    return max(1, int(n_entries * rate))


def smallest_magnitude_mask(score: jax.Array, rate: float) -> jax.Array:
    """Boolean mask of the reinit_count(size, rate) entries with the smallest |score|, ties to
    the lowest flat index.

    An embedding table's rows that the request never touched have a score of exactly zero, and
    usually there are more than m of them: the stable sort would then pick the first m zeros
    in index order, which a cumulative count finds without sorting (the sort of a large table
    was most of a request's time on CPU: benchmarks/RESULTS.md, "Unlearning cost per request").
    Otherwise the stable sort decides.
    """
    m = reinit_count(score.size, rate)
    magnitude = jnp.abs(score).ravel()
    zero = magnitude == 0

    def first_zeros():
        return zero & (jnp.cumsum(zero) <= m)

    def by_sort():
        order = jnp.argsort(magnitude, stable=True)
        return jnp.zeros(score.size, bool).at[order[:m]].set(True)

    return jax.lax.cond(jnp.sum(zero) >= m, first_zeros, by_sort).reshape(score.shape)


def fresh_values(name: str, shape: tuple, key) -> jax.Array:
    """The original's re-initialisation draw for a tensor of this shape (module docstring)."""
    if len(shape) == 4:  # kaiming_normal_(mode="fan_out", nonlinearity="relu"), torch layout
        fan_out = shape[0] * math.prod(shape[2:])
        return jax.random.normal(key, shape) * math.sqrt(2.0 / fan_out)
    if len(shape) == 2:  # kaiming_uniform_(a=sqrt(5)): bound = 1/sqrt(fan_in)
        fan_in = shape[1] if "embedding" in name.lower() else shape[0]
        bound = 1.0 / math.sqrt(fan_in)
        return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
    return 0.02 * jax.random.normal(key, shape)


def reinitialise(params, score, rate: float, key):
    """(params with the smallest-|score| entries of every tensor redrawn, masks)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    scores = treedef.flatten_up_to(score)
    keys = jax.random.split(key, len(leaves))
    new_leaves, masks = [], []
    for (path, p), s, k in zip(leaves, scores, keys):
        mask = smallest_magnitude_mask(s, rate)
        new_leaves.append(jnp.where(mask, fresh_values(path_name(path), p.shape, k).astype(p.dtype), p))
        masks.append(mask)
    return treedef.unflatten(new_leaves), treedef.unflatten(masks)


def gradient_sum_of_batch_means(loss_fn, params, batches: Batch, key):
    """sum_b grad mean-loss(b) over stacked loader batches (a scan: one batch's graph in memory,
    which matters for a model whose loss propagates a whole graph); batches without real rows
    are left out."""

    def add(total, batch):
        grads = jax.grad(loss_fn)(params, batch, key)
        has_rows = real_rows(batch) > 0
        return jax.tree.map(lambda t, g: t + jnp.where(has_rows, g, 0.0), total, grads), None

    total, _ = jax.lax.scan(add, jax.tree.map(jnp.zeros_like, params), batches)
    return total


@register
@dataclasses.dataclass(frozen=True)
class Kookmin:
    """Kookmin with the original's names and defaults (module docstring).

    kookmin_init_rate: fraction of each tensor's entries re-initialised (`--kookmin_init_rate`).
    learning_rate: the config learning rate; the method trains at 0.1 x this (as the original).
    """

    name: ClassVar[str] = "kookmin"

    kookmin_init_rate: float = 0.01
    learning_rate: float = 1e-3

    def retain_budget(self, n_forget_rows: int) -> int:
        return max(8 * n_forget_rows, 32)  # the original's dispatcher rule

    def init(self, model, params):
        return adam_init(params)

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        batches = (request.forget, request.clean, request.retain)
        contexts = (request.context_before, request.context_after)
        return _kookmin_request(self, model, params, state, batches, contexts, request.n_forget_rows, key)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _kookmin_request(method: Kookmin, model, params, opt_state, batches, contexts, n_forget, key):
    forget, clean, retain = batches
    context_before, context_after = contexts
    shuffle_key, reinit_key, loss_key, finetune_key = jax.random.split(key, 4)
    k_f, k_c, k_r = jax.random.split(shuffle_key, 3)
    n_forget = jnp.asarray(n_forget, jnp.int32)
    gradient_rows = GRADIENT_ROWS_PER_FORGET_ROW * n_forget
    finetune_rows = FINETUNE_ROWS_PER_FORGET_ROW * n_forget
    before_loss = lambda p, b, k: model.loss(p, context_before, b, k)
    after_loss = lambda p, b, k: model.loss(p, context_after, b, k)

    g_forget = gradient_sum_of_batch_means(before_loss, params, loader_batches(shuffle_rows(forget, k_f)), loss_key)
    n_clean = 0 if clean is None else real_rows(clean)
    k_more = jnp.maximum(0, gradient_rows - n_clean)
    retain_batches = jax.vmap(lambda b: keep_first(b, k_more))(loader_batches(shuffle_rows(retain, k_r)))
    g_retain = gradient_sum_of_batch_means(after_loss, params, retain_batches, loss_key)
    if clean is not None:
        g_clean = gradient_sum_of_batch_means(after_loss, params, loader_batches(shuffle_rows(clean, k_c)), loss_key)
        g_retain = jax.tree.map(jnp.add, g_retain, g_clean)
    score = jax.tree.map(lambda r, f: (r - f) / gradient_rows, g_retain, g_forget)

    params, masks = reinitialise(params, score, method.kookmin_init_rate, reinit_key)
    opt_state = adam_init(params)  # every tensor is masked, so every tensor's state is reset

    n_retain = real_rows(retain)
    n_epochs = jnp.where(n_retain > 0, 1 + finetune_rows // jnp.maximum(n_retain, 1), 0)

    def scale_masked(grads, batch):
        return jax.tree.map(lambda g, m: jnp.where(m, SCALE_FOR_REINIT_PARAMS * g, g), grads, masks)

    params, opt_state, last_loss = retain_epochs(
        after_loss, params, opt_state, retain, finetune_rows, n_epochs,
        KOOKMIN_LR_SCALE * method.learning_rate, finetune_key, grad_transform=scale_masked,
    )
    diagnostics = {
        "reinitialised": sum(jnp.sum(m) for m in jax.tree.leaves(masks)),
        "score_norm": jnp.sqrt(sum(jnp.sum(s * s) for s in jax.tree.leaves(score))),
        "finetune_epochs": n_epochs,
        "finetune_loss": last_loss,
    }
    return params, opt_state, diagnostics
