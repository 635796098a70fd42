"""Shadows split over devices: the leading (shadow) axis of stacked arrays over a device mesh.

K shadows trained as one vmap are K independent models stacked on a leading axis. Placing
every stacked array (parameters, optimiser state, padded data, per-shadow contexts) with that
axis split over a one-axis mesh ("shadows") lets the unchanged jitted, vmapped epoch run
partitioned by XLA's SPMD partitioner: each device trains its own K / n_devices shadows and,
the shadows being independent, no collective is needed. The result equals the one-device run
to float32 summation order. Arrays without the shadow axis (a shared data-free context) are
replicated.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from erase_jax.table_sharding import one_axis_mesh

SHADOW_AXIS = "shadows"


def shadow_mesh(n_devices: int | None = None) -> Mesh:
    """A one-axis mesh named "shadows" over the first `n_devices` of `jax.devices()` (None: all)."""
    return one_axis_mesh(SHADOW_AXIS, n_devices)


def split_shadows(tree, mesh: Mesh):
    """`tree` with every array leaf's leading axis split over the mesh (each device a block of
    consecutive shadows); ValueError when that axis is not a multiple of the mesh size."""
    n_devices = mesh.shape[SHADOW_AXIS]

    def place(leaf):
        if np.ndim(leaf) == 0:
            return jax.device_put(leaf, NamedSharding(mesh, P()))
        if leaf.shape[0] % n_devices:
            raise ValueError(f"{leaf.shape[0]} shadows cannot be split evenly over {n_devices} devices: "
                             f"use a number of shadows (and group size) that is a multiple of {n_devices}")
        return jax.device_put(leaf, NamedSharding(mesh, P(SHADOW_AXIS)))

    return jax.tree.map(place, tree)
