"""Embedding tables split over a mesh of devices, for training and ranking.

A CF model's memory is its user and item tables (and the optimiser's moments of them, which
mirror the parameter tree). `shard_tables` places every leaf of a pytree whose path names one
of the tables with its rows split over one mesh axis and everything else replicated; the
unchanged jitted training epoch (`erase_jax.train.make_train_epoch`) then runs partitioned by
XLA's SPMD partitioner (GSPMD): each device keeps and updates its slice of rows, and the
gathers of a batch's rows and the scatter of their gradients become collectives. The result
is the same epoch as on one device, to float32 summation order. Ranking against a split item
table is `erase_jax.evaluators.sharded_ranking`.

The same placement serves several processes (`jax.distributed`): a mesh over `jax.devices()`
spans every process's devices, and each process holds the rows of its own devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

TABLE_AXIS = "rows"
TABLES = ("user_embedding", "item_embedding")


def one_axis_mesh(axis: str, n_devices: int | None = None) -> Mesh:
    """A one-axis mesh named `axis` over the first `n_devices` of `jax.devices()` (None: all)."""
    devices = jax.devices()
    n_devices = len(devices) if n_devices is None else n_devices
    if not 1 <= n_devices <= len(devices):
        raise ValueError(f"asked for {n_devices} devices, there are {len(devices)}")
    return Mesh(np.array(devices[:n_devices]), (axis,))


def table_mesh(n_devices: int | None = None) -> Mesh:
    """A one-axis mesh named "rows" over the first `n_devices` of `jax.devices()` (None: all)."""
    return one_axis_mesh(TABLE_AXIS, n_devices)


def table_shardings(tree, mesh: Mesh, tables=TABLES):
    """The `NamedSharding` of every leaf of `tree`: rows split over the mesh for leaves under a
    key named in `tables` (the parameters and their optimiser moments), replicated otherwise.

    Raises ValueError, naming the table, when its row count is not a multiple of the mesh size
    (pad the catalogue, e.g. with never-interacted items, to a multiple of the device count).
    """
    n_shards = mesh.shape[TABLE_AXIS]

    def sharding(path, leaf):
        names = {getattr(entry, "key", getattr(entry, "name", None)) for entry in path}
        if names & set(tables) and np.ndim(leaf) == 2:
            if leaf.shape[0] % n_shards:
                raise ValueError(
                    f"table {jax.tree_util.keystr(path)} has {leaf.shape[0]} rows, not a multiple of "
                    f"the {n_shards} devices it is split over: pad it to a multiple"
                )
            return NamedSharding(mesh, P(TABLE_AXIS, None))
        return NamedSharding(mesh, P())

    return jax.tree_util.tree_map_with_path(sharding, tree)


def shard_tables(tree, mesh: Mesh, tables=TABLES):
    """`tree` placed by `table_shardings`: each process builds, from its own full copy of every
    leaf (host or device; the same values in every process), the slices its devices hold. Works
    with one process and with several (`jax.distributed`), where `jax.device_put` cannot place
    onto another process's devices."""
    return jax.tree.map(_global_array, tree, table_shardings(tree, mesh, tables))


def _global_array(leaf, sharding: NamedSharding) -> jax.Array:
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
