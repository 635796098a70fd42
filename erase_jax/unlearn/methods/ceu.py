"""CEU: certified edge unlearning, a damped Newton step by CG plus Gaussian noise; no fine-tuning.

Wu, Shen, Ning, Wang, Wang, "Certified Edge Unlearning for Graph Neural Networks", KDD 2023
(doi 10.1145/3580305.3599271). Training minimises L(theta) + (lambda/2) ||theta||^2; removing
edges dE gives the one-step estimate theta~ = theta* - H_lambda^-1 grad L_{G \\ dE}(theta*)
(H_lambda = H + lambda I, the regularised objective's Hessian), and the certified variant
releases theta~ + b with b ~ N(0, sigma^2 I), whose (epsilon, delta) guarantee rests on a bound
on the remaining gradient residual. ERASE (unlearning-algorithms spec 6.6, detail spec section 6)
applies it to one request (F, C, R as in `gif`).

Two modes (`compat`):

* "correct" (default): with g and H the removal Newton system of `newton.removal_newton_system`
  (the mean loss over the n training rows kept after the request, R weighted up to stand for
  the rows not in view; forget and kept terms on `context_before` / `context_after`),

      (H + ceu_lambda I) x = g     (CG, relative tolerance 1e-6, ceu_cg_iterations steps)
      theta <- theta + x + s xi,   xi ~ N(0, I),   s = sigma / (|F| + |C|),

  i.e. the paper's step with the damping counted ONCE, and the noise on the released parameters
  (the paper's b) at the original's magnitude per entry (`ceu_noise_scale`). With lambda = 0 and
  a quadratic loss the step is the retrained optimum. Sign: + x, the removal (ascent-on-forget)
  direction.
* "erase": the original (`ceu_erase`): delta = g_F - g_rem with g_F = sum of F's 256-row batch
  means / |F| (graph before) and g_rem = average of R's batch means (graph after: deviation, the
  original uses its sampled retain subgraph, Q-GIF-4); A v = average over the first min(|R|,
  ceu_hessian_samples) rows of R of the batch-mean HVP + 2 lambda v (**double damping**, Q-CEU-3:
  the L2 term in the loss and the explicit lambda); CG with absolute tolerance 1e-6;
  theta <- theta - (x + sigma xi) / (|F| + |C|) (**sign Q-SIGN**: a descent on the forget loss;
  the noise is divided by the node count too).

Curvature (`curvature`, "correct" mode): H is the exact Hessian ("hessian", the paper's and the
original's) or the generalised Gauss-Newton matrix J^T H_out J ("gauss_newton",
`influence.gauss_newton_operator`, positive semi-definite). The default "auto" takes
Gauss-Newton wherever the model has the `output_loss_parts` hook and the exact Hessian elsewhere
(`influence.resolve_curvature`). The exact Hessian over all parameters is indefinite: on a
sequence model CG met negative curvature within the first iterations and the truncated steps
wrecked the model (benchmarks/RESULTS.md, "Unlearning on a sequence model"). ceu_lambda None
picks the damping by curvature (`influence.newton_damping`). The `certification_residual` is
then the residual of the Gauss-Newton system. "erase" always uses the exact Hessian.

How large the noise is (`ceu_noise_scale`): the default "per_node" adds sigma / (|F| + |C|) per
entry, |F| + |C| the request's forget and clean rows, which is the magnitude the original adds
(it divides step and noise by that node count) and what ERASE's sigma = 0.1 was chosen for;
"absolute" adds sigma itself per entry, for a sigma calibrated by the user (the paper's
(epsilon, delta) calibration needs a bound on the gradient residual that a non-convex
recommender does not give). sigma = 0.1 undivided destroyed a sequence model: on ML-100K SASRec
(80,928 parameters of RMS 0.099) the noise's norm was about 28 against a Newton step of
0.05-0.07, and test Recall@20 fell 54 % below the retrain's (experiments/results/
method_distance_ml-100k.json, SASRec "ceu-absolute").

Where the noise goes (`noise_mode`): the certificate is a statement about the RELEASED
parameters, theta~ + b. "release" (default in "correct") keeps the noiseless theta~ as the
method state, takes each request's Newton step from it, and releases theta~ + b with fresh b:
after n requests the released model carries one draw of noise, sigma per entry. "accumulate"
(the original, default in "erase") adds b to the model itself, so the next request starts from
the noisy parameters and the noise compounds to sigma sqrt(n) (`noise`; over a long request
stream that wrecks the model at the default sigma, while one draw costs little: measured in
benchmarks/RESULTS.md, "Unlearning cost per request").

Both: `max_norm` clips ||x|| before the noise; a non-finite x, ||x|| < 1e-15 or a solver status
NONFINITE / RESIDUAL_GROWTH skips the update (no noise either) and records `skipped`; negative
curvature keeps the truncated CG iterate (as SCIF's). Diagnostics report `noise_scale` (the
standard deviation actually added per parameter entry), `epsilon` (ceu_epsilon: the original only
prints it; no calibration happens in CEU) and `certification_residual`, the norm of the
regularised gradient residual (H + lambda I) x - g that the paper's certificate bounds. The
original's neighbourhood filter on C is always empty (Q-CEU-1), so `ceu_k_hops` is not a field.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import jax
import jax.numpy as jnp

from erase_jax.unlearn.influence.curvature import (
    check_curvature,
    newton_damping,
    resolve_curvature,
)
from erase_jax.unlearn.influence.solvers import cg_solve
from erase_jax.unlearn.influence.trees import tree_axpy, tree_scale
from erase_jax.unlearn.methods import ceu_erase
from erase_jax.unlearn.methods.base import RequestData, check_compat, register
from erase_jax.unlearn.methods.newton import apply_step, removal_newton_system, same_context, training_rows
from erase_jax.unlearn.methods.noise import (
    NOISE_STREAM,
    check_noise_mode,
    gaussian_noise,
    noiseless_init,
    release_with_noise,
    resolved_noise_mode,
)

NOISE_SCALES = ("per_node", "absolute")
CG_TOLERANCE = 1e-6  # relative to ||g|| (the original's 1e-6 is absolute: `ceu_erase`)


@register
@dataclasses.dataclass(frozen=True)
class CEU:
    """CEU with the original's hyperparameter names and defaults (see the module docstring).

    ceu_lambda: lambda (`--ceu_lambda`; None: `influence.newton_damping`, by model family and
    curvature in "correct", the original's 0.01 in "erase"). ceu_sigma: sigma (`--ceu_sigma`).
    ceu_epsilon: reported
    only (`--ceu_epsilon`). ceu_cg_iterations: CG cap. ceu_hessian_samples: Hessian rows ("erase")
    and the retain budget floor. max_norm: clip of ||x||. compat: "correct" or "erase".
    noise_mode: "release" or "accumulate" (module docstring). ceu_noise_scale: "per_node"
    (default: sigma / (|F| + |C|) per entry, the original's magnitude) or "absolute" (sigma per
    entry; module docstring). curvature: "auto" (default),
    "hessian" or "gauss_newton" (module docstring; "correct" only).
    """

    name: ClassVar[str] = "ceu"

    ceu_lambda: float | None = None
    ceu_sigma: float = 0.1
    ceu_epsilon: float = 0.1
    ceu_cg_iterations: int = 100
    ceu_hessian_samples: int = 1024
    max_norm: float | None = None
    compat: str = "correct"
    noise_mode: str | None = None
    curvature: str = "auto"
    ceu_noise_scale: str = "per_node"

    def __post_init__(self):
        check_compat(self.name, self.compat)
        if self.ceu_noise_scale not in NOISE_SCALES:
            raise ValueError(f"ceu: ceu_noise_scale must be one of {NOISE_SCALES}, got {self.ceu_noise_scale!r}")
        check_noise_mode(self.name, self.noise_mode)
        check_curvature(self.name, self.curvature, self.compat)

    def retain_budget(self, n_forget_rows: int) -> int:
        return max(8 * n_forget_rows, self.ceu_hessian_samples)  # the original's dispatcher rule

    def init(self, model, params):
        return noiseless_init(resolved_noise_mode(self), params)

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        batches = (request.forget, request.clean, request.retain)
        n_train = training_rows(request)
        contexts = (request.context_before, request.context_after)
        if resolved_noise_mode(self) == "release":
            # Step from the noiseless parameters; the noise goes on the released copy only.
            noiseless, diagnostics = _ceu_request(self, model, state, contexts, batches, n_train, key, False,
                                                  same_context(request))
            noise_key = jax.random.fold_in(key, NOISE_STREAM)
            # Always noised, also after a skipped step: a release without noise would expose
            # the noiseless state.
            diagnostics["noise_scale"] = diagnostics.pop("release_noise_scale")
            released = release_with_noise(noiseless, diagnostics["noise_scale"], noise_key)
            return released, noiseless, diagnostics
        params, diagnostics = _ceu_request(self, model, params, contexts, batches, n_train, key, True, same_context(request))
        return params, state, diagnostics


@functools.partial(jax.jit, static_argnums=(0, 1, 7, 8))
def _ceu_request(method: CEU, model, params, contexts, batches, n_train, key, add_noise: bool, same: bool = False):
    loss_key, noise_key = jax.random.split(key)
    if method.compat == "correct":
        curvature = resolve_curvature(method.curvature, model)
        g, matvec = removal_newton_system(model, params, contexts, batches, loss_key, curvature, n_train, same)
        damping, sign, scale = newton_damping(method.ceu_lambda, curvature, model), 1.0, 1.0
        x, info = cg_solve(matvec, g, damping, CG_TOLERANCE, method.ceu_cg_iterations)
    else:
        ceu_lambda = newton_damping(method.ceu_lambda, "hessian", model, "erase")
        g, matvec, damping, x, info, sign, scale = ceu_erase.solve(
            model, params, contexts, batches, loss_key, ceu_lambda, method.ceu_hessian_samples, method.ceu_cg_iterations
        )
    # the step is sign * scale * x ("erase": scale = 1 / (|F| + |C|), Q-SIGN); the noise is
    # sigma / (|F| + |C|) per entry ("per_node", both modes) or sigma ("absolute")
    noise_scale = method.ceu_sigma * (node_scale(batches) if method.ceu_noise_scale == "per_node" else 1.0)
    noise = gaussian_noise(noise_key, params, noise_scale) if add_noise else None
    residual = tree_axpy(-1.0, g, tree_axpy(damping, x, matvec(x)))
    max_norm = _scaled(method.max_norm, scale)
    params, skipped, diagnostics = apply_step(params, tree_scale(scale, x), sign, max_norm, info, noise)
    diagnostics.update(
        noise_scale=jnp.where(skipped, 0.0, noise_scale),
        epsilon=jnp.float32(method.ceu_epsilon),
        certification_residual=jnp.sqrt(sum(jnp.vdot(r, r) for r in jax.tree.leaves(residual))),
        release_noise_scale=jnp.float32(noise_scale),
    )
    if add_noise:
        del diagnostics["release_noise_scale"]
    return params, diagnostics


def node_scale(batches):
    """1 / (|F| + |C|): the request's forget and clean rows (the original's node count)."""
    forget, clean, _ = batches
    n_clean = 0 if clean is None else jnp.sum(clean["weight"] > 0)
    return 1.0 / jnp.maximum(jnp.sum(forget["weight"] > 0) + n_clean, 1)


def _scaled(max_norm, scale):
    """max_norm clips ||x|| (before the division by the node count), i.e. ||scale x|| at scale max_norm."""
    return None if max_norm is None else max_norm * scale
