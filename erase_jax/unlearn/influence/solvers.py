"""Solvers for (H + damping I) x = g as `lax.while_loop`s, with divergence detection."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from erase_jax.unlearn.influence.trees import (
    tree_axpy,
    tree_norm,
    tree_scale,
    tree_vdot,
)

Path = tuple[str, ...]


class SolverStatus(enum.IntEnum):
    """How a solve ended. Codes >= NONFINITE end the solve early: the caller decides about x."""

    CONVERGED = 0  # residual norm <= tolerance
    MAX_ITERATIONS = 1  # iteration limit reached (the normal end of a fixed-length recursion)
    NONFINITE = 2  # NaN or Inf appeared; x is the last finite iterate
    RESIDUAL_GROWTH = 3  # residual norm > divergence_factor * initial residual norm
    NOT_POSITIVE_DEFINITE = 4  # CG met p^T A p <= 0; x is the iterate before that step (truncated CG)


class SolverInfo(NamedTuple):
    iterations: jax.Array  # int32: operator applications that were taken
    residual_norm: jax.Array  # float32 ||g - A x|| of the returned x
    residual_history: jax.Array  # float32 [max_iter + 1]: entry k after k iterations, NaN beyond
    status: jax.Array  # int32 SolverStatus


def cg_solve(
    matvec: Callable,
    g,
    damping: float = 0.0,
    tol: float = 1e-5,
    max_iter: int = 100,
    atol: float = 0.0,
    divergence_factor: float = 1e3,
):
    """Conjugate gradients for (H + damping I) x = g, H = `matvec` symmetric; returns (x, SolverInfo).

    Hestenes & Stiefel (1952); Nocedal & Wright, Numerical Optimization, Algorithm 5.2. Starts
    at x = 0 and stops once ||r|| <= max(tol * ||g||, atol) (scipy's rule), after `max_iter`
    steps, or on divergence: p^T A p <= 0 (A not positive definite along p; the step is not
    taken), a non-finite value (not taken), or ||r|| > divergence_factor * ||g||.
    """
    operator = _damped(matvec, damping)
    g_norm = tree_norm(g)
    threshold = jnp.maximum(tol * g_norm, atol)
    history = jnp.full(max_iter + 1, jnp.nan, jnp.float32).at[0].set(g_norm)
    zero = tree_scale(0.0, g)
    initial_status = jnp.where(max_iter == 0, SolverStatus.MAX_ITERATIONS, _RUNNING)
    initial_status = jnp.where(g_norm <= threshold, SolverStatus.CONVERGED, initial_status)

    def body(state):
        x, r, p, rho, k, status, history = state
        q = operator(p)
        curvature = tree_vdot(p, q)
        alpha = rho / curvature
        x_next, r_next = tree_axpy(alpha, p, x), tree_axpy(-alpha, q, r)
        rho_next = tree_vdot(r_next, r_next)
        residual = jnp.sqrt(rho_next)
        status = _classify(residual, threshold, g_norm, divergence_factor, k + 1, max_iter)
        status = jnp.where(curvature <= 0, SolverStatus.NOT_POSITIVE_DEFINITE, status)
        status = jnp.where(jnp.isfinite(curvature) & jnp.isfinite(rho_next), status, SolverStatus.NONFINITE)
        taken = (status != SolverStatus.NOT_POSITIVE_DEFINITE) & (status != SolverStatus.NONFINITE)
        p_next = tree_axpy(rho_next / rho, p, r_next)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(taken, a, b), new, old)
        history = history.at[k + 1].set(jnp.where(taken, residual, jnp.nan))
        rho = jnp.where(taken, rho_next, rho)
        return keep(x_next, x), keep(r_next, r), keep(p_next, p), rho, k + taken, status, history

    state = (zero, g, g, g_norm**2, jnp.int32(0), initial_status, history)
    x, _, _, rho, k, status, history = jax.lax.while_loop(lambda s: s[5] == _RUNNING, body, state)
    return x, SolverInfo(k, jnp.sqrt(rho), history, status.astype(jnp.int32))


def richardson_solve(
    matvec: Callable,
    g,
    damping: float,
    step: float,
    iterations: int,
    x0=None,
    tol: float = 0.0,
    divergence_factor: float = 1e3,
):
    """Richardson iteration x <- x + step * (g - (H + damping I) x); returns (x, SolverInfo).

    The fixed-step recursion of the original's IDEA (step = 1 / damping there, on H alone):
    it converges iff 0 < step * eig(H + damping I) < 2 for every eigenvalue; otherwise the
    residual grows geometrically and the loop stops with RESIDUAL_GROWTH (or NONFINITE).
    Starts at x0 (default 0), runs `iterations` steps unless ||r|| <= tol * ||g|| first.
    """
    operator = _damped(matvec, damping)
    x = tree_scale(0.0, g) if x0 is None else x0
    g_norm = tree_norm(g)
    residual = jax.tree.map(jnp.subtract, g, operator(x))
    first_norm = tree_norm(residual)
    reference = jnp.maximum(g_norm, first_norm)
    threshold = tol * g_norm
    history = jnp.full(iterations + 1, jnp.nan, jnp.float32).at[0].set(first_norm)
    initial_status = jnp.where(iterations == 0, SolverStatus.MAX_ITERATIONS, _RUNNING)
    initial_status = jnp.where(first_norm <= threshold, SolverStatus.CONVERGED, initial_status)

    def body(state):
        x, r, r_norm, k, status, history = state
        x_next = tree_axpy(step, r, x)
        r_next = jax.tree.map(jnp.subtract, g, operator(x_next))
        r_next_norm = tree_norm(r_next)
        status = _classify(r_next_norm, threshold, reference, divergence_factor, k + 1, iterations)
        taken = status != SolverStatus.NONFINITE
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(taken, a, b), new, old)
        history = history.at[k + 1].set(jnp.where(taken, r_next_norm, jnp.nan))
        return keep(x_next, x), keep(r_next, r), jnp.where(taken, r_next_norm, r_norm), k + taken, status, history

    state = (x, residual, first_norm, jnp.int32(0), initial_status, history)
    x, _, r_norm, k, status, history = jax.lax.while_loop(lambda s: s[4] == _RUNNING, body, state)
    return x, SolverInfo(k, r_norm, history, status.astype(jnp.int32))


def lissa_solve(
    matvec: Callable, g, damping: float, scale: float, iterations: int, divergence_factor: float = 1e3
):
    """LiSSA / truncated Neumann series with the GIF paper's damping d and scale s.

    Agarwal, Bullins & Hazan, "Second-Order Stochastic Optimization for Machine Learning in
    Linear Time", JMLR 2017, as Koh & Liang (2017) and GIF (Wu et al., WWW 2023) use it:
    h_0 = g, h_t = g + (1 - d) h_{t-1} - H h_{t-1} / s, result x = h_T / s.
    Its fixed point solves (H + d s I) x = g, i.e. damping d * s in the notation of the other
    solvers, and it converges iff eig(H) / s + d lies in (0, 2) for every eigenvalue: s must
    exceed about half the largest eigenvalue of H. Here the full-batch form, written as the
    Richardson iteration it is: x_t = x_{t-1} + (g - (H + d s I) x_{t-1}) / s with x_0 = g / s.
    """
    x0 = tree_scale(1.0 / scale, g)
    return richardson_solve(
        matvec, g, damping * scale, 1.0 / scale, iterations, x0=x0, divergence_factor=divergence_factor
    )


_RUNNING = -1


def _damped(matvec: Callable, damping: float) -> Callable:
    return lambda v: tree_axpy(damping, v, matvec(v))


def _classify(residual, threshold, reference, divergence_factor, k, max_iter):
    """The status after iteration k from the new residual norm (RUNNING if none applies)."""
    status = jnp.where(k >= max_iter, SolverStatus.MAX_ITERATIONS, _RUNNING)
    status = jnp.where(residual <= threshold, SolverStatus.CONVERGED, status)
    status = jnp.where(residual > divergence_factor * reference, SolverStatus.RESIDUAL_GROWTH, status)
    return jnp.where(jnp.isfinite(residual), status, SolverStatus.NONFINITE)
