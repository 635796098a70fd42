"""Data-parallel losses: a row-mean batch loss split over the local devices."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

Path = tuple[str, ...]


def pad_rows(batch: dict, multiple: int) -> dict:
    """The batch with weight-0 rows (index 0 everywhere) appended up to a multiple of `multiple`."""
    n = jax.tree.leaves(batch)[0].shape[0]
    extra = -n % multiple
    if extra == 0:
        return batch
    return jax.tree.map(lambda a: jnp.concatenate([a, jnp.zeros((extra, *a.shape[1:]), a.dtype)]), batch)


def sharded_loss(loss_fn: Callable, n_devices: int | None = None) -> Callable:
    """(params, batch) -> loss_fn(params, batch), with the batch's rows split over `n_devices`.

    `loss_fn` must be a weighted mean over the batch's rows, sum_i w_i l_i / max(sum_i w_i,
    1e-12) with w = batch["weight"] (BPR's and LightGCN's convention). Each device computes
    its shard's mean and weight; their weighted combination via `psum` is the same mean, and
    so are its gradient and HVP (autodiff transposes `psum`). Parameters are replicated. The
    batch's row count must be a multiple of `n_devices` (see `pad_rows`). With one device this
    returns `loss_fn` itself. A loss that is not a row-separable mean is not preserved
    (LightGCN's regulariser takes the norm of the whole batch; SGL sums over the batch).
    """
    n_devices = jax.local_device_count() if n_devices is None else n_devices
    if n_devices == 1:
        return loss_fn
    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("rows",))

    def shard_loss(params, batch):
        shard_weight = jnp.sum(batch["weight"])
        total = jax.lax.psum(loss_fn(params, batch) * shard_weight, "rows")
        return total / jnp.maximum(jax.lax.psum(shard_weight, "rows"), 1e-12)

    return jax.shard_map(shard_loss, mesh=mesh, in_specs=(P(), P("rows")), out_specs=P())


_DATA_PARALLEL_DEVICES: int | None = None


def set_data_parallel_devices(n_devices: int | None) -> None:
    """Caps the devices `data_parallel_loss` uses (None: all local devices). Functions already
    compiled keep their split until `jax.clear_caches()`."""
    global _DATA_PARALLEL_DEVICES
    _DATA_PARALLEL_DEVICES = n_devices


def loss_is_row_mean(model) -> bool:
    """Whether `model.loss` is a weighted mean of per-row terms (what `sharded_loss` preserves).

    A model says so with a `loss_is_row_mean` attribute (BPR and LightGCN decide it from their
    regulariser: the squared form is per row, the norm form is not); others are assumed not to.
    """
    return bool(getattr(model, "loss_is_row_mean", False))


def data_parallel_loss(model, context, key, n_devices: int | None = None) -> Callable:
    """(params, batch) -> model.loss(params, context, batch, key), data-parallel where exact.

    With several local devices and a row-mean loss, the batch's rows are split over the
    devices (`sharded_loss`, padded with weight-0 rows to a multiple of the device count), so
    every gradient and HVP of it sums over the devices' shards; otherwise the plain loss. The
    result is the same function either way (to float32 rounding), so methods call this
    unconditionally and run unchanged on one device.
    """
    def plain(params, batch):
        return model.loss(params, context, batch, key)

    n_devices = data_parallel_devices(model, n_devices)
    if n_devices == 1:
        return plain
    sharded = sharded_loss(plain, n_devices)
    return lambda params, batch: sharded(params, pad_rows(batch, n_devices))


def data_parallel_devices(model, n_devices: int | None = None) -> int:
    """How many devices `model`'s batches are split over: 1 unless its loss is a row mean."""
    if not loss_is_row_mean(model):
        return 1
    return n_devices or _DATA_PARALLEL_DEVICES or jax.local_device_count()
