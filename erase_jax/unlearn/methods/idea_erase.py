"""IDEA's compat="erase" arithmetic: the original's Newton system, quirks included (detail spec
section 7; stated, with its deviations, in the `idea` module docstring).

    d   = g_C - g_F,  g_F, g_C = sums of F's and C's 256-row batch-mean gradients / |F|, / |C|
                      (graph before; g_C = 0 without C)
    A   = Hessian of the row-weighted mean loss over the first min(|R|, idea_hessian_samples)
          rows of R (graph before) + lambda I
    A x = d by CG to an ABSOLUTE tolerance of 1e-6,  theta <- theta + x + sigma xi   (sign Q-SIGN)

The noise calibration that follows (the original DIVIDES by the Gaussian-mechanism factor) is
in `idea`, beside the correct mode's.
"""

from __future__ import annotations

import jax.numpy as jnp

from erase_jax.unlearn.influence.hvp import hvp_operator
from erase_jax.unlearn.influence.solvers import cg_solve
from erase_jax.unlearn.influence.trees import tree_axpy, tree_scale
from erase_jax.unlearn.methods.batch_means import grad_of_batch_means
from erase_jax.unlearn.methods.batches import keep_first

CG_TOLERANCE = 1e-6  # the original's CG tolerance, absolute on ||r||


def solve(model, params, contexts, batches, key, damping: float, hessian_samples: int, iterations: int):
    """(x, solver info) of A x = d above, lambda = `damping`."""
    forget, clean, retain = batches
    before, _ = contexts
    n_forget = jnp.maximum(jnp.sum(forget["weight"] > 0), 1)
    g = tree_scale(-1.0 / n_forget, grad_of_batch_means(model, params, before, forget, key))
    if clean is not None:
        n_clean = jnp.maximum(jnp.sum(clean["weight"] > 0), 1)
        g = tree_axpy(1.0 / n_clean, grad_of_batch_means(model, params, before, clean, key), g)
    hessian_rows = keep_first(retain, hessian_samples)
    hessian_loss = lambda p: model.loss(p, before, hessian_rows, key)  # row-weighted mean over K
    return cg_solve(hvp_operator(hessian_loss, params), g, damping, 0.0, iterations, atol=CG_TOLERANCE)
