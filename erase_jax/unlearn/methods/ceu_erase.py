"""CEU's compat="erase" arithmetic: the original's Newton system, quirks included (detail spec
section 6; stated, with its deviations, in the `ceu` module docstring).

    g   = g_F - g_rem,  g_F = sum of F's 256-row batch-mean gradients / |F| (graph before),
                        g_rem = average of R's batch-mean gradients (graph after; Q-GIF-4)
    A v = average batch-mean HVP over the first min(|R|, ceu_hessian_samples) rows of R
          (graph before) + 2 lambda v                       (double damping, Q-CEU-3)
    A x = g by CG to an ABSOLUTE tolerance of 1e-6
    theta <- theta - (x + sigma xi) / (|F| + |C|)          (sign Q-SIGN; the noise is divided too)
"""

from __future__ import annotations

import jax.numpy as jnp

from erase_jax.unlearn.influence.solvers import cg_solve
from erase_jax.unlearn.influence.trees import tree_axpy, tree_scale
from erase_jax.unlearn.methods.batch_means import batch_mean_hvp, grad_of_batch_means
from erase_jax.unlearn.methods.batches import keep_first

CG_TOLERANCE = 1e-6  # the original's CG tolerance, absolute on ||r||


def solve(model, params, contexts, batches, key, ceu_lambda: float, hessian_samples: int, iterations: int):
    """The system above and its CG solution: (g, v -> H v, damping, x, solver info, sign, scale).

    H v is the batch-mean HVP without the damping; damping = 2 ceu_lambda. The step CEU takes
    is sign * scale * x, sign = -1, scale = 1 / (|F| + |C|); its noise is scaled by `scale` too.
    """
    forget, clean, retain = batches
    before, after = contexts
    n_forget = jnp.sum(forget["weight"] > 0)
    n_clean = 0 if clean is None else jnp.sum(clean["weight"] > 0)
    g_forget = grad_of_batch_means(model, params, before, forget, key)
    g_forget = tree_scale(1.0 / jnp.maximum(n_forget, 1), g_forget)
    g_rem = grad_of_batch_means(model, params, after, retain, key, average=True)
    g = tree_axpy(-1.0, g_rem, g_forget)
    hessian_rows = keep_first(retain, hessian_samples)
    matvec, damping = batch_mean_hvp(model, params, before, hessian_rows, key), 2.0 * ceu_lambda
    x, info = cg_solve(matvec, g, damping, 0.0, iterations, atol=CG_TOLERANCE)
    return g, matvec, damping, x, info, -1.0, 1.0 / jnp.maximum(n_forget + n_clean, 1)
