"""Vector arithmetic on pytrees (the solvers' vectors are pytrees)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Path = tuple[str, ...]


def tree_vdot(a, b) -> jax.Array:
    return sum((jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))), jnp.float32(0))


def tree_norm(a) -> jax.Array:
    return jnp.sqrt(tree_vdot(a, a))


def tree_axpy(alpha, x, y):
    """alpha * x + y."""
    return jax.tree.map(lambda xi, yi: alpha * xi + yi, x, y)


def tree_scale(alpha, x):
    return jax.tree.map(lambda xi: alpha * xi, x)
