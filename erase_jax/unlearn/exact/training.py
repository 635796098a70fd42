"""Training stacked shards to their early stopping: `train_shards` and `compile_epoch`.

The loop around the compiled shard epoch of `shards.py`: S shards train together, epoch by
epoch, and each stops early on its own validation score (RecBole's rule: stop after
`stopping_step` validations without a gain, keep the best validated parameters). A stopped
shard is frozen by the epoch's update mask, so the others go on exactly as they would alone.
Everything random in a shard's run derives from its seed: its initial parameters and run key
(`shards.init_shards`, `shards.run_keys`), and each epoch's row order (`shards.epoch_orders`,
drawn on the host while the device runs the previous epoch). A one-shard run (an unlearning
request's retrain) runs the unvmapped epoch behind the same stacked interface.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.train import TrainConfig, make_optimizer
from erase_jax.unlearn.exact.shards import (
    ShardData,
    config_key,
    epoch_orders,
    init_shards,
    make_shard_epoch,
    n_batches,
    real_steps,
    run_keys,
    shard_user_rows,
)

# Every shard's key for one epoch: jitted, as it runs once per epoch of every (re)training.
_epoch_keys = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))


@dataclasses.dataclass
class ShardFit:
    params: Any  # best validated parameters, stacked [S, ...]
    record: dict


def train_shards(
    model,
    context,
    data: ShardData,
    seeds: np.ndarray,
    config: TrainConfig,
    validate: Callable[[Any], float] | Sequence[Callable[[Any], float] | None] | None,
    n_items: int,
    init_params: Any = None,
    negatives: str = "all",
    context_axis: int | None = None,
) -> ShardFit:
    """Trains S shards together, each with its own early stopping: from scratch, or from the
    stacked `init_params` (a warm start; the optimiser state is fresh either way).

    `validate(params)` scores one shard's parameters (higher is better), or `validate[s]`
    shard s's (one validator per shard); None trains every shard for `config.epochs` and
    keeps the last parameters (also per shard, where `validate[s]` is None). A warm start's starting
    parameters are never returned: the result has trained at least one epoch on `data`.
    `context_axis` 0: `context` is one model context per shard, stacked (`make_shard_epoch`).
    """
    seeds = np.asarray(seeds, np.int64)
    steps = n_batches(data, config.batch_size)
    epoch_fn = _epoch_for(model, config, n_items, steps, len(seeds), negatives, context_axis)
    params, opt_state = init_shards(model, context, config, seeds, steps, context_axis)
    if init_params is not None:
        params = init_params
        opt_state = jax.vmap(make_optimizer(config, steps).init)(params)
    keys = run_keys(seeds)
    n_shards = len(seeds)
    validators = list(validate) if isinstance(validate, (list, tuple)) else [validate] * n_shards
    if len(validators) != n_shards:
        raise ValueError(f"{len(validators)} validators for {n_shards} shards")
    n_rows = np.asarray(data.n_rows)
    user_rows = shard_user_rows(data, int(data.positives.shape[1])) if config.sampler == "users" else None
    best_params = params
    best_score = np.full(n_shards, -np.inf)
    best_epoch = np.full(n_shards, -1)
    stale = np.zeros(n_shards, np.int64)
    active = np.ones(n_shards, bool)
    epochs_trained = np.zeros(n_shards, np.int64)
    record = {"epoch_seconds": [], "valid_seconds": [], "epoch_loss": []}
    orders = epoch_orders(n_rows, seeds, 0, steps * config.batch_size, user_rows)
    for epoch in range(config.epochs):
        started = time.perf_counter()
        epoch_keys = _epoch_keys(keys, epoch)
        params, opt_state, losses = epoch_fn(params, opt_state, jnp.asarray(active), context, data, jnp.asarray(orders), epoch_keys,
                                             jnp.int32(real_steps(n_rows, active, config.batch_size)))
        # The next epoch's orders are drawn on the host while the device runs this one (the
        # call above returns before it finishes); they depend on (seed, epoch) only.
        orders = epoch_orders(n_rows, seeds, epoch + 1, steps * config.batch_size, user_rows)
        losses = np.asarray(losses)
        record["epoch_seconds"].append(time.perf_counter() - started)
        record["epoch_loss"].append(np.where(active, losses, np.nan).tolist())
        if not np.all(np.isfinite(losses[active])):
            raise FloatingPointError(f"shard training diverged at epoch {epoch + 1}: losses {losses}")
        epochs_trained += active
        validating = (epoch + 1) % config.eval_step == 0 or epoch + 1 == config.epochs
        if not validating or not any(validators):
            continue
        started = time.perf_counter()
        improved = np.zeros(n_shards, bool)
        for s in np.nonzero(active)[0]:
            if validators[s] is None:
                continue
            score = validators[s](jax.tree.map(lambda x: x[s], params))
            if score >= best_score[s]:
                best_score[s], best_epoch[s], stale[s], improved[s] = score, epoch + 1, 0, True
            else:
                stale[s] += 1
        best_params = _where_shards(jnp.asarray(improved), params, best_params)
        active &= stale <= config.stopping_step
        record["valid_seconds"].append(time.perf_counter() - started)
        if not active.any():
            break
    record.update({
        "epochs": epochs_trained.tolist(),
        "best_epoch": best_epoch.tolist(),
        "best_valid": best_score.tolist(),
        "train_seconds": float(sum(record["epoch_seconds"]) + sum(record["valid_seconds"])),
    })
    unvalidated = jnp.asarray([v is None for v in validators])
    return ShardFit(_where_shards(unvalidated, params, best_params), record)


def compile_epoch(model, context, data: ShardData, seeds: np.ndarray, config: TrainConfig, n_items: int, negatives: str = "all",
                  context_axis: int | None = None) -> float:
    """Compiles the epoch that `train_shards` would run on these shapes, without training:
    one call that runs zero steps. Returns the seconds it took.

    After it, a `train_shards` call with the same model, step settings and shapes (an
    unlearning request's retrain) finds the compiled epoch in jit's cache, so its time is
    training time, not compilation.
    """
    seeds = np.asarray(seeds, np.int64)
    steps = n_batches(data, config.batch_size)
    epoch_fn = _epoch_for(model, config, n_items, steps, len(seeds), negatives, context_axis)
    params, opt_state = init_shards(model, context, config, seeds, steps, context_axis)
    started = time.perf_counter()
    orders = jnp.zeros((len(seeds), steps * config.batch_size), jnp.int32)
    keys = _epoch_keys(run_keys(seeds), 0)
    out = epoch_fn(params, opt_state, jnp.ones(len(seeds), bool), context, data, orders, keys, jnp.int32(0))
    jax.block_until_ready(out)
    return time.perf_counter() - started


def _epoch_for(model, config: TrainConfig, n_items: int, steps: int, n_shards: int, negatives: str, context_axis: int | None = None):
    """The stacked-interface epoch for `n_shards` shards: vmapped, or for one shard the
    unvmapped epoch (`_one_shard_as_stacked`)."""
    epoch_fn = make_shard_epoch(model, config_key(config), n_items, config.batch_size, steps, negatives=negatives,
                                vmapped=n_shards > 1, context_axis=context_axis if n_shards > 1 else None)
    return _one_shard_as_stacked(epoch_fn, context_axis) if n_shards == 1 else epoch_fn


@functools.lru_cache(maxsize=16)
def _one_shard_as_stacked(epoch_fn, context_axis: int | None = None):
    """The unvmapped epoch behind the stacked interface: a one-shard retrain (an unlearning
    request) runs without the per-step selects that vmapping needs (see `make_shard_epoch`).
    One jitted call with the unstacking and restacking inside, cached per epoch function so
    that every retrain of these shapes reuses one compile. A stacked context (`context_axis`
    0) is unstacked with the rest."""

    @jax.jit
    def one_shard_stacked(params, opt_state, active, context, data, orders, keys, n_steps):
        first = functools.partial(jax.tree.map, lambda x: x[0])
        n_steps = jnp.where(active[0], n_steps, 0)  # an inactive shard runs no step
        context = first(context) if context_axis == 0 else context
        params, opt_state, loss = epoch_fn(first(params), first(opt_state), active[0], context, first(data), orders[0], keys[0], n_steps)
        stack = functools.partial(jax.tree.map, lambda x: x[None])
        return stack(params), stack(opt_state), loss[None]

    return one_shard_stacked


def _where_shards(mask: jax.Array, new, old):
    """Per shard (leading axis): `new` where mask, else `old`."""
    return jax.tree.map(lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (n.ndim - 1)), n, o), new, old)

