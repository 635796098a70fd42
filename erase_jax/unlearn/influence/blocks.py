"""Parameter blocks: a loss restricted to some leaves of the parameters, or some rows of one leaf."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from erase_jax.models.cf.base import USER_EMBEDDING  # noqa: F401  (the CF models' user table)

Path = tuple[str, ...]


@struct.dataclass
class ParameterBlock:
    """Some leaves of a parameter pytree, each whole (`rows` None) or restricted to some rows.

    Row indices outside the leaf (e.g. `n_rows`, used as padding to keep shapes fixed) read as
    zeros and are never written, so a padded block behaves like the block of its real rows.
    Rows must be unique: `insert` then sets each row exactly once.
    """

    paths: tuple[Path, ...] = struct.field(pytree_node=False)
    rows: tuple[jax.Array | None, ...]

    def values(self, params) -> tuple[jax.Array, ...]:
        """The block's entries as a tuple of dense arrays, one per path."""
        return tuple(
            leaf if rows is None else leaf.at[rows].get(mode="fill", fill_value=0)
            for leaf, rows in zip(self._leaves(params), self.rows)
        )

    def insert(self, params, values):
        """`params` with the block's entries replaced by `values`."""
        for path, rows, leaf, value in zip(self.paths, self.rows, self._leaves(params), values):
            params = _replace_leaf(params, path, value if rows is None else leaf.at[rows].set(value, mode="drop"))
        return params

    def _leaves(self, params):
        return [_get_leaf(params, path) for path in self.paths]


def leaf_block(*paths: Path) -> ParameterBlock:
    """Whole leaves, e.g. `leaf_block(USER_EMBEDDING)`."""
    return ParameterBlock(tuple(tuple(p) for p in paths), (None,) * len(paths))


def rows_block(path: Path, rows) -> ParameterBlock:
    """Rows `rows` (unique; out-of-range entries are padding) of the leaf at `path`."""
    return ParameterBlock((tuple(path),), (jnp.asarray(rows, jnp.int32),))


def user_rows_block(rows) -> ParameterBlock:
    """The given rows of a CF model's user-embedding table."""
    return rows_block(USER_EMBEDDING, rows)


def all_leaves_block(params) -> ParameterBlock:
    """Every leaf of a parameter pytree of nested dicts and lists."""
    paths = [tuple(getattr(k, "key", getattr(k, "idx", None)) for k in path)
             for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    return leaf_block(*paths)


def loss_on_block(loss_fn: Callable, params, block: ParameterBlock) -> Callable:
    """block values -> loss_fn(params with the block replaced): the loss restricted to the block.

    Its gradient is the full gradient's block entries, its Hessian the block's principal
    submatrix of the full Hessian.
    """
    return lambda values: loss_fn(block.insert(params, values))


def apply_update(params, block: ParameterBlock, delta):
    """`params` with `delta` (shaped like `block.values(params)`) added to the block's entries."""
    for path, rows, value in zip(block.paths, block.rows, delta):
        leaf = _get_leaf(params, path)
        updated = leaf + value if rows is None else leaf.at[rows].add(value, mode="drop")
        params = _replace_leaf(params, path, updated)
    return params


def _get_leaf(tree, path: Path):
    for key in path:
        tree = tree[key]
    return tree


def _replace_leaf(tree, path: Path, value):
    if not path:
        return value
    replaced = _replace_leaf(tree[path[0]], path[1:], value)
    if isinstance(tree, list):
        return [replaced if i == path[0] else leaf for i, leaf in enumerate(tree)]
    return {**tree, path[0]: replaced}
