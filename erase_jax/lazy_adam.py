"""Lazy (row-sparse) Adam for a table whose step gradient is non-zero in a few rows only.

Adam (Kingma and Ba, ICLR 2015, Algorithm 1, in optax's form) with the moments and the
parameters of a table updated only in the rows a step's gradient reaches, as TF/Keras
`LazyAdam` (TensorFlow Addons) does for embedding tables. For the step's rows R and gradient
rows g_r (t the global step count, from 1):

    m_r <- b1 m_r + (1 - b1) g_r,   v_r <- b2 v_r + (1 - b2) g_r^2          r in R
    theta_r <- theta_r - lr(t - 1) * (m_r / (1 - b1^t)) / (sqrt(v_r / (1 - b2^t)) + eps)

and nothing else changes. Dense Adam also decays the moments of every row outside R (a zero
gradient still multiplies m by b1 and v by b2) and so keeps moving those rows while their
first moment is non-zero; here an untouched row's parameters and moments stay exactly as they
are, so a row that comes back after k idle steps resumes from moments k steps staler than dense
Adam's. With every row touched at every step the two are the same update. Deviation from TF's
LazyAdam: its epsilon is added to sqrt(v_r) before the bias correction (its "epsilon hat"); here
it is added after, as optax's (and torch's) dense Adam, so that the all-rows case is dense Adam.

A row-sparse gradient or update is a `RowSparse(rows [K], values [K, ...])` in the place of the
table's leaf: `rows` padded to a static budget K with any index >= the table's row count (those
entries are dropped, so duplicates are only allowed among the padding). `row_sparse_adam` splits
a parameter tree with `optax.multi_transform`: the tables at `row_sparse_paths` take
`lazy_adam`, everything else optax's Adam with the same constants; `apply_updates` scatters a
`RowSparse` update into its table and adds the others.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class RowSparse(NamedTuple):
    """A table's gradient or update in the rows `rows` [K] only; values [K, ...]."""

    rows: jax.Array
    values: jax.Array


class LazyAdamState(NamedTuple):
    count: jax.Array  # steps taken (every step counts, touched rows or not)
    mu: optax.Updates
    nu: optax.Updates


def lazy_adam(learning_rate: optax.ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999,
              eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam on tables given `RowSparse` gradients (module docstring); returns `RowSparse` updates.

    `learning_rate` is a constant or an optax schedule of the step count (0 at the first step,
    as `optax.adam`'s)."""

    def init(params):
        zeros = lambda p: jnp.zeros_like(p)
        return LazyAdamState(jnp.zeros([], jnp.int32), jax.tree.map(zeros, params), jax.tree.map(zeros, params))

    def update(grads, state, params=None):
        del params
        count = optax.safe_increment(state.count)
        rate = learning_rate(state.count) if callable(learning_rate) else learning_rate
        first, second = 1 - b1 ** count, 1 - b2 ** count  # optax's bias corrections

        def one(grad, mu, nu):
            if not isinstance(grad, RowSparse):  # a masked-out leaf (multi_transform's MaskedNode)
                return grad, mu, nu
            rows = grad.rows
            g = grad.values.astype(mu.dtype)
            m = b1 * mu.at[rows].get(mode="fill", fill_value=0) + (1.0 - b1) * g
            v = b2 * nu.at[rows].get(mode="fill", fill_value=0) + (1.0 - b2) * jnp.square(g)
            step = -rate * ((m / first.astype(m.dtype)) / (jnp.sqrt(v / second.astype(v.dtype)) + eps))
            return (RowSparse(rows, step.astype(grad.values.dtype)), mu.at[rows].set(m, mode="drop"),
                    nu.at[rows].set(v, mode="drop"))

        is_row_sparse = lambda x: isinstance(x, RowSparse)
        parts = jax.tree.map(one, grads, state.mu, state.nu, is_leaf=is_row_sparse)
        is_triple = lambda x: isinstance(x, tuple) and not isinstance(x, RowSparse) and len(x) == 3
        pick = lambda i: jax.tree.map(lambda part: part[i], parts, is_leaf=is_triple)
        return pick(0), LazyAdamState(count, pick(1), pick(2))

    return optax.GradientTransformation(init, update)


def path_label(row_sparse_paths: tuple[tuple[str, ...], ...]):
    """multi_transform's labels: "rows" for the leaves at `row_sparse_paths`, "dense" elsewhere."""
    def labels(tree):
        def label(path, _):
            keys = tuple(getattr(k, "key", getattr(k, "name", None)) for k in path)
            return "rows" if keys in row_sparse_paths else "dense"
        return jax.tree_util.tree_map_with_path(label, tree, is_leaf=lambda x: isinstance(x, RowSparse))
    return labels


def row_sparse_adam(learning_rate: optax.ScalarOrSchedule, b1: float, b2: float, eps: float,
                    row_sparse_paths: tuple[tuple[str, ...], ...]) -> optax.GradientTransformation:
    """optax's Adam on every leaf but those at `row_sparse_paths`, which take `lazy_adam`."""
    if not row_sparse_paths:
        raise ValueError("row_sparse_adam needs at least one row-sparse parameter path")
    return optax.multi_transform({"dense": optax.adam(learning_rate, b1, b2, eps),
                                  "rows": lazy_adam(learning_rate, b1, b2, eps)}, path_label(row_sparse_paths))


def has_lazy_state(opt_state) -> bool:
    """Whether an optimiser state holds a `lazy_adam` state (built by `row_sparse_adam`)."""
    found = []
    jax.tree.map(lambda x: found.append(isinstance(x, LazyAdamState)), opt_state,
                 is_leaf=lambda x: isinstance(x, LazyAdamState))
    return any(found)


def apply_updates(params, updates):
    """optax.apply_updates, with a `RowSparse` update added into its table's rows."""
    def add(param, update):
        if isinstance(update, RowSparse):
            return param.at[update.rows].add(update.values.astype(param.dtype), mode="drop")
        return optax.apply_updates(param, update)
    return jax.tree.map(add, params, updates, is_leaf=lambda x: isinstance(x, RowSparse))


def get_path(tree, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree, path: tuple[str, ...], value):
    """A copy of the nested dict `tree` with the leaf at `path` replaced (the rest shared)."""
    if not path:
        return value
    return {**tree, path[0]: set_path(tree[path[0]], path[1:], value)}
