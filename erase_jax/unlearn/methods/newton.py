"""The removal Newton step that GIF, CEU and IDEA take in their correct modes, and how a step is
applied: norm clip, skip rules, optional noise.

Influence-function unlearning (Koh & Liang, ICML 2017; the GIF, CEU and IDEA papers) moves the
trained optimum by one Newton step of the objective that remains after the removal.
`removal_newton_system` builds that system over the kept training data from one request's
forget, clean and retain batches; each method solves it its own way (CG, LiSSA) and adds its
own noise; `apply_step` then moves the parameters, or leaves them when the step is unusable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from erase_jax.unlearn.influence.curvature import curvature_operator
from erase_jax.unlearn.influence.sharding import data_parallel_loss
from erase_jax.unlearn.influence.solvers import SolverStatus
from erase_jax.unlearn.influence.trees import tree_axpy, tree_norm, tree_scale
from erase_jax.unlearn.methods.base import Batch, RequestData

MIN_STEP_NORM = 1e-15  # the original's "negligible update" threshold


def training_rows(request: RequestData) -> jax.Array:
    """The training set's size after the request (float32; 0 when the caller did not say)."""
    return jnp.float32(request.n_train_rows or 0)


def _zero_batch_like(batch: Batch) -> Batch:
    return {**batch, "weight": jnp.zeros_like(batch["weight"])}


def same_context(request: RequestData) -> bool:
    """Whether the request leaves the model's data context as it was (the same object before and
    after: a context that does not depend on the removed rows, as the next-basket models' sizes).
    Host side, so that it can be a static argument of a jitted step."""
    return request.context_before is request.context_after


def removal_newton_system(model, params, contexts, batches, key, curvature: str = "hessian", n_train=0.0,
                          same_context: bool = False):
    """(g, v -> H v): the right-hand side and operator of the correct modes' Newton system.

    The objective is the mean loss over the n training rows kept after the request (n =
    `n_train`, `RequestData.n_train_rows`). Its Newton step from the trained parameters is
    (H + 0 I)^-1 g with

        g = ( sum_F grad l(before) - sum_C grad l(after) + w sum_R [grad l(before) - grad l(after)] ) / n
        H = curvature of ( sum_C l(after) + w sum_R l(after) ) / n,   w = (n - |C|) / |R|,

    assuming grad L_before = 0 at the trained parameters (the influence-function premise). The
    request's own kept rows C are all there; the retain sample R stands for the other n - |C|
    rows, so its terms are weighted by w: H is then an unbiased estimate of the kept data's
    mean curvature, and the forgotten rows' gradient is divided by n, the data's size, not the
    sample's. (Dividing by the sample size |C| + |R| instead leaves the step of the request's
    own users unchanged when the damping is 0, since their rows are all in C, but makes the
    step of every item n / (|C| + |R|) times too long, more so as the retain budget shrinks.)
    `n_train` 0 means "the sample is the data": n = |C| + |R|, w = 1. `curvature` is "hessian"
    or "gauss_newton" (`influence.curvature_operator`); everything is over all parameters.
    `model.loss` must be a weighted mean.

    Terms that are zero whatever the parameters are not traced: R's grad l(before) - grad l(after)
    when `same_context` (the two contexts are one, `same_context(request)`), and C's gradient when
    the request has no clean batch (`clean` None). The system is the same; the compiled program
    and each request's work are smaller (on DNNTSP, each term is a pass over its rows' chunks).
    """
    before, after = contexts
    forget, given_clean, retain = batches
    clean = _zero_batch_like(forget) if given_clean is None else given_clean
    n = lambda b: jnp.sum(b["weight"])
    n_sample = jnp.maximum(n(clean) + n(retain), 1.0)
    n_total = jnp.where(n_train > 0, jnp.maximum(n_train, n_sample), n_sample)
    retain_weight = jnp.where(n(retain) > 0, (n_total - n(clean)) / jnp.maximum(n(retain), 1.0), 1.0)
    weighted_retain = {**retain, "weight": retain["weight"] * retain_weight}
    kept = {k: jnp.concatenate([clean[k], weighted_retain[k]]) for k in retain}

    loss_before = data_parallel_loss(model, before, key)  # rows split over local devices
    loss_after = data_parallel_loss(model, after, key)

    def signed_sum(p):
        total = n(forget) * loss_before(p, forget)
        if given_clean is not None:
            total = total - n(clean) * loss_after(p, clean)
        if not same_context:
            total = total + retain_weight * n(retain) * (loss_before(p, retain) - loss_after(p, retain))
        return total

    g = tree_scale(1.0 / n_total, jax.grad(signed_sum)(params))
    return g, curvature_operator(curvature, model, after, kept, key, params)


def apply_step(params, step, sign, max_norm, info, noise=None):
    """params + sign * clip(step) (+ noise); skipped (no change) when unusable. Returns
    (params, skipped, diagnostics).

    clip(step) scales the step to norm `max_norm` when longer (None: no clip). The step is
    skipped when its norm is non-finite or below 1e-15, or when the solver (`info`) reports
    NONFINITE or RESIDUAL_GROWTH; a skipped step adds no noise either.
    """
    step_norm = tree_norm(step)
    if max_norm is not None:
        step = tree_scale(jnp.minimum(1.0, max_norm / (step_norm + 1e-6)), step)
    skipped = ~jnp.isfinite(step_norm) | (step_norm < MIN_STEP_NORM)
    skipped = skipped | (info.status == SolverStatus.NONFINITE) | (info.status == SolverStatus.RESIDUAL_GROWTH)
    delta = tree_scale(sign, step) if noise is None else tree_axpy(sign, step, noise)
    delta = jax.tree.map(lambda d: jnp.where(skipped, 0.0, d), delta)
    diagnostics = {
        "solver_iterations": info.iterations,
        "solver_residual": info.residual_norm,
        "solver_status": info.status,
        "solution_norm": step_norm,
        "update_norm": tree_norm(delta),
        "skipped": skipped,
    }
    return jax.tree.map(jnp.add, params, delta), skipped, diagnostics
