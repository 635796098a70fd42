"""GIF's compat="erase" arithmetic: the original's influence recursion, quirks included (detail
spec section 5; stated, with its deviations, in the `gif` module docstring).

`solve` returns h_T of h_0 = delta, h_t = delta + h_{t-1} - (d / s) H h_{t-1}, with delta = g_F +
g_orig - g_rem from sums of 256-row batch means (`batch_means`) and H the average batch-mean
Hessian of R's first rows; GIF adds h_T to the parameters without dividing by s (Q-GIF-3).
"""

from __future__ import annotations

import jax.numpy as jnp

from erase_jax.unlearn.influence.solvers import richardson_solve
from erase_jax.unlearn.influence.trees import tree_axpy, tree_scale
from erase_jax.unlearn.methods.batch_means import batch_mean_hvp, grad_of_batch_means
from erase_jax.unlearn.methods.batches import keep_first


def solve(model, params, contexts, batches, key, damping: float, scale_factor: float, hessian_samples: int,
          iterations: int):
    """(h_T, solver info) of the recursion above; d = `damping`, s = `scale_factor`."""
    forget, clean, retain = batches
    before, after = contexts
    n_forget = jnp.maximum(jnp.sum(forget["weight"] > 0), 1)
    g_forget = tree_scale(1.0 / n_forget, grad_of_batch_means(model, params, before, forget, key))
    g_orig = grad_of_batch_means(model, params, before, retain, key, average=True)
    g_rem = grad_of_batch_means(model, params, after, retain, key, average=True)
    delta = tree_axpy(-1.0, g_rem, tree_axpy(1.0, g_orig, g_forget))
    ratio = damping / scale_factor
    matvec = batch_mean_hvp(model, params, before, keep_first(retain, hessian_samples), key)
    # h <- delta + h - ratio H h  ==  Richardson on (H) x = delta / ratio with step ratio, x_0 = delta
    return richardson_solve(matvec, tree_scale(1.0 / ratio, delta), 0.0, ratio, iterations, x0=delta)
