"""K submodels of one architecture, stacked: their padded data and one `jax.vmap`ped epoch.

Exact unlearning (SISA, RecEraser) trains one submodel per data shard. Here the K shards'
parameters are stacked along a leading axis ([K, ...]) and one jitted epoch (a `fori_loop`
over batches) vmaps the base model's loss, gradient and optimiser step over the shards, so K
small models cost one compiled call per epoch. An epoch draws all its batches' negatives
before the loop, one key per batch. The loop over epochs, with each shard's early stopping,
is `training.py`.

Each shard's data is padded to a common shape: rows to the largest shard (`ShardData`), the
epoch to the largest shard's number of batches. Padding rows have weight 0, and a step whose
batch holds no real row leaves that shard's parameters AND optimiser state untouched (Adam's
momentum would otherwise keep moving them), so a shard trains exactly as it would alone.
The epoch loop stops after the last batch that holds a real row of an active shard (a shard's
rows come first in its order; the bound is a traced argument, so one compiled epoch still
serves every shard): a one-shard retrain runs its own number of batches, not the largest
shard's, and the ensemble stops running the padding once its largest shards have stopped.
A stopped shard is frozen by the same update mask.

Negatives are drawn against the shard's own positives: a submodel must depend on its shard's
data only, or forgetting an interaction of another shard would have to retrain it too. They
are drawn from all items (`negatives="all"`) or, as the RecEraser code does, only from the
items that occur in the shard (`"shard_items"`): an item the shard never saw then keeps its
initial (near-zero) embedding in that submodel instead of being pushed down as a negative,
which matters for balanced partitions, whose shards each cover a region of the item space.
The RecEraser code excludes a user's positives over ALL shards; here only the shard's own.
Everything random in a shard's run derives from (seed, shard), so retraining a shard from
scratch on its remaining data is the run that never saw the removed rows. With
`TrainConfig.sampler="users"` (the RecEraser code's `local_sample`) a shard's epoch draws its
users uniformly and one of each user's rows in the shard (`batching.UserUniformRows`), on the host, from the
same (shard seed, epoch). A one-shard run (an unlearning request) uses the unvmapped epoch.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from erase_jax.batching.cf import PositiveIndex, UserUniformRows, sample_negatives
from erase_jax.train import TrainConfig, make_optimizer


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ShardData:
    """Training pairs of S shards, padded to R rows each, with each shard's positives bitmap."""

    users: jax.Array  # int32 [S, R]
    items: jax.Array  # int32 [S, R]
    n_rows: jax.Array  # int32 [S]
    positives: jax.Array  # uint32 [S, n_users, ceil(n_items / 32)]: the shard's own pairs
    items_seen: jax.Array  # int32 [S, n_items]: the shard's distinct items first, then 0s
    n_items_seen: jax.Array  # int32 [S]

    @classmethod
    def build(cls, n_users: int, n_items: int, shard_users: list[np.ndarray], shard_items: list[np.ndarray], n_padded_rows: int | None = None):
        """Stacks the shards' pairs; `n_padded_rows` fixes R (so retrains keep compiled shapes)."""
        width = max(len(u) for u in shard_users) if n_padded_rows is None else n_padded_rows
        if any(len(u) > width for u in shard_users):
            raise ValueError(f"a shard holds more than {width} rows")
        users = np.zeros((len(shard_users), width), np.int32)
        items = np.zeros((len(shard_users), width), np.int32)
        bitmaps = []
        items_seen = np.zeros((len(shard_users), n_items), np.int32)
        n_items_seen = np.zeros(len(shard_users), np.int32)
        for s, (u, i) in enumerate(zip(shard_users, shard_items)):
            distinct = np.unique(np.asarray(i, np.int32))
            items_seen[s, : len(distinct)], n_items_seen[s] = distinct, len(distinct)
            users[s, : len(u)], items[s, : len(i)] = u, i
            index = PositiveIndex.build(n_users, np.asarray(u, np.int32), np.asarray(i, np.int32), n_items)
            if index.bitmap is None:
                raise ValueError("shard training needs the positives bitmap; the data set is too large for it")
            bitmaps.append(index.bitmap)
        n_rows = np.array([len(u) for u in shard_users], np.int32)
        return cls(jnp.asarray(users), jnp.asarray(items), jnp.asarray(n_rows), jnp.stack(bitmaps),
                   jnp.asarray(items_seen), jnp.asarray(n_items_seen))

    @property
    def n_shards(self) -> int:
        return self.users.shape[0]

    def take(self, shards) -> ShardData:
        shards = jnp.asarray(shards)
        return jax.tree.map(lambda x: x[shards], self)


def n_batches(shard_data: ShardData, batch_size: int) -> int:
    """Batches per epoch: enough for the padded width, so every shard fits whatever its size."""
    return -(-shard_data.users.shape[1] // batch_size)


def real_steps(n_rows: np.ndarray, active: np.ndarray, batch_size: int) -> int:
    """Batches of an epoch that hold a real row of some active shard: the rest are skipped."""
    return -(-int(np.max(np.where(active, n_rows, 0), initial=0)) // batch_size)


def shard_user_rows(data: ShardData, n_users: int) -> list[UserUniformRows]:
    users, n_rows = np.asarray(data.users), np.asarray(data.n_rows)
    return [UserUniformRows.build(users[s, : n_rows[s]], n_users) for s in range(len(n_rows))]


def epoch_orders(n_rows: np.ndarray, seeds: np.ndarray, epoch: int, length: int, user_rows: list[UserUniformRows] | None = None) -> np.ndarray:
    """Each shard's row order for one epoch, drawn on the host from (shard seed, epoch) and
    padded with row 0 (whose positions are weighted 0) to `length`: int32 [S, length].

    Without `user_rows` every row once (a permutation); with them (the "users" sampler) as
    many rows as the shard holds, drawn user-uniformly (`UserUniformRows.draw`)."""
    orders = np.zeros((len(n_rows), length), np.int32)
    for s, (n, seed) in enumerate(zip(n_rows, seeds)):
        if n == 0:
            continue
        rng = np.random.default_rng([int(seed), epoch])
        orders[s, :n] = rng.permutation(int(n)) if user_rows is None else user_rows[s].draw(rng, int(n))
    return orders


def shard_item_negatives(key, users, positives: PositiveIndex, items_seen, n_items_seen, max_redraws: int = 8) -> jax.Array:
    """One item per user drawn uniformly from the shard's items, redrawn while it is one of
    the user's positives in the shard."""

    def draw(i):
        index = jax.random.randint(jax.random.fold_in(key, i), users.shape, 0, jnp.maximum(n_items_seen, 1))
        return items_seen[index]

    def redraw(i, negatives):
        return jnp.where(positives.contains(users, negatives), draw(i + 1), negatives)

    return jax.lax.fori_loop(0, max_redraws, redraw, draw(0))


NEGATIVE_SOURCES = ("all", "shard_items")
MAX_REDRAWS = 8  # redraws of a negative that is one of the user's positives in the shard


def step_keys(key, step) -> tuple[jax.Array, jax.Array]:
    """(negatives key, loss key) of batch `step` of the epoch whose key is `key`.

    fold_in, not split: step b's keys must not depend on how many batches the epoch has, so
    a shard padded to more batches draws exactly what it draws alone.
    """
    negatives_key, loss_key = jax.random.split(jax.random.fold_in(key, step))
    return negatives_key, loss_key


def batch_negatives(key, users, data: ShardData, n_items: int, negatives: str) -> jax.Array:
    """One batch's negatives for `users` of one shard (`data` unstacked): one item per user,
    from all items or from the shard's items (`negatives`), redrawn while it is one of the
    user's positives in the shard."""
    positives = PositiveIndex(offsets=None, items=None, bitmap=data.positives)
    if negatives == "all":
        return sample_negatives(key, users, positives, n_items, MAX_REDRAWS)
    if negatives == "shard_items":
        return shard_item_negatives(key, users, positives, data.items_seen, data.n_items_seen, MAX_REDRAWS)
    raise ValueError(f"negatives must be one of {NEGATIVE_SOURCES}, got {negatives!r}")


def epoch_negatives(key, batch_users, data: ShardData, n_items: int, negatives: str) -> jax.Array:
    """Every batch's negatives of one shard's epoch at once, [n_batches, batch_size] for the
    users `batch_users` of the same shape: row b is `batch_negatives` with batch b's key
    (`step_keys`), so the draws are those of a step-by-step epoch, but the redraw loop runs
    once over the epoch instead of once per step, where its small kernels cost more than the
    update (timings: benchmarks/RESULTS.md, "A cheaper shard epoch and validation")."""
    negatives_keys = jax.vmap(lambda b: step_keys(key, b)[0])(jnp.arange(batch_users.shape[0]))
    return jax.vmap(lambda k, users: batch_negatives(k, users, data, n_items, negatives))(negatives_keys, batch_users)


@functools.lru_cache(maxsize=16)
def make_shard_epoch(model, config_key: tuple, n_items: int, batch_size: int, steps_per_epoch: int, vmapped: bool = True,
                     negatives: str = "all", context_axis: int | None = None):
    """The jitted epoch `(params, opt_state, active, context, data, orders, keys, n_steps) ->
    (params, opt_state, mean_loss)` over stacked shards (`vmapped`), or the same for one shard
    alone. It runs the first `n_steps` of the `steps_per_epoch` batches (`real_steps`: past
    them every shard's batches are padding only); a traced bound, so it never recompiles.
    `negatives`: "all" items or "shard_items" (see the module docstring). `context_axis`: None,
    one model context for every shard (a data-free context, or the shared one); 0, one context
    per shard stacked on a leading axis (a graph per shard, all padded to one edge capacity).

    Cached by (model, optimiser settings, shapes): unlearning requests reuse the compiled call.
    """
    if negatives not in NEGATIVE_SOURCES:
        raise ValueError(f"negatives must be one of {NEGATIVE_SOURCES}, got {negatives!r}")
    optimizer = make_optimizer(TrainConfig(**dict(config_key)), steps_per_epoch)

    def one_shard(params, opt_state, active, context, data: ShardData, order, key, n_steps):
        order = order.reshape(steps_per_epoch, batch_size)
        loss_keys = jax.vmap(lambda b: step_keys(key, b)[1])(jnp.arange(steps_per_epoch))
        all_users = data.users[order]
        # Every step's negatives at once, before the loop (`epoch_negatives`): the same draws
        # as step by step, cheaper.
        all_negatives = epoch_negatives(key, all_users, data, n_items, negatives)

        def step(b, carry):
            params, opt_state, loss_sum, n_real = carry
            loss_key = loss_keys[b]
            rows = order[b]
            batch = {
                "users": all_users[b],
                "pos": data.items[rows],
                "neg": all_negatives[b],
                "weight": (b * batch_size + jnp.arange(batch_size) < data.n_rows).astype(jnp.float32),
            }
            loss, grads = jax.value_and_grad(model.loss)(params, context, batch, loss_key)
            updates, new_opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            # A padding-only batch or a stopped shard changes nothing, optimiser state included.
            real = jnp.sum(batch["weight"]) > 0
            keep = active & real
            if vmapped:
                params = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_params, params)
                opt_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_opt_state, opt_state)
            else:
                # One shard: every step the loop runs is real and the shard is active (the caller
                # bounds `n_steps` by its real batches and passes 0 when it is inactive), so the
                # update is taken as it is, with no select over every parameter and optimiser entry.
                params, opt_state = new_params, new_opt_state
            return params, opt_state, loss_sum + jnp.where(real, loss, 0.0), n_real + real

        # Steps from `n_steps` on are padding-only for every shard (a shard's rows come first in
        # its order): the loop stops there instead of running them masked. `n_steps` is not
        # vmapped, so the trip count is the same for all shards and really bounds the work.
        start = (params, opt_state, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        params, opt_state, loss_sum, n_real = jax.lax.fori_loop(0, jnp.minimum(n_steps, steps_per_epoch), step, start)
        return params, opt_state, loss_sum / jnp.maximum(n_real, 1)

    if vmapped:
        return jax.jit(jax.vmap(one_shard, in_axes=(0, 0, 0, context_axis, 0, 0, 0, None)))
    return jax.jit(one_shard)


STEP_INDEPENDENT = ("epochs", "valid_metric", "stopping_step", "eval_step", "max_training_hours")


def config_key(config: TrainConfig) -> tuple:
    """A hashable view of the settings a step depends on (the compiled epoch is cached on it):
    runs that differ only in how many epochs they train or how they stop share one compile."""
    return tuple(sorted((k, v) for k, v in dataclasses.asdict(config).items() if k not in STEP_INDEPENDENT))


def init_shards(model, context, config: TrainConfig, seeds: np.ndarray, steps_per_epoch: int, context_axis: int | None = None):
    """Stacked initial parameters and optimiser states, shard s from PRNGKey(seeds[s]) (and its
    own context where `context_axis` is 0)."""
    optimizer = make_optimizer(config, steps_per_epoch)

    def one(seed, context):
        params = model.init(jax.random.split(jax.random.PRNGKey(seed))[0], context)
        return params, optimizer.init(params)

    return jax.vmap(one, in_axes=(0, context_axis))(jnp.asarray(seeds, jnp.uint32), context)


def run_keys(seeds: np.ndarray) -> jax.Array:
    """Each shard's run key (the second half of its split seed key), [S, 2]."""
    return jax.vmap(lambda seed: jax.random.split(jax.random.PRNGKey(seed))[1])(jnp.asarray(seeds, jnp.uint32))


def replace_shards(stacked, shards: np.ndarray, replacement):
    """`stacked` with the entries at `shards` replaced by the stacked `replacement`."""
    index = jnp.asarray(shards)
    return jax.tree.map(lambda full, part: full.at[index].set(part), stacked, replacement)


def shard_slice(stacked, s: int):
    return jax.tree.map(lambda x: x[s], stacked)


def final_embeddings(model, params, context) -> tuple[jax.Array, jax.Array]:
    """A CF model's user and item representations, the ones its scores multiply.

    BPR: the embedding tables; LightGCN: the propagated layer means (its `_forward`).
    """
    if hasattr(model, "_forward"):
        return model._forward(params, context)[1]
    return model._embeddings(context).apply(params)


def stacked_embeddings(model, stacked_params, context) -> tuple[jax.Array, jax.Array]:
    """([S, n_users, d], [S, n_items, d]): every shard's representations."""
    return jax.vmap(lambda p: final_embeddings(model, p, context))(stacked_params)
