"""Hessian-vector products by forward-over-reverse differentiation (Pearlmutter's trick)."""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.extend import core as jax_core

Path = tuple[str, ...]


def hvp(loss_fn: Callable, params, v):
    """H v for the Hessian H of the scalar `loss_fn` at `params` (any pytree).

    Forward-over-reverse (`jax.jvp` of `jax.grad`). A loss that forward mode cannot
    differentiate (a `jax.custom_vjp` inside, like the graph product of LightGCN and SGL) gets
    reverse-over-reverse instead, the VJP of the gradient, which equals H v as H is symmetric.
    """
    if supports_forward_mode(loss_fn, params):
        return jax.jvp(jax.grad(loss_fn), (params,), (v,))[1]
    return jax.vjp(jax.grad(loss_fn), params)[1](v)[0]


def hvp_operator(loss_fn: Callable, params) -> Callable:
    """v -> H v at fixed `params`: the gradient is linearised once, each product reuses it.

    `jax.linearize` of the gradient, or its `jax.vjp` where forward mode is unavailable (`hvp`).
    """
    if supports_forward_mode(loss_fn, params):
        return jax.linearize(jax.grad(loss_fn), params)[1]
    gradient_vjp = jax.vjp(jax.grad(loss_fn), params)[1]
    return lambda v: gradient_vjp(v)[0]


def supports_forward_mode(loss_fn: Callable, params) -> bool:
    """False when the loss contains a `jax.custom_vjp`, which forward mode cannot differentiate.

    JAX only reports that when lowering, too late to switch, so the loss's jaxpr is searched.
    """
    return not _contains_custom_vjp(jax.make_jaxpr(loss_fn)(params).jaxpr)


def _contains_custom_vjp(jaxpr) -> bool:
    """Whether a `custom_vjp_call` occurs in the jaxpr or in any jaxpr nested in its equations."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "custom_vjp_call":
            return True
        if any(_contains_custom_vjp(inner) for inner in jax_core.jaxprs_in_params(eqn.params)):
            return True
    return False
