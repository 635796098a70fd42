"""Top-k of inner-product scores with the item table split over a mesh of devices.

For models whose scores are inner products of two tables (BPR, LightGCN, SGL: the
`score_factors` hook), full ranking does not need the whole item table on one device: each
device holds a contiguous slice of the item rows, scores a block of users against its slice,
masks the history pairs that fall in it, keeps its own top k, and the devices' k candidates
are gathered and merged by one more top-k (`jax.lax.all_gather` inside `jax.shard_map`). The
result is the same list as ranking against the whole table: an item in the global top k is in
its own shard's top k. Peak memory per device is `block x n_items / n_devices` scores plus
`n_devices x block x k` candidates; only the [n_users, k] ids leave the device.

With one device this is the ordinary blocked ranking (the merge is a no-op top-k), so
`cf_ranking` uses it for every factor-form model and the sharded path is the tested path.

Ties are broken by the lower item id, as `lax.top_k` does on one table.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from erase_jax.table_sharding import one_axis_mesh

ITEM_AXIS = "items"


def item_mesh(n_devices: int | None = None) -> Mesh:
    """A one-axis mesh named "items" over the first `n_devices` devices (None: all)."""
    return one_axis_mesh(ITEM_AXIS, n_devices)


def padded_item_table(item_table: jax.Array, mesh: Mesh) -> jax.Array:
    """The item table with zero rows appended up to a multiple of the mesh size, its rows split
    over the mesh's "items" axis. Padding rows are masked out of every ranking."""
    n_shards = mesh.shape[ITEM_AXIS]
    extra = -item_table.shape[0] % n_shards
    if extra:
        item_table = jnp.concatenate([item_table, jnp.zeros((extra, item_table.shape[1]), item_table.dtype)])
    return jax.device_put(item_table, NamedSharding(mesh, P(ITEM_AXIS, None)))


def sharded_top_k(user_table, item_table, n_items: int, k: int, block_users, mask_rows, mask_items, mesh: Mesh):
    """int32 [n_blocks, block, k]: per user block, the k items of highest <user, item> score.

    `item_table` is `padded_item_table(...)` (rows >= `n_items` are padding); `block_users`,
    `mask_rows`, `mask_items` are `cf_ranking.RankingInputs` fields (mask row == block marks a
    padding pair). The user table and the blocks are replicated on every device.
    """
    return _sharded_top_k(mesh, n_items, k, user_table, item_table, block_users, mask_rows, mask_items)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _sharded_top_k(mesh, n_items, k, user_table, item_table, block_users, mask_rows, mask_items):
    shard_rows = item_table.shape[0] // mesh.shape[ITEM_AXIS]
    local_k = min(k, shard_rows)

    def per_shard(user_table, items_here, block_users, mask_rows, mask_items):
        first = jax.lax.axis_index(ITEM_AXIS) * shard_rows
        padding = first + jnp.arange(shard_rows) >= n_items

        def one_block(args):
            users, rows, items = args
            scores = user_table[users] @ items_here.T
            scores = jnp.where(padding[None, :], -jnp.inf, scores)
            local = items - first
            local = jnp.where((local >= 0) & (local < shard_rows), local, shard_rows)  # out of shard: dropped
            scores = scores.at[rows, local].set(-jnp.inf, mode="drop")
            values, ids = jax.lax.top_k(scores, local_k)
            return values, ids.astype(jnp.int32) + first

        values, ids = jax.lax.map(one_block, (block_users, mask_rows, mask_items))
        # [n_shards, n_blocks, block, local_k] -> per block row, all shards' candidates side by side
        values = jax.lax.all_gather(values, ITEM_AXIS, axis=2, tiled=True)
        ids = jax.lax.all_gather(ids, ITEM_AXIS, axis=2, tiled=True)
        _, best = jax.lax.top_k(values, k)  # candidates are in shard order = item order: ties keep the lower id
        return jnp.take_along_axis(ids, best, axis=-1)

    return jax.shard_map(
        per_shard,
        mesh=mesh,
        in_specs=(P(), P(ITEM_AXIS, None), P(), P(), P()),
        out_specs=P(),
        check_vma=False,
    )(user_table, item_table, block_users, mask_rows, mask_items)
