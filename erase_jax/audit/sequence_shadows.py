"""K shadow sequence models (SBR: SASRec, GRU4Rec, ...) trained as one vmap, for the audit.

The sequence counterpart of `shadows.ShadowSet`, with the same interface (`train`,
`train_shadows`, `observe`, `method_removal`), so the job, the removals, `lira.py`, `game.py`
and `roc.py` run unchanged.

* An audited pair is an interaction (user, item) that is the target of one of the run's
  training prefix rows (rank >= 1 in its sequence: the first interaction of a sequence is never
  predicted, so it has no confidence to read). `audited` indexes those prefix rows.
* OUT (and, after `retrain`, UNLEARN): the interaction is removed from the shadow's data by the
  rule of the SBR task's retrain (`LoadedData.without` then `tasks.sbr`): the interaction row
  is dropped, the user's sequence is rebuilt without it (every later prefix of the user loses
  the item) and the user's prefix rows are split again with the 80/10/10 rule, then cut to the
  training objective (`sequence.objective`). Every user stays in every shadow.
* Data: removing an interaction shifts every later prefix of its sequence, so the shadows' data
  are not masks on one array. Each shadow's objective rows are padded (weight 0) to the number
  of rows of the full data (`capacity`) and the K copies are stacked: every array has a static
  shape, the K shadows train in one jitted, vmapped epoch (`fori_loop` over batches), and the
  retrained shadows reuse the compiled epoch.
* Training: each shadow from its own seed (initial parameters and run key as `exact.shards`),
  each epoch's row order a permutation of the shadow's own rows drawn from (seed, epoch), padding
  after them; a batch that holds no real row of a shadow leaves its parameters and Adam state
  as they are (the shards' rule), so a shadow trains exactly as it would alone. Fixed epochs, no
  early stopping. Deviation from `erase-jax train`: every batch runs at the full prefix width
  (no length bucket), so the dropout draws of a shadow do not depend on the other shadows of
  its group; step keys are `fold_in(epoch key, step)`.
* Observation: the confidence of the audited item for the prefix that precedes it in the
  user's full sequence, exactly as the objective trains it (the last `max_length` items, or the
  chunk context with `all_positions`): the same query for every shadow, whatever its state and
  the state of the user's other audited pairs (the "same masking everywhere" of spec A5). For an
  IN shadow this is a training example; for an OUT shadow the prediction it would make at that
  point of the sequence. Softmax over all items, nothing masked (`confidence.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from erase_jax.audit.assignment import trained_mask
from erase_jax.audit.confidence import OBSERVATIONS
from erase_jax.data.interactions import Interactions
from erase_jax.data.positions import chunk_contexts, position_rows
from erase_jax.data.sequences import SequenceConfig, SequenceRows, build_sequences
from erase_jax.train import TrainConfig, make_optimizer
from erase_jax.unlearn.exact.shards import config_key, epoch_orders, init_shards, real_steps, run_keys

_epoch_keys = jax.jit(jax.vmap(jax.random.fold_in, in_axes=(0, None)))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SequenceShadowData:
    """S shadows' objective rows, each padded to R rows: items [S, R, L], lengths [S, R],
    targets and weight [S, R] (prefix rows) or [S, R, L] (all-positions rows), n_rows [S]."""

    items: jax.Array
    lengths: jax.Array
    targets: jax.Array
    weight: jax.Array
    n_rows: jax.Array

    @classmethod
    def build(cls, rows: list, n_items: int, max_length: int, capacity: int, all_positions: bool) -> SequenceShadowData:
        capacity = max([capacity, *(len(r) for r in rows)])
        shape = (len(rows), capacity)
        items = np.full((*shape, max_length), n_items, np.int32)
        lengths = np.ones(shape, np.int32)
        targets = np.zeros(shape + ((max_length,) if all_positions else ()), np.int32)
        weight = np.zeros(targets.shape, np.float32)
        for s, r in enumerate(rows):
            n = len(r)
            if all_positions:
                items[s, :n], lengths[s, :n], targets[s, :n], weight[s, :n] = r.items, r.lengths, r.targets, r.weights
            else:
                items[s, :n], lengths[s, :n], targets[s, :n], weight[s, :n] = r.prefixes, r.lengths, r.targets, 1.0
        n_rows = np.array([len(r) for r in rows], np.int32)
        return cls(*(jnp.asarray(a) for a in (items, lengths, targets, weight, n_rows)))


@functools.lru_cache(maxsize=8)
def make_sequence_epoch(model, settings: tuple, batch_size: int, steps: int, vmapped: bool):
    """The jitted epoch `(params, opt_state, context, data, order, key, n_steps) -> (params,
    opt_state, mean loss)` of stacked shadows (`vmapped`) or of one; it runs the first `n_steps`
    batches (past them every shadow's batches are padding only), a traced bound."""
    optimizer = make_optimizer(TrainConfig(**dict(settings)), steps)

    def one(params, opt_state, context, data: SequenceShadowData, order, key, n_steps):
        order = order.reshape(steps, batch_size)

        def step(b, carry):
            params, opt_state, loss_sum, n_real = carry
            rows = order[b]
            real = (b * batch_size + jnp.arange(batch_size)) < data.n_rows
            weight = data.weight[rows] * real.reshape((-1,) + (1,) * (data.weight.ndim - 1))
            batch = {"items": data.items[rows], "lengths": data.lengths[rows], "targets": data.targets[rows], "weight": weight}
            loss, grads = jax.value_and_grad(model.loss)(params, context, batch, jax.random.fold_in(key, b))
            updates, new_opt_state = optimizer.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            has_rows = jnp.any(real)
            if vmapped:  # a padding-only batch changes nothing, optimiser state included
                params = jax.tree.map(lambda new, old: jnp.where(has_rows, new, old), new_params, params)
                opt_state = jax.tree.map(lambda new, old: jnp.where(has_rows, new, old), new_opt_state, opt_state)
            else:  # alone, every step the loop runs holds real rows
                params, opt_state = new_params, new_opt_state
            return params, opt_state, loss_sum + jnp.where(has_rows, loss, 0.0), n_real + has_rows

        start = (params, opt_state, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        params, opt_state, loss_sum, n_real = jax.lax.fori_loop(0, jnp.minimum(n_steps, steps), step, start)
        return params, opt_state, loss_sum / jnp.maximum(n_real, 1)

    if vmapped:
        return jax.jit(jax.vmap(one, in_axes=(0, 0, None, 0, 0, 0, None)))
    first = functools.partial(jax.tree.map, lambda x: x[0])
    stack = functools.partial(jax.tree.map, lambda x: x[None])

    @jax.jit
    def alone(params, opt_state, context, data, order, key, n_steps):  # the stacked interface, unvmapped inside
        params, opt_state, loss = one(first(params), first(opt_state), context, first(data), order[0], key[0], n_steps)
        return stack(params), stack(opt_state), loss[None]

    return alone


@functools.partial(jax.jit, static_argnums=(0, 5))
def stacked_sequence_observation(model, stacked_params, context, queries: dict, items: jax.Array, kind: str = "phi"):
    """float32 [K, P]: observation `kind` (`confidence.OBSERVATIONS`) of item items[p] after
    the prefix queries["items"][p] (of queries["lengths"][p]) under each stacked parameter set."""
    observe = OBSERVATIONS[kind]
    return jax.vmap(lambda params: observe(model.scores(params, context, queries), items))(stacked_params)


@dataclasses.dataclass(frozen=True)
class SequenceShadowSet:
    """What every sequence shadow shares and where they differ (module docstring).

    `interactions` are the run's (full data), `train` the full data's training prefix rows,
    `audited` positions in `train` (distinct), `states` [K, P], `seeds` [K];
    `config.epochs` is every shadow's fixed number of epochs; `sequence` and `ratios` are the
    run's `sequence` settings and split ratios."""

    model: Any
    context: Any
    config: TrainConfig
    sequence: SequenceConfig
    ratios: tuple
    interactions: Interactions
    train_rows: SequenceRows
    audited: np.ndarray
    states: np.ndarray
    seeds: np.ndarray
    group_size: int | None = None  # shadows per vmapped call, trained group after group; None: all at once
    experiment: Any = None  # the run's `Experiment`: the SBR task's request rows, for methods only

    def __post_init__(self):
        if self.group_size is not None and self.group_size < 1:
            raise ValueError(f"group_size must be a positive number of shadows or None, got {self.group_size}")
        if self.states.shape != (len(self.seeds), len(self.audited)):
            raise ValueError(f"states {self.states.shape} do not match {len(self.seeds)} seeds x {len(self.audited)} audited pairs")
        if len(np.unique(self.audited)) != len(self.audited):
            raise ValueError("audited pairs must be distinct rows")
        if jax.tree.leaves(self.context):
            raise ValueError("sequence shadows need a data-free model context (the sizes); this model's holds arrays")

    @classmethod
    def from_experiment(cls, experiment, config: TrainConfig, audited, states, seeds, group_size=None, devices: int = 0):
        """(the shadow set of a trained SBR run's training prefix rows, their targets' rows in the interactions)."""
        if devices:
            raise ValueError("audit: --devices splits CF shadows only; sequence shadows train on one device")
        train = experiment.examples.train
        return cls(experiment.model, experiment.context, config, experiment.config.sequence,
                   tuple(experiment.config.data.split_ratios), experiment.data.interactions, train, audited, states, seeds,
                   group_size, experiment), np.asarray(train.target_rows)

    def population(self, experiment, size: int, seed: int) -> tuple[dict, np.ndarray]:
        """RMIA's population: (queries, items) of `size` seeded test prefix rows of the full data."""
        test = experiment.examples.test
        chosen = np.sort(np.random.default_rng(seed).choice(len(test), min(size, len(test)), replace=False))
        return self.queries(test.select(chosen)), np.asarray(test.targets[chosen], np.int32)

    @property
    def n_shadows(self) -> int:
        return len(self.seeds)

    @property
    def n_items(self) -> int:
        return self.interactions.n_items

    @property
    def all_positions(self) -> bool:
        return self.sequence.objective == "all_positions"

    @property
    def audited_interactions(self) -> np.ndarray:
        """The audited pairs' rows in `interactions`."""
        return self.train_rows.target_rows[self.audited]

    @property
    def audited_users(self) -> np.ndarray:
        return np.asarray(self.interactions.users[self.audited_interactions], np.int32)

    @property
    def audited_items(self) -> np.ndarray:
        return np.asarray(self.train_rows.targets[self.audited], np.int32)

    @property
    def audited_queries(self) -> dict:
        """Each audited pair's query: its prefix as the objective trains it (module docstring)."""
        return self.queries(self.train_rows.select(self.audited))

    def queries(self, rows: SequenceRows) -> dict:
        rows = chunk_contexts(rows) if self.all_positions else rows
        return {"items": jnp.asarray(rows.prefixes, jnp.int32), "lengths": jnp.asarray(rows.lengths, jnp.int32)}

    def removed(self, audited_kept: np.ndarray, shadow: int) -> np.ndarray:
        """bool over the interactions: shadow `shadow`'s removed ones (its audited pairs not kept)."""
        removed = np.zeros(len(self.interactions), bool)
        removed[self.audited_interactions[~audited_kept[shadow]]] = True
        return removed

    def objective_rows(self, removed: np.ndarray):
        """The training rows of the interactions without `removed`, rebuilt and split again as the
        SBR retrain does, in the training objective's form (prefix rows, or all-positions rows)."""
        train = build_sequences(self.interactions.select(~removed), self.sequence, self.ratios).train
        return position_rows(train) if self.all_positions else train

    @functools.cached_property
    def capacity(self) -> int:
        """Rows of the full data's objective: every shadow's padded row count."""
        return len(self.objective_rows(np.zeros(len(self.interactions), bool)))

    def data(self, audited_kept: np.ndarray, shadows: np.ndarray | None = None) -> SequenceShadowData:
        shadows = np.arange(self.n_shadows) if shadows is None else np.asarray(shadows)
        rows = [self.objective_rows(self.removed(audited_kept, s)) for s in shadows]
        return SequenceShadowData.build(rows, self.n_items, self.train_rows.max_length, self.capacity, self.all_positions)

    def _train_group(self, data: SequenceShadowData, seeds: np.ndarray) -> tuple[Any, float, float]:
        config = self.config
        steps = -(-int(data.items.shape[1]) // config.batch_size)
        epoch = make_sequence_epoch(self.model, config_key(config), config.batch_size, steps, len(seeds) > 1)
        params, opt_state = init_shards(self.model, self.context, config, seeds, steps)
        keys, n_rows = run_keys(seeds), np.asarray(data.n_rows)
        started = time.perf_counter()
        jax.block_until_ready(epoch(params, opt_state, self.context, data, jnp.zeros((len(seeds), steps * config.batch_size), jnp.int32),
                                    _epoch_keys(keys, 0), jnp.int32(0)))
        compile_seconds = time.perf_counter() - started
        started = time.perf_counter()
        n_steps = jnp.int32(real_steps(n_rows, np.ones(len(seeds), bool), config.batch_size))
        for e in range(config.epochs):
            orders = jnp.asarray(epoch_orders(n_rows, seeds, e, steps * config.batch_size))
            params, opt_state, losses = epoch(params, opt_state, self.context, data, orders, _epoch_keys(keys, e), n_steps)
        if not np.all(np.isfinite(np.asarray(losses))):
            raise FloatingPointError(f"shadow training diverged: last epoch's losses {np.asarray(losses)}")
        return params, compile_seconds, time.perf_counter() - started

    def train(self, audited_kept: np.ndarray, shadows: np.ndarray | None = None) -> tuple[Any, dict]:
        """(stacked parameters [K', ...], record) of the shadows `shadows` (default all) trained
        from scratch without their audited pairs not kept, `group_size` per vmapped call; the
        record separates compilation and data building from training."""
        shadows = np.arange(self.n_shadows) if shadows is None else np.asarray(shadows)
        size = len(shadows) if self.group_size is None else self.group_size
        parts, compile_seconds, train_seconds, data_seconds = [], 0.0, 0.0, 0.0
        for start in range(0, len(shadows), size):
            group = shadows[start: start + size]
            started = time.perf_counter()
            data = self.data(audited_kept, group)
            data_seconds += time.perf_counter() - started
            params, compiling, training = self._train_group(data, self.seeds[group])
            compile_seconds, train_seconds = compile_seconds + compiling, train_seconds + training
            parts.append(params)
        params = parts[0] if len(parts) == 1 else jax.tree.map(lambda *x: jnp.concatenate(x), *parts)
        return params, {"n_shadows": len(shadows), "group_size": size, "epochs": self.config.epochs,
                        "compile_seconds": compile_seconds, "train_seconds": train_seconds, "data_seconds": data_seconds}

    def train_shadows(self) -> tuple[Any, dict]:
        """All shadows on their IN and UNLEARN pairs (before any removal)."""
        return self.train(trained_mask(self.states))

    def observe(self, params, audited_kept: np.ndarray, queries: dict, items, kind: str = "phi") -> jax.Array:
        """float32 [K, P]: observation `kind` of (queries[p], items[p]) under every shadow; the
        context holds sizes only, so it is the same whatever `audited_kept` removed."""
        del audited_kept
        return stacked_sequence_observation(self.model, params, self.context, queries, jnp.asarray(items, jnp.int32), kind)

    def method_removal(self, trained_params, name: str, seed: int = 0) -> tuple[Any, dict]:
        from erase_jax.audit.sequence_methods import sequence_method_removal

        return sequence_method_removal(self, trained_params, name, seed=seed)
