"""SCIF's compat="erase" arithmetic: the original's gradient normalisation and its stochastic CG
`cg_inv_hvp`, control flow included (detail spec section 2; stated, with its deviations, in the
`scif` module docstring).

    v = sum_C grad mean(b) / Rc + sum_k grad mean(b_k[:Rc_k]) / Rc_k - sum_F grad mean(b) / Rc
    Rc = max(1, retain_samples_used_for_update |F| S - |C|),  S = max(1, |F| - |C|)

with F and C in loader batches of 256 and R in batches b_k of 16, each truncated to the
remaining budget Rc_k (Rc_0 = Rc, Rc_{k+1} = Rc_k - |b_k|, none once it is <= 0). CG then takes
one step per mini-batch with the operator H_b / |b| + lambda I: each C batch ceil(L / 16) times
with p frozen (Q-SCIF-2/3), then one step per R batch, within samples_wanted_constant S rows.
SCIF applies theta_P <- theta_P - x / |R|. Everything sees `context_before`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from erase_jax.unlearn.influence.blocks import ParameterBlock
from erase_jax.unlearn.influence.hvp import hvp
from erase_jax.unlearn.influence.solvers import SolverInfo, SolverStatus
from erase_jax.unlearn.influence.trees import tree_axpy, tree_norm, tree_scale, tree_vdot
from erase_jax.unlearn.methods.base import Batch
from erase_jax.unlearn.methods.batches import LOADER_BATCH, keep_first, loader_batches, shuffle_rows

ERASE_RETAIN_BATCH = 16  # SCIF's retain loader batch, also the CG chunk size
ERASE_MIN_CURVATURE = 1e-10  # the original skips a CG step when |p^T A p| is below this


def solve(model, params, context_before, batches, block: ParameterBlock, key, damping: float, cg_tol: float,
          retain_samples_used_for_update: int, samples_wanted_constant: int):
    """(x, tau, solver info): the original's solution over `block` and its step size tau = 1 / |R|."""
    forget, clean, retain = batches
    forget_key, clean_key, retain_key, cg_clean_key, cg_retain_key, loss_key = jax.random.split(key, 6)
    n_forget, n_retain = jnp.sum(forget["weight"] > 0), jnp.sum(retain["weight"] > 0)
    n_clean = 0 if clean is None else jnp.sum(clean["weight"] > 0)
    n_sensitive = jnp.maximum(1, n_forget - n_clean)
    rc = jnp.maximum(1, retain_samples_used_for_update * n_forget * n_sensitive - n_clean).astype(jnp.float32)

    def chunk_loss(values, chunk, step_key):
        return model.loss(block.insert(params, values), context_before, chunk, step_key)

    def sum_of_chunk_means(values, chunks, divisors):
        losses = jax.vmap(lambda chunk: chunk_loss(values, chunk, loss_key))(chunks)
        return jnp.sum(losses / divisors)

    values = block.values(params)
    gradient = jax.grad(sum_of_chunk_means)
    forget_chunks = loader_batches(shuffle_rows(forget, forget_key), LOADER_BATCH)
    retain_chunks, retain_divisors = _budgeted_retain_chunks(shuffle_rows(retain, retain_key), rc)
    v = tree_axpy(-1.0, gradient(values, forget_chunks, rc), gradient(values, retain_chunks, retain_divisors))
    cg_clean_chunks = None
    if clean is not None:
        v = tree_axpy(1.0, gradient(values, loader_batches(shuffle_rows(clean, clean_key), LOADER_BATCH), rc), v)
        cg_clean_chunks = loader_batches(shuffle_rows(clean, cg_clean_key), LOADER_BATCH)

    def chunk_hvp(chunk, vector, step):
        return hvp(lambda vals: chunk_loss(vals, chunk, jax.random.fold_in(loss_key, step)), values, vector)

    cg = _EraseCG(chunk_hvp, damping, cg_tol, samples_wanted_constant * n_sensitive)
    cg_retain_chunks = loader_batches(shuffle_rows(retain, cg_retain_key), ERASE_RETAIN_BATCH)
    x, info = cg.solve(v, cg_clean_chunks, cg_retain_chunks)
    return x, 1.0 / jnp.maximum(n_retain, 1), info


def _budgeted_retain_chunks(retain: Batch, rc):
    """Retain batches of 16 truncated to the remaining budget, and their divisors Rc_k (Q7)."""
    chunks = loader_batches(retain, ERASE_RETAIN_BATCH)
    n_rows = jnp.sum(chunks["weight"] > 0, axis=1)
    remaining = rc - jnp.minimum(jnp.cumsum(n_rows) - n_rows, rc)  # Rc_k before batch k
    kept = jnp.clip(jnp.minimum(n_rows, remaining), 0)
    return jax.vmap(keep_first)(chunks, kept), jnp.where(kept > 0, remaining, 1.0)


class _CGState(NamedTuple):
    x: tuple
    r: tuple
    p: tuple
    rho: jax.Array
    seen: jax.Array  # rows whose HVPs were requested so far (the budget counter)
    steps: jax.Array
    stop: jax.Array
    left_clean_phase: jax.Array
    status: jax.Array
    history: jax.Array


@dataclasses.dataclass(frozen=True)
class _EraseCG:
    """The original's `cg_inv_hvp` (detail spec section 2, CG_SCIF), control flow included.

    chunk_hvp(chunk, vector, step) is H_b vector for the Hessian of the chunk's mean loss.
    """

    chunk_hvp: Callable
    damping: float
    tol: float
    budget: jax.Array

    def solve(self, v, clean_chunks, retain_chunks):
        n_clean_chunks = 0 if clean_chunks is None else clean_chunks["weight"].shape[0]
        max_steps = n_clean_chunks * LOADER_BATCH // ERASE_RETAIN_BATCH + retain_chunks["weight"].shape[0]
        rho = tree_vdot(v, v)
        state = _CGState(
            x=tree_scale(0.0, v),
            r=v,
            p=v,
            rho=rho,
            seen=jnp.int32(0),
            steps=jnp.int32(0),
            stop=~jnp.isfinite(rho),  # the original crashes here; no update is applied
            left_clean_phase=jnp.bool_(False),
            status=jnp.where(jnp.isfinite(rho), SolverStatus.MAX_ITERATIONS, SolverStatus.NONFINITE),
            history=jnp.full(max_steps + 1, jnp.nan, jnp.float32).at[0].set(jnp.sqrt(rho)),
        )
        if clean_chunks is not None:
            state = _for_each_chunk(clean_chunks, state, self._clean_chunk)
        state = _for_each_chunk(retain_chunks, state, self._retain_chunk)
        residual = jnp.sqrt(tree_vdot(state.r, state.r))
        status = jnp.where(
            (state.status == SolverStatus.MAX_ITERATIONS) & (residual < self.tol), SolverStatus.CONVERGED, state.status
        )
        return state.x, SolverInfo(state.steps, residual, state.history, status.astype(jnp.int32))

    def _step(self, s: _CGState, chunk: Batch, n_rows):
        """One CG step on the chunk's first min(n_rows, budget - seen) rows; returns (state, leave)."""
        over_budget = s.seen >= self.budget
        used = jnp.minimum(n_rows, self.budget - s.seen)
        q = self.chunk_hvp(keep_first(chunk, used), s.p, s.steps)
        q = tree_axpy(self.damping, s.p, tree_scale(1.0 / jnp.maximum(used, 1), q))  # H_b/|b| + lambda (Q-SCIF-1)
        curvature = tree_vdot(s.p, q)
        unusable = ~jnp.isfinite(curvature) | (jnp.abs(curvature) < ERASE_MIN_CURVATURE)
        negative = ~unusable & (curvature < 0)
        take = ~over_budget & ~unusable & ~negative
        alpha = s.rho / curvature
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(take, a, b), new, old)
        s = s._replace(
            x=keep(tree_axpy(alpha, s.p, s.x), s.x),
            r=keep(tree_axpy(-alpha, q, s.r), s.r),
            seen=jnp.where(over_budget, s.seen, s.seen + used),
            steps=s.steps + take,
            stop=s.stop | over_budget | negative,
            status=jnp.where(negative, SolverStatus.NOT_POSITIVE_DEFINITE, s.status),
        )
        s = s._replace(history=s.history.at[s.steps].set(jnp.where(take, tree_norm(s.r), s.history[s.steps])))
        return s, over_budget | unusable | negative

    def _refresh_direction(self, s: _CGState) -> tuple[_CGState, jax.Array]:
        """p <- r + beta p, rho <- r.r unless ||r|| < tol; returns (state, converged)."""
        rho = tree_vdot(s.r, s.r)
        converged = jnp.sqrt(rho) < self.tol
        p = jax.tree.map(lambda a, b: jnp.where(converged, b, a), tree_axpy(rho / s.rho, s.p, s.r), s.p)
        s = s._replace(
            p=p,
            rho=jnp.where(converged, s.rho, rho),
            stop=s.stop | ~jnp.isfinite(rho),
            status=jnp.where(jnp.isfinite(rho), s.status, SolverStatus.NONFINITE),
        )
        return s, converged

    def _clean_chunk(self, s: _CGState, chunk: Batch, n_rows):
        """Phase A: ceil(L/16) steps with the SAME chunk and a frozen p (Q-SCIF-2/3), then one refresh."""
        active = ~s.stop & ~s.left_clean_phase

        def repeat(carry):
            i, _, state = carry
            state, leave = self._step(state, chunk, n_rows)
            return i + 1, leave, state

        def process(s):
            repeats = (n_rows + ERASE_RETAIN_BATCH - 1) // ERASE_RETAIN_BATCH
            _, _, s = jax.lax.while_loop(lambda c: (c[0] < repeats) & ~c[1], repeat, (0, jnp.bool_(False), s))
            s, converged = self._refresh_direction(s)
            return s._replace(left_clean_phase=converged)

        return jax.lax.cond(active, process, lambda s: s, s)

    def _retain_chunk(self, s: _CGState, chunk: Batch, n_rows):
        """Phase B: one step per retain batch; p refreshed after a taken step unless converged."""

        def process(s):
            before = s.steps
            s, _ = self._step(s, chunk, n_rows)
            return jax.lax.cond(s.steps > before, lambda s: self._refresh_direction(s)[0], lambda s: s, s)

        return jax.lax.cond(~s.stop, process, lambda s: s, s)


def _for_each_chunk(chunks: Batch, state: _CGState, visit) -> _CGState:
    """visit(state, chunk, n_real_rows) over the chunks holding real rows, in order."""

    def body(k, state):
        chunk = jax.tree.map(lambda a: a[k], chunks)
        n_rows = jnp.sum(chunk["weight"] > 0)
        return jax.lax.cond(n_rows > 0, lambda s: visit(s, chunk, n_rows), lambda s: s, state)

    return jax.lax.fori_loop(0, chunks["weight"].shape[0], body, state)
