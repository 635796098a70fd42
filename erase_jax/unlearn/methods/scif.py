"""SCIF: a one-step influence-function (Newton) update of the user embeddings only.

Li, Chen, Zheng, Zhang, Gong, Wang, "Selective and Collaborative Influence Function for
Efficient Recommendation Unlearning", ESWA 2023 (arXiv 2304.10199). The influence function
(Koh & Liang, ICML 2017, eq. 1) says how the optimum moves when training rows are reweighted:
removing rows D_f moves it by about (1/n) H^-1 sum_{z in D_f} grad l(z). SCIF makes it
*selective* (only the affected users' embeddings move, so H is their small block) and
*collaborative* (the Hessian and gradient keep the user's remaining interactions and the fixed
item embeddings they couple to). ERASE (unlearning-algorithms spec 6.2; detail spec section 2)
turns one request (user u; F = all of u's training rows, C = F without the forgotten rows,
R = rows of sampled retain users) into

    g = sum_C grad l / Rc  +  sum_k grad l(b_k) / Rc_k  -  sum_F grad l / Rc
    x ~ (H + lambda I)^-1 g   (stochastic CG),        theta_P <- theta_P - tau x,  tau = 1/|R|

over P = the parameters the model declares as its influence targets (the spec's
`target_params`: the whole user-embedding table where there is one).

Two modes (`compat`):

* "correct" (default): the damped Newton step of the objective after the request, restricted to
  the parameter block. With N = |C| + |R| rows of that objective in view,

      g_bar = (sum_C grad l + sum_R grad l - sum_F grad l) / N
      H_bar = mean Hessian over the N rows of C and R (the model's loss on them as one batch)
      theta_P <- theta_P - x,   (H_bar + lambda I) x = g_bar   (deterministic CG, cg_tol relative)

  That is the paper's update (1/n) H_bar^-1 (sum grad) with n = N; the -F term is the influence
  of removing u's rows (zero at an exact optimum), +C re-inserts the kept ones, +R corrects the
  retain users' embeddings towards their own optimum (ERASE's retain term). One operator, every
  term with one normaliser: with lambda = 0 and a quadratic loss this lands exactly on the
  retrained optimum (tests/unlearn/methods/test_scif.py checks it). It replaces ERASE's separate constants Rc
  and tau, whose product (about 1/(8 |F| S |R|)) shrinks the original's step far below a
  Newton step (in that convex test it covers a small fraction of the way); the operator is the
  mean Hessian, not ERASE's H/|b| (detail spec Q-SCIF-1), and CG sees one operator throughout. The
  forget term uses `context_before` (the graph that trained the model), C, R and the Hessian
  `context_after` (the graph without the request). F, C and R travel as one batch padded to
  the bucket of |F| + |C| + |R| rows, so the mode compiles once per such bucket. It assumes
  `model.loss` is a weighted MEAN over rows (`model.loss_is_row_mean`); for a loss that sums
  over the batch the forget term comes out |F| / N too small.
* "erase": the original's arithmetic, quirks included (`scif_erase`). Gradient: sums of loader-batch MEANS
  (F and C in batches of 256, R in batches of 16), F and C divided by
  Rc = max(1, retain_samples_used_for_update * |F| * S - |C|) with S = max(1, |F| - |C|), each
  retain batch truncated to the remaining budget Rc_k and divided by it (Rc_0 = Rc,
  Rc_{k+1} = Rc_k - |b_k|, stop at <= 0). Solver: the original `cg_inv_hvp`, one CG step per
  mini-batch with operator H_b/|b| + lambda I (H_b: Hessian of the batch mean), first the C
  batches (each reused ceil(L/16) times with p frozen, Q-SCIF-2/3), then the R batches, within
  a budget of samples_wanted_constant * S rows; absolute tolerance; a step with |p^T A p| <
  1e-10 is skipped, p^T A p < 0 stops CG and keeps x so far (applied, as the original does).
  Update theta_P <- theta_P - x / |R|. Loader order: each pass reshuffles the real rows (the
  original's loaders shuffle too; its exact order is not reproduced). The whole request sees
  `context_before` (the original never rebuilds a graph model's graph during a request).

Curvature (`curvature`, "correct" mode): H_bar is the exact Hessian of the block ("hessian", the
paper's and the original's) or its generalised Gauss-Newton matrix J^T H_out J ("gauss_newton",
`influence.gauss_newton_operator`: J the Jacobian of the logits w.r.t. the block). The default
"auto" takes Gauss-Newton where the model declares `prefers_gauss_newton` (the sequence
models, whose block, item embedding and output layers, has a strongly indefinite exact
Hessian) and keeps the exact Hessian elsewhere (a user's block of a dot-product loss is convex
already): `influence.resolve_curvature` with `default="hessian"`. The damping default also
depends on the model (`SCIF.damping`, `SCIF.damping_for`). "erase" always uses the exact Hessian.

Both modes: optional `max_norm` clips ||step|| (step = tau x); the update is skipped (and
`skipped` recorded) if x is non-finite or ||x|| < 1e-15, and in "correct" mode also when CG
reports a non-finite value or a growing residual. Negative curvature (p^T A p <= 0, status
NOT_POSITIVE_DEFINITE) is not a skip: x is then the CG iterate before that direction, the
truncated Newton-CG step (Nocedal & Wright, Numerical Optimization, Algorithm 7.1), which the
original applies as well; at the very first step that x is 0, so nothing is applied. This
matters for graph models, whose loss is not convex in the user table (users meet users through
the propagated item embeddings) and whose C-and-R Hessian is often indefinite even with
damping. No fine-tuning; the method keeps no state.

Parameters touched (`target_block`): what the model declares in `influence_targets` (the
user-embedding table; for sequence models the item embedding and output layers, the
original's `target_params`; None: every parameter, the spec's fallback). For models whose loss
reads the user table only at the batch's users' rows (`user_rows_are_local`: a dot-product
score <e_u, e_i> whose regulariser sees only batch rows) the gradient is zero outside the users
of F, C and R and every batch Hessian is block-diagonal by user, so CG started at x = 0 never
leaves those rows: working on just those rows (`user_rows_block`) is exactly the original's
full-table update. Note it is NOT only the request's users: the retain term moves the sampled
retain users' embeddings too, in the original as here. Graph models propagate embeddings over
the graph, so a user's gradient reaches its neighbours' rows; they use the whole table.

Deliberate differences from the original in both modes: the whole request is one compiled call
(padded shapes, one compile per size bucket) and does not check `time_limit_seconds`, which
it cannot exceed in practice (milliseconds); the retain rows are never filtered for already
unlearned users, because the protocol's sampler already excludes them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.batching.cf import bucket_size
from erase_jax.unlearn.influence.blocks import (
    USER_EMBEDDING,
    ParameterBlock,
    all_leaves_block,
    apply_update,
    leaf_block,
    loss_on_block,
    user_rows_block,
)
from erase_jax.unlearn.influence.curvature import (
    check_curvature,
    curvature_operator,
    resolve_curvature,
)
from erase_jax.unlearn.influence.sharding import data_parallel_loss
from erase_jax.unlearn.influence.solvers import SolverInfo, SolverStatus, cg_solve
from erase_jax.unlearn.influence.trees import tree_axpy, tree_norm, tree_scale
from erase_jax.unlearn.methods import scif_erase
from erase_jax.unlearn.methods.base import Batch, RequestData, check_compat, register

ERASE_DAMPING = 0.01  # the original's default lambda
CORRECT_DAMPING = 1e-4  # see SCIF.damping
MIN_SOLUTION_NORM = 1e-15  # no update when ||x|| is below this (the original's threshold)


@register
@dataclasses.dataclass(frozen=True)
class SCIF:
    """SCIF with the original's hyperparameter names and defaults (see the module docstring).

    damping: lambda added to the Hessian (`--damping`). None (default) = the mode's default:
      0.01 in "erase" (the original's), 1e-4 in "correct". Both operators are mean Hessians,
      but the correct mode takes a full Newton step, and a user's block of the mean Hessian
      over the N rows in view is only (its rows / N) of its own curvature: lambda = 0.01
      outweighs it and shrinks the step several-fold, so that the forgotten pairs barely
      move (measured: benchmarks/RESULTS.md, "Unlearning cost per request"). A model may
      declare its own correct-mode default (`scif_damping`). A damping given explicitly
      always wins.
    max_norm: clip of the step norm ||tau x|| (`--max_norm`; None = no clip).
    cg_tol: CG tolerance; absolute on ||r|| in "erase" (as the original), relative to ||g||
      in "correct" (the correct mode's g is a mean, but its scale still varies per request).
    cg_iterations: CG iteration cap in "correct" mode (the original computes a cap and never
      uses it; 100 is far more than the well-conditioned user blocks need).
    retain_samples_used_for_update: U_r / |F|, the factor in Rc ("erase" only; quick_start
      passes 8 |F|).
    samples_wanted_constant: the original CG's row budget per sensitive row ("erase" only).
    retain_gradient: "correct" only: include the retain rows' gradient in g (ERASE's retain
      term). Default False: R shapes the Hessian only, and g is the influence of the removed
      rows alone, (sum_C - sum_F) / N, as in the paper's influence function. Near the optimum
      the retain gradient is zero in expectation and, with one sampled negative per row,
      mostly sampling noise, which a lightly damped Newton step moves the retain users along,
      at a cost in test quality (measured: benchmarks/RESULTS.md, "Unlearning cost per
      request").
    compat: "correct" (default) or "erase".
    curvature: "auto" (default), "hessian" or "gauss_newton" (module docstring; "correct" only).
    """

    name: ClassVar[str] = "scif"

    damping: float | None = None
    max_norm: float | None = None
    cg_tol: float = 1e-5
    cg_iterations: int = 100
    retain_samples_used_for_update: int = 8
    samples_wanted_constant: int = 1024
    retain_gradient: bool = False
    compat: str = "correct"
    curvature: str = "auto"

    def __post_init__(self):
        check_compat(self.name, self.compat)
        check_curvature(self.name, self.curvature, self.compat)

    def damping_for(self, model) -> float:
        """The damping in use on `model`: `damping`, else the original's 0.01 in "erase", else the
        model's `scif_damping` where it declares one, else 1e-4."""
        if self.damping is not None:
            return self.damping
        if self.compat == "erase":
            return ERASE_DAMPING
        model_default = getattr(model, "scif_damping", None)
        return CORRECT_DAMPING if model_default is None else model_default

    def retain_budget(self, n_forget_rows: int) -> int:
        return max(8 * n_forget_rows, 32)  # the original's dispatcher rule

    def init(self, model, params):
        return ()

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        contexts = (request.context_before, request.context_after)
        if self.compat == "correct":
            rows, forget_weight, clean_weight = _one_batch(request.forget, request.clean, request.retain, request.joined_rows)
            weights = (forget_weight, clean_weight)
            params, diagnostics = _correct_request(self, model, params, contexts, rows, weights, key)
        else:
            batches = (request.forget, request.clean, request.retain)
            params, diagnostics = _erase_request(self, model, params, contexts, batches, key)
        return params, state, diagnostics


def target_block(model, params, batches: list[Batch]) -> ParameterBlock:
    """SCIF's parameters P (the original's `target_params`), as small as is exact (module docstring).

    P is what the model declares in `influence_targets` (the user-embedding table; sequence
    models: the item embedding and output layers; None: every parameter). Where the model's
    loss reads the user table only at the batch users' rows (`user_rows_are_local`), the block
    is those rows when they are fewer than the table; its length is the batches' padded row
    count (static), the unused entries being the padding row n_users.
    """
    paths = getattr(model, "influence_targets", None)
    if paths is None:
        return all_leaves_block(params)
    if tuple(paths) != (USER_EMBEDDING,) or not getattr(model, "user_rows_are_local", False):
        return leaf_block(*paths)
    n_users = params["params"]["user_embedding"]["embedding"].shape[0]
    n_rows = sum(b["users"].shape[0] for b in batches)
    if n_rows >= n_users:  # no block smaller than the table
        return leaf_block(USER_EMBEDDING)
    users = jnp.concatenate([jnp.where(b["weight"] > 0, b["users"], n_users) for b in batches])
    return user_rows_block(jnp.unique(users, size=n_rows, fill_value=n_users))


def _apply_step(method: SCIF, params, block: ParameterBlock, x, tau, info: SolverInfo):
    """theta_P <- theta_P - tau x, clipped to max_norm; skipped when x is unusable."""
    step = tree_scale(tau, x)
    if method.max_norm is not None:
        step = tree_scale(jnp.minimum(1.0, method.max_norm / tree_norm(step)), step)
    solution_norm = tree_norm(x)
    skipped = ~jnp.isfinite(solution_norm) | (solution_norm < MIN_SOLUTION_NORM)
    if method.compat == "correct":
        skipped = skipped | (info.status == SolverStatus.NONFINITE) | (info.status == SolverStatus.RESIDUAL_GROWTH)
    delta = jax.tree.map(lambda s: jnp.where(skipped, 0.0, -s), step)
    diagnostics = {
        "cg_iterations": info.iterations,
        "cg_residual": info.residual_norm,
        "cg_status": info.status,
        "solution_norm": solution_norm,
        "step_norm": jnp.where(skipped, 0.0, tree_norm(step)),
        "skipped": skipped,
    }
    return apply_update(params, block, delta), diagnostics


# ---------------------------------------------------------------------------------------------
# compat="correct": one damped Newton step of the objective after the request


def _one_batch(forget: Batch, clean: Batch | None, retain: Batch, size: int | None = None
               ) -> tuple[Batch, jax.Array, jax.Array]:
    """F, C and R as ONE batch whose weights are C's and R's, plus F's and C's weights separately.

    Host-side compaction of the real rows, padded to `size` (the stream's, `RequestData.joined_rows`)
    or else to one power-of-two bucket: the correct mode compiles once per stream, or per bucket
    of |F| + |C| + |R|, instead of once per combination of three buckets (and C = None needs no
    variant of its own).
    """
    parts = [(b, role) for b, role in ((forget, "forget"), (clean, "clean"), (retain, "retain")) if b is not None]
    real = [np.asarray(b["weight"]) > 0 for b, _ in parts]
    n_real = sum(int(mask.sum()) for mask in real)
    size = bucket_size(n_real) if size is None else size
    if size < n_real:
        raise ValueError(f"joined_rows {size} is smaller than the request's {n_real} rows")

    def gather(values: list[np.ndarray]) -> jax.Array:
        joined = np.concatenate([v[mask] for v, mask in zip(values, real)])
        # device_put, not jnp.asarray: the latter compiles a small program per dtype
        return jax.device_put(np.concatenate([joined, np.zeros((size - n_real, *joined.shape[1:]), joined.dtype)]))

    def weights(*wanted: str) -> jax.Array:
        return gather([np.asarray(b["weight"]) * (role in wanted) for b, role in parts])

    rows = {name: gather([np.asarray(b[name]) for b, _ in parts]) for name in forget if name != "weight"}
    return {**rows, "weight": weights("clean", "retain")}, weights("forget"), weights("clean")


@functools.partial(jax.jit, static_argnums=(0, 1))
def _correct_request(method: SCIF, model, params, contexts, rows: Batch, weights, key):
    """One damped Newton step of the objective after the request (module docstring)."""
    context_before, context_after = contexts
    forget_weight, clean_weight = weights
    kept, forget = rows, {**rows, "weight": forget_weight}
    block = target_block(model, params, [{**rows, "weight": rows["weight"] + forget_weight}])
    n_kept = jnp.maximum(jnp.sum(kept["weight"]), 1.0)
    n_forget = jnp.sum(forget["weight"])
    loss_after = data_parallel_loss(model, context_after, key)  # rows split over local devices
    loss_before = data_parallel_loss(model, context_before, key)
    forget_loss = loss_on_block(lambda p: loss_before(p, forget), params, block)
    values = block.values(params)
    if method.retain_gradient:
        # g_bar = (sum_C + sum_R - sum_F) / N with sum_S grad l = |S| grad(mean loss on S).
        kept_loss = loss_on_block(lambda p: loss_after(p, kept), params, block)
        kept_gradient = jax.grad(kept_loss)(values)
    else:
        # g_bar = (sum_C - sum_F) / N: R shapes the Hessian only.
        clean = {**rows, "weight": clean_weight}
        clean_loss = loss_on_block(lambda p: loss_after(p, clean), params, block)
        kept_gradient = tree_scale(jnp.sum(clean_weight) / n_kept, jax.grad(clean_loss)(values))
    mean_gradient = tree_axpy(-n_forget / n_kept, jax.grad(forget_loss)(values), kept_gradient)
    curvature = resolve_curvature(method.curvature, model, default="hessian")
    matvec = curvature_operator(curvature, model, context_after, kept, key, params, block)
    x, info = cg_solve(matvec, mean_gradient, method.damping_for(model), method.cg_tol, method.cg_iterations)
    return _apply_step(method, params, block, x, 1.0, info)


# ---------------------------------------------------------------------------------------------
# compat="erase": the original's gradient normalisation and stochastic CG (`scif_erase`)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _erase_request(method: SCIF, model, params, contexts, batches, key):
    """The original's gradient normalisation and stochastic CG (module docstring)."""
    context_before, _ = contexts  # the original keeps one graph for the whole request
    block = target_block(model, params, [b for b in batches if b is not None])
    x, tau, info = scif_erase.solve(
        model, params, context_before, batches, block, key, method.damping_for(model), method.cg_tol,
        method.retain_samples_used_for_update, method.samples_wanted_constant,
    )
    return _apply_step(method, params, block, x, tau, info)
