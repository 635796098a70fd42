"""GIF: a graph influence-function update of all parameters, then fine-tuning on retain data.

Wu, Yang, Qian, Sui, Wang, He, "GIF: A General Graph Unlearning Strategy via Influence
Function", WWW 2023 (arXiv 2304.02835). Deleting edges dG changes the loss terms of the deleted
edges AND, through message passing, the losses of their neighbourhood N, so the parameter change
is (GIF eq. 8)

    d_theta = H^-1 ( grad L_dG(G) + grad L_N(G) - grad L_N(G \\ dG) ),

with H^-1 v computed by LiSSA, h_t = v + (1 - d) h_{t-1} - H h_{t-1} / s, d_theta = h_T / s
(`influence.lissa_solve`). ERASE (unlearning-algorithms spec 6.5, detail spec section 5) applies
it to one request (F = all training rows of the request's users, C = F without the forgotten
rows, R = sampled retain rows), then fine-tunes on R with the persistent Adam.

Two modes (`compat`):

* "correct" (default): the paper's update, as the Newton step of the mean loss over the n
  training rows kept after the request (`newton.removal_newton_system`; R's terms weighted by
  w = (n - |C|) / |R|, so R stands for the rows not in view),

      g = ( sum_F grad l(before) - sum_C grad l(after) + w sum_R [grad l(before) - grad l(after)] ) / n
      H = curvature of (sum_C l(after) + w sum_R l(after)) / n on `context_after`
      theta <- theta + x,   (H + gif_cg_damping I) x = g   (CG, `gif_solver="cg"`, the default)
                            or x = h_T / s  (the paper code's LiSSA, d = gif_damping, s = gif_scale_factor).
 The first two terms are the paper's grad L_dG plus u's own kept
  edges seen through the changed graph (sum_F grad l(before) - sum_C grad l(after) =
  sum_{F\\C} grad l(before) + sum_C [grad l(before) - grad l(after)]); R plays the neighbourhood
  N. With d = 0 and an exact optimum this is the Newton step -H^-1 grad L_after, which for a
  quadratic loss is the retrained optimum; LiSSA's d s = 10 is the paper code's strong damping
  (a no-op at this loss scale, see `gif_solver`). The forget rows are the request's F minus C
  (the protocol's retrained model keeps C), unlike the original, which removes all of F's
  edges. The neighbourhood is all of R: the original's k-hop filter, topped up with other
  retain rows to U rows, returns (nearly) all of R for the protocol's retain sample of U rows,
  so `gif_k_hops` has no effect (kept for configuration compatibility).
* "erase": the original's arithmetic (detail spec section 5; `gif_erase`): delta = g_F + g_orig - g_rem
  with g_F = sum of F's 256-row batch means / |F|, g_orig and g_rem = sums of R's batch means /
  number of batches on the graph before / after; H v = average of batch-mean HVPs over the first
  min(|R|, 1024) rows of R (graph before); recursion h_0 = delta, h_t = delta + h_{t-1} -
  (d/s) H h_{t-1} for gif_iterations steps and theta <- theta + h_T, **without the final
  division by s** (quirk Q-GIF-3: h_T is about (T+1) delta). Deliberate deviation: g_rem uses
  `context_after` (the graph without the request), not the original's sampled retain subgraph
  with its spurious user k <-> item k edges (Q-GIF-4).

Curvature (`curvature`, "correct" mode): H above is the exact Hessian of the kept rows' mean loss
("hessian", what the paper and the original use) or its generalised Gauss-Newton matrix
J^T H_out J ("gauss_newton", `influence.gauss_newton_operator`). The default "auto" takes
Gauss-Newton wherever the model has the `output_loss_parts` hook and the exact Hessian elsewhere
(`influence.resolve_curvature`). The exact Hessian over all parameters is indefinite, and on a
sequence model it cost test quality (benchmarks/RESULTS.md, "Unlearning on a sequence model").
"erase" always uses the exact Hessian.

Both modes: `max_norm` clips ||step||; a non-finite step, ||step|| < 1e-15, or a solver status
NONFINITE / RESIDUAL_GROWTH skips the update AND the fine-tuning (the original returns early), and
`skipped` is recorded. Then, by default only in "erase" (`finetune.fine_tunes`), fine-tuning: E =
1 + U // |R| epochs, each a fresh shuffled pass over R in batches of 256 capped at U =
gif_retain_samples (None: 16 |F|) rows, one Adam step (lr = learning_rate, the config lr) per
batch on `context_after`; Adam's moments are the method state and persist across requests, as
in the original.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from erase_jax.unlearn.influence.curvature import (
    check_curvature,
    newton_damping,
    resolve_curvature,
)
from erase_jax.unlearn.influence.solvers import cg_solve, lissa_solve
from erase_jax.unlearn.methods import gif_erase
from erase_jax.unlearn.methods.base import RequestData, check_compat, register
from erase_jax.unlearn.methods.finetune import fine_tunes, finetune_epochs, retain_passes
from erase_jax.unlearn.methods.newton import apply_step, removal_newton_system, same_context, training_rows

CG_TOLERANCE = 1e-6  # relative, as CEU's and IDEA's correct modes


@register
@dataclasses.dataclass(frozen=True)
class GIF:
    """GIF with the original's hyperparameter names and defaults (see the module docstring).

    gif_damping: d (`--gif_damping`). gif_scale_factor: s (`--gif_scale_factor`).
    gif_iterations: T (`--gif_iterations`). gif_k_hops: accepted, no effect (module docstring).
    gif_retain_samples: U, fine-tuning rows per epoch (None: 16 |F|, the original's default).
    gif_hessian_samples: Hessian rows in "erase" (1024, hard-coded in the original).
    retain_samples_used_for_update: the retain budget rule's T (`GIF.retain_budget`).
    learning_rate: fine-tuning Adam lr (the config's `learning_rate`).
    retain_finetune: whether the retain fine-tuning runs (None: `finetune.fine_tunes`, i.e. not in
      "correct", as the GIF paper, and in "erase", as the original).
    max_norm: clip of ||step|| (`--max_norm`; None = no clip). compat: "correct" or "erase".
    gif_solver: how H^-1 g is computed in "correct" mode: "cg" (default: (H + gif_cg_damping I)
      x = g to a relative tolerance, at most gif_iterations steps) or "lissa" (the paper code's
      recursion with gif_damping and gif_scale_factor, whose fixed point is (H + d s I)^-1 g:
      d s = 10 at the paper's defaults, orders of magnitude above the curvature of a user's
      block in the mean loss over the data, so it is a gradient step of about g / 10 that leaves
      the model where it was (measured: benchmarks/RESULTS.md, "The removal Newton step over
      the whole data").
      "erase" always runs the original's recursion.
    gif_cg_damping: lambda of the "cg" solver (None: `influence.newton_damping`, by model family
      and curvature; the exact Hessian, indefinite over all parameters, keeps 0.01: with 1e-4 it
      wrecked the model; benchmarks/RESULTS.md, "Gauss-Newton curvature").
    curvature: "auto" (default), "hessian" or "gauss_newton" (module docstring; "correct" only).
    """

    name: ClassVar[str] = "gif"

    gif_damping: float = 0.01
    gif_scale_factor: float = 1000.0
    gif_iterations: int = 100
    gif_k_hops: int = 2
    gif_retain_samples: int | None = None
    gif_hessian_samples: int = 1024
    retain_samples_used_for_update: int = 128
    learning_rate: float = 1e-3
    retain_finetune: bool | None = None
    max_norm: float | None = None
    compat: str = "correct"
    gif_solver: str | None = None
    gif_cg_damping: float | None = None
    curvature: str = "auto"

    def __post_init__(self):
        check_compat(self.name, self.compat)
        check_curvature(self.name, self.curvature, self.compat)
        if self.gif_solver not in (None, "lissa", "cg"):
            raise ValueError(f"gif: gif_solver must be 'lissa', 'cg' or None, got {self.gif_solver!r}")
        if self.compat == "erase" and self.gif_solver == "cg":
            raise ValueError("gif: compat='erase' reproduces the original's recursion; gif_solver='cg' needs compat='correct'")
        if self.compat == "erase" and self.gif_damping <= 0:
            raise ValueError("gif: compat='erase' needs gif_damping > 0 (its recursion divides by d / s)")

    @property
    def solver(self) -> str:
        """The solver in use in "correct" mode: `gif_solver`, else "cg"."""
        return self.gif_solver or "cg"

    def retain_budget(self, n_forget_rows: int) -> int:
        # the original's rule; its batch (B > 1) branch floors at 1024 instead of 32
        return max(self.retain_samples_used_for_update, 32)

    def init(self, model, params):
        return optax.adam(self.learning_rate).init(params)

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        cap = self.gif_retain_samples if self.gif_retain_samples is not None else 16 * request.n_forget_rows
        epochs = finetune_epochs(cap, request.retain) if fine_tunes(self) else 0
        batches = (request.forget, request.clean, request.retain)
        contexts = (request.context_before, request.context_after)
        return _gif_request(self, model, same_context(request), epochs, params, state, contexts, batches,
                            training_rows(request), jnp.float32(cap), key)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _gif_request(method: GIF, model, same: bool, epochs, params, opt_state, contexts, batches, n_train, cap, key):
    retain, after = batches[2], contexts[1]
    loss_key, finetune_key = jax.random.split(key)
    if method.compat == "correct":
        curvature = resolve_curvature(method.curvature, model)
        g, matvec = removal_newton_system(model, params, contexts, batches, loss_key, curvature, n_train, same)
        if method.solver == "cg":
            damping = newton_damping(method.gif_cg_damping, curvature, model)
            x, info = cg_solve(matvec, g, damping, CG_TOLERANCE, method.gif_iterations)
        else:
            x, info = lissa_solve(matvec, g, method.gif_damping, method.gif_scale_factor, method.gif_iterations)
    else:
        x, info = gif_erase.solve(model, params, contexts, batches, loss_key, method.gif_damping,
                                  method.gif_scale_factor, method.gif_hessian_samples, method.gif_iterations)
    params, skipped, diagnostics = apply_step(params, x, 1.0, method.max_norm, info)
    if not fine_tunes(method):  # zero passes: nothing to trace
        diagnostics["finetune_loss"] = jnp.float32(0.0)
        return params, opt_state, diagnostics
    tuned, new_state, finetune_loss = retain_passes(
        model, params, opt_state, after, retain, cap, epochs, method.learning_rate, finetune_key
    )
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(skipped, b, a), new, old)
    diagnostics["finetune_loss"] = jnp.where(skipped, 0.0, finetune_loss)
    return keep(tuned, params), keep(new_state, opt_state), diagnostics
