"""IDEA: flexible certified unlearning, a CG Newton step plus calibrated Gaussian noise, then
fine-tuning on retain data.

Dong et al., "IDEA: A Flexible Framework of Certified Unlearning for Graph
Neural Networks", KDD 2024. The unlearned parameters are the one-step Newton estimate
theta* + H_lambda^-1 (removal gradient) plus Gaussian noise calibrated, by the Gaussian mechanism
(Dwork & Roth 2014, Theorem A.1: sigma >= Delta sqrt(2 ln(1.25/delta)) / epsilon), to a bound
Delta on the estimate's error. ERASE (unlearning-algorithms spec 6.7, detail spec section 7)
uses the proxy Delta = zeta = lambda ||x|| and sigma = max(sigma_0, ...).

Two modes (`compat`):

* "correct" (default): g and H as in `newton.removal_newton_system` (the mean loss over the n
  training rows kept after the request; forget/before terms on `context_before`, kept/after
  terms and H on `context_after`),

      (H + idea_damping I) x = g                 (CG, relative tolerance 1e-6)
      zeta = idea_damping ||x||,  sigma = max(sigma_0, zeta sqrt(2 ln(1.25/idea_delta)) / idea_epsilon)
      theta <- theta + x + sigma xi,              xi ~ N(0, I)

  i.e. the removal Newton step (with lambda = 0 and a quadratic loss: the retrained optimum) and
  the Gaussian mechanism's calibration, which MULTIPLIES the sensitivity by sqrt(2 ln(1.25/delta)).
  The floor sigma_0 (`idea_sigma`) is 0 here by default: the paper calibrates sigma and has no
  floor. The original's floor 0.1 comes with its retain fine-tuning, which repairs the noise and
  which this mode leaves out; without it, 0.1 per entry destroyed ML-100K SASRec (test Recall@20
  54 % below the retrain's), while the calibrated sigma alone kept it (0.2 % below; both in
  experiments/results/method_distance_ml-100k.json, SASRec). `idea_sigma=0.1` restores it.
* "erase": the original (`idea_erase`): d = g_C - g_F with g_F, g_C = sums of 256-row batch
  means / |F|, / |C| (graph before; g_C = 0 without C); A = Hessian of the row-weighted mean loss over R (graph
  before) + lambda I; CG with absolute tolerance 1e-6; sigma = max(sigma_0, zeta / (epsilon
  sqrt(2 ln(1.25/delta)))) (the original DIVIDES by the Gaussian-mechanism factor);
  theta <- theta + x + sigma xi (**sign Q-SIGN**: +A^-1 (g_C - g_F) lowers the forget loss).
  The earlier version of the original solved with a Richardson step of 1/idea_damping, which
  diverges unless lambda_max(H) < 2 idea_damping; spec section 6.7 (the version reproduced
  here) uses CG, so that variant is not offered.

Curvature (`curvature`, "correct" mode): H is the exact Hessian ("hessian", the paper's and the
original's) or the generalised Gauss-Newton matrix J^T H_out J ("gauss_newton",
`influence.gauss_newton_operator`, positive semi-definite). The default "auto" takes
Gauss-Newton wherever the model has the `output_loss_parts` hook and the exact Hessian elsewhere
(`influence.resolve_curvature`). The indefinite exact Hessian wrecked a sequence model
(benchmarks/RESULTS.md, "Unlearning on a sequence model"). idea_damping None picks the damping
by curvature (`influence.newton_damping`). "erase" always uses the exact Hessian.

Both: `max_norm` clips ||x|| before the noise; a non-finite x, ||x|| < 1e-15 or a solver status
NONFINITE / RESIDUAL_GROWTH skips the update, the noise and the fine-tuning (`skipped`). Then
(by default only in "erase", `finetune.fine_tunes`) fine-tuning as GIF's (Adam state = method
state, learning_rate), with U = 128 |F| rows per epoch (hard-coded in the original;
`idea_finetune_samples_per_forget_row`). Diagnostics report
`noise_scale` (sigma used), `sensitivity` (zeta) and `required_noise_scale` (the calibrated term
before the max with sigma_0). The original's k-hop Hessian set is all of R in practice, so
`idea_k_hops` is not a field.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import optax

from erase_jax.unlearn.influence.curvature import (
    check_curvature,
    newton_damping,
    resolve_curvature,
)
from erase_jax.unlearn.influence.solvers import cg_solve
from erase_jax.unlearn.influence.trees import tree_norm, tree_scale
from erase_jax.unlearn.methods import idea_erase
from erase_jax.unlearn.methods.base import RequestData, check_compat, register
from erase_jax.unlearn.methods.finetune import fine_tunes, finetune_epochs, retain_passes
from erase_jax.unlearn.methods.newton import apply_step, removal_newton_system, same_context, training_rows
from erase_jax.unlearn.methods.noise import (
    NOISE_STREAM,
    check_noise_mode,
    gaussian_noise,
    noiseless_init,
    release_with_noise,
    resolved_noise_mode,
)

CG_TOLERANCE = 1e-6  # relative to ||g|| (the original's 1e-6 is absolute: `idea_erase`)
ERASE_SIGMA = 0.1  # the original's sigma_0 (`--idea_sigma`)


@register
@dataclasses.dataclass(frozen=True)
class IDEA:
    """IDEA with the original's hyperparameter names and defaults (see the module docstring).

    idea_damping: lambda (None: `influence.newton_damping`, as CEU's ceu_lambda). idea_sigma:
    sigma_0, the noise floor (None: 0 in "correct", the paper's; 0.1 in "erase", the original's). idea_epsilon, idea_delta: the (epsilon, delta) of the calibration. idea_iterations: CG cap. idea_hessian_samples: Hessian rows ("erase") and
    the retain budget floor. idea_finetune_samples_per_forget_row: U / |F| (128 in the original).
    learning_rate: fine-tuning Adam lr (config lr). max_norm: clip of ||x||. compat.
    retain_finetune: whether the retain fine-tuning runs (None: not in "correct", as the IDEA
    paper, and in "erase", as the original; `finetune.fine_tunes`).
    noise_mode: "release" (default in "correct": the state keeps the noiseless, fine-tuned
    parameters and every release adds a fresh draw, see `noise`) or "accumulate" (the original,
    default in "erase": the noise enters the model before fine-tuning and compounds).
    curvature: "auto" (default), "hessian" or "gauss_newton" (module docstring; "correct" only).
    """

    name: ClassVar[str] = "idea"

    idea_damping: float | None = None
    idea_sigma: float | None = None
    idea_epsilon: float = 0.1
    idea_delta: float = 0.01
    idea_iterations: int = 100
    idea_hessian_samples: int = 1024
    idea_finetune_samples_per_forget_row: int = 128
    learning_rate: float = 1e-3
    retain_finetune: bool | None = None
    max_norm: float | None = None
    compat: str = "correct"
    noise_mode: str | None = None
    curvature: str = "auto"

    def __post_init__(self):
        check_compat(self.name, self.compat)
        check_noise_mode(self.name, self.noise_mode)
        check_curvature(self.name, self.curvature, self.compat)

    @property
    def sigma_floor(self) -> float:
        """sigma_0: `idea_sigma`, else 0 in "correct" (the paper) and 0.1 in "erase" (the original)."""
        if self.idea_sigma is not None:
            return self.idea_sigma
        return 0.0 if self.compat == "correct" else ERASE_SIGMA

    def retain_budget(self, n_forget_rows: int) -> int:
        return max(8 * n_forget_rows, self.idea_hessian_samples)  # the original's dispatcher rule

    def init(self, model, params):
        adam = optax.adam(self.learning_rate).init(params)
        if resolved_noise_mode(self) == "release":
            return {"adam": adam, "noiseless": noiseless_init("release", params)}
        return adam

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array):
        cap = self.idea_finetune_samples_per_forget_row * request.n_forget_rows
        epochs = finetune_epochs(cap, request.retain) if fine_tunes(self) else 0
        batches = (request.forget, request.clean, request.retain)
        n_train = training_rows(request)
        contexts = (request.context_before, request.context_after)
        if resolved_noise_mode(self) == "release":
            noiseless, adam, diagnostics = _idea_request(
                self, model, same_context(request), epochs, False, state["noiseless"], state["adam"], contexts, batches,
                n_train, jnp.float32(cap), key
            )
            # Always noised (at least sigma_0), also after a skipped step.
            diagnostics["noise_scale"] = jnp.maximum(diagnostics["noise_scale"], self.sigma_floor)
            released = release_with_noise(noiseless, diagnostics["noise_scale"], jax.random.fold_in(key, NOISE_STREAM))
            return released, {"adam": adam, "noiseless": noiseless}, diagnostics
        return _idea_request(self, model, same_context(request), epochs, True, params, state, contexts, batches, n_train,
                             jnp.float32(cap), key)


def gaussian_mechanism_factor(delta: float) -> float:
    """sqrt(2 ln(1.25 / delta)) (Dwork & Roth, Theorem A.1)."""
    return math.sqrt(2.0 * math.log(1.25 / delta))


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 4))
def _idea_request(method: IDEA, model, same: bool, epochs, add_noise: bool, params, opt_state, contexts, batches, n_train,
                  cap, key):
    retain, after = batches[2], contexts[1]
    loss_key, noise_key, finetune_key = jax.random.split(key, 3)
    if method.compat == "correct":
        curvature = resolve_curvature(method.curvature, model)
        g, matvec = removal_newton_system(model, params, contexts, batches, loss_key, curvature, n_train, same)
        damping = newton_damping(method.idea_damping, curvature, model)
        x, info = cg_solve(matvec, g, damping, CG_TOLERANCE, method.idea_iterations)
    else:
        damping = newton_damping(method.idea_damping, "hessian", model, "erase")
        x, info = idea_erase.solve(model, params, contexts, batches, loss_key, damping, method.idea_hessian_samples,
                                   method.idea_iterations)
    if method.max_norm is not None:
        x = tree_scale(jnp.minimum(1.0, method.max_norm / (tree_norm(x) + 1e-6)), x)
    sensitivity = damping * tree_norm(x)
    factor = gaussian_mechanism_factor(method.idea_delta)
    if method.compat == "correct":
        required = sensitivity * factor / method.idea_epsilon
    else:
        required = sensitivity / (method.idea_epsilon * factor)
    noise_scale = jnp.maximum(method.sigma_floor, required)
    noise = gaussian_noise(noise_key, params, noise_scale) if add_noise else None
    params, skipped, diagnostics = apply_step(params, x, 1.0, None, info, noise)
    if fine_tunes(method):
        tuned, new_state, finetune_loss = retain_passes(
            model, params, opt_state, after, retain, cap, epochs, method.learning_rate, finetune_key
        )
    else:  # zero passes: nothing to trace
        tuned, new_state, finetune_loss = params, opt_state, jnp.float32(0.0)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(skipped, b, a), new, old)
    diagnostics.update(
        noise_scale=jnp.where(skipped, 0.0, noise_scale),
        sensitivity=sensitivity,
        required_noise_scale=required,
        finetune_loss=jnp.where(skipped, 0.0, finetune_loss),
    )
    return keep(tuned, params), keep(new_state, opt_state), diagnostics
