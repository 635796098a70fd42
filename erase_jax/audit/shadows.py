"""K shadow recommenders trained as one vmap, and the audited removals applied to all of them.

Every shadow trains on the same training rows except the audited pairs that its row of the
assignment (`assignment.py`) marks OUT: all users stay in every shadow, so every user row is
trained (spec A4 #8: dropping whole users leaves their embeddings at initialisation). The K
shadows are stacked and trained by the sharded-ensemble trainer (`unlearn/exact/training.py`:
one `jax.vmap`ped, jitted epoch for all of them, padding rows weighted 0), each from its own
seed, for a fixed number of epochs without early stopping (a validation-based stop would
make a shadow depend on the validation rows, the same for all states). Shadow data are padded
to all training rows, so the trained shadows and their exact retrains share one compiled epoch.

Removals (`REMOVALS`, by name), applied to every shadow's UNLEARN pairs at once:

* `untouched`: nothing removed (the ceiling: UNLEARN pairs are simply IN; `original` in older
  result files, still accepted).
* `retrain`: exact unlearning, each shadow retrained from scratch with its own seed on its
  rows minus its UNLEARN (and OUT) pairs: the floor, a model that never saw them.

* any registered method (SCIF, Fanchuan, ...): run on each shadow in turn with the protocol's
  requests built from that shadow's rows (`audit/methods.py`; sequence shadows:
  `audit/sequence_methods.py`).

The removals take any shadow set with `train(audited_kept)` and `method_removal`: this module's
CF `ShadowSet` or `sequence_shadows.SequenceShadowSet` (SASRec, GRU4Rec, ...).
Deviation from the protocol's retrain: the split stays fixed (rows are dropped from the
training split; the protocol recomputes the split after removing rows before splitting).

A model whose context depends on the data (LightGCN's normalised graph) gets one context per
shadow, `model.prepare` of the shadow's rows padded to the edge capacity of all training rows
(the protocol's rule for a context after removal, `tasks.cf`): the edges a shadow lacks become
zero-weight padding edges, each shadow is normalised by its own degrees, and every shadow's
context has the same shapes, so the K contexts stack on a leading axis and the vmapped epoch
(`context_axis=0`) and the observations take shadow s's graph with shadow s's parameters. A
data-free context (BPR's sizes) is shared by all. After a removal a shadow is observed with the
context of the rows it keeps (`observation_mask`), as the protocol evaluates an unlearned model.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.audit.assignment import kept_mask, trained_mask
from erase_jax.audit.confidence import stacked_observation
from erase_jax.audit.devices import shadow_mesh, split_shadows
from erase_jax.data.cf import CFTrainData
from erase_jax.result_labels import OLD_NAME, UNTOUCHED
from erase_jax.train import TrainConfig
from erase_jax.unlearn.exact.shards import ShardData, init_shards, n_batches
from erase_jax.unlearn.exact.training import compile_epoch, train_shards


@dataclasses.dataclass(frozen=True)
class ShadowSet:
    """What every shadow shares and where they differ.

    `train_users`, `train_items` are the training rows (the split's), `audited` indexes the
    audited pairs among them, `states` [K, P] is each audited pair's state per shadow, `seeds`
    [K] each shadow's seed; `config.epochs` is every shadow's fixed number of epochs.
    """

    model: Any
    context: Any
    config: TrainConfig
    n_users: int
    n_items: int
    train_users: np.ndarray
    train_items: np.ndarray
    audited: np.ndarray
    states: np.ndarray
    seeds: np.ndarray
    group_size: int | None = None  # shadows per vmapped call, trained group after group; None: all at once
    mesh: Any = None  # a `devices.shadow_mesh`: each group's shadows split over its devices; None: one device

    def __post_init__(self):
        if self.group_size is not None and self.group_size < 1:
            raise ValueError(f"group_size must be a positive number of shadows or None, got {self.group_size}")
        if self.states.shape != (len(self.seeds), len(self.audited)):
            raise ValueError(f"states {self.states.shape} do not match {len(self.seeds)} seeds x {len(self.audited)} audited pairs")
        if len(np.unique(self.audited)) != len(self.audited):
            raise ValueError("audited pairs must be distinct rows")

    @classmethod
    def from_experiment(cls, experiment, config: TrainConfig, audited, states, seeds, group_size=None, devices: int = 0):
        """(the shadow set of a trained CF run's training rows, their rows in the interactions)."""
        rows, users, items = training_rows(experiment)
        inter = experiment.data.interactions
        return cls(experiment.model, experiment.context, config, inter.n_users, inter.n_items, users, items, audited, states,
                   seeds, group_size, shadow_mesh(devices) if devices else None), rows

    def population(self, experiment, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """RMIA's population: (users, items) of `size` seeded test interactions."""
        inter, test = experiment.data.interactions, np.asarray(experiment.data.split.test)
        rows = np.random.default_rng(seed).choice(test, min(size, len(test)), replace=False)
        return np.asarray(inter.users[rows], np.int32), np.asarray(inter.items[rows], np.int32)

    @property
    def n_shadows(self) -> int:
        return len(self.seeds)

    @property
    def audited_users(self) -> np.ndarray:
        return self.train_users[self.audited]

    @property
    def audited_items(self) -> np.ndarray:
        return self.train_items[self.audited]

    @property
    def audited_queries(self) -> np.ndarray:
        """Each audited pair's query for `observe`: its user."""
        return self.audited_users

    def data(self, audited_kept: np.ndarray) -> ShardData:
        """Every shadow's training rows: all rows, minus the audited pairs where
        `audited_kept[s, p]` is False; padded to all training rows."""
        return self._data_of(audited_kept, np.arange(self.n_shadows))

    def rows_kept(self, audited_kept: np.ndarray, shadow: int) -> np.ndarray:
        """bool over the training rows: shadow `shadow`'s rows (all but its audited pairs not kept)."""
        keep = np.ones(len(self.train_users), bool)
        keep[self.audited[~audited_kept[shadow]]] = False
        return keep

    def _data_of(self, audited_kept: np.ndarray, shadows: np.ndarray) -> ShardData:
        keeps = [self.rows_kept(audited_kept, s) for s in shadows]
        return ShardData.build(self.n_users, self.n_items, [self.train_users[k] for k in keeps],
                               [self.train_items[k] for k in keeps], len(self.train_users))

    @property
    def context_axis(self) -> int | None:
        """0 where the model context holds arrays (it depends on the data: one per shadow), else None."""
        return 0 if jax.tree.leaves(self.context) else None

    def context_of(self, keep: np.ndarray):
        """The model context of the training rows where `keep`, padded to the capacity of all rows."""
        if self.context_axis is None:
            return self.context
        train = CFTrainData(self.n_users, self.n_items, self.train_users[keep], self.train_items[keep])
        return self.model.prepare(train, self.edge_capacity)

    @functools.cached_property
    def edge_capacity(self) -> int:
        """Distinct (user, item) pairs of all training rows: every shadow's context's capacity."""
        return len(np.unique(self.train_users.astype(np.int64) * self.n_items + self.train_items))

    def contexts(self, audited_kept: np.ndarray, shadows: np.ndarray | None = None):
        """The shadows' contexts: stacked [K', ...] (one per shadow), or the shared data-free one."""
        if self.context_axis is None:
            return self.context
        shadows = np.arange(self.n_shadows) if shadows is None else np.asarray(shadows)
        each = [self.context_of(self.rows_kept(audited_kept, s)) for s in shadows]
        return jax.tree.map(lambda *x: jnp.stack(x), *each)

    def observe(self, params, audited_kept: np.ndarray, users, items, kind: str = "phi") -> jax.Array:
        """float32 [K, P]: `confidence.stacked_observation` of (users[p], items[p]) under every
        shadow's parameters, each with its context of the rows `audited_kept` leaves."""
        return stacked_observation(self.model, params, self.contexts(audited_kept), jnp.asarray(users), jnp.asarray(items),
                                   kind, self.context_axis)

    def train(self, audited_kept: np.ndarray, shadows: np.ndarray | None = None) -> tuple[Any, dict]:
        """(stacked parameters [K', ...], record) of the shadows `shadows` (default all) trained
        from scratch on `data(audited_kept)`, `group_size` of them per vmapped call, one group
        after another (a shadow's run depends on its seed and rows only, not on its group); the
        record separates compilation from training."""
        shadows = np.arange(self.n_shadows) if shadows is None else np.asarray(shadows)
        size = len(shadows) if self.group_size is None else self.group_size
        parts, compile_seconds, train_seconds = [], 0.0, 0.0
        for start in range(0, len(shadows), size):
            group = shadows[start: start + size]
            data, contexts = self._data_of(audited_kept, group), self.contexts(audited_kept, group)
            start_params = None
            if self.mesh is not None:  # the same run, its shadow axis split over the mesh (`devices.py`)
                data = split_shadows(data, self.mesh)
                contexts = contexts if self.context_axis is None else split_shadows(contexts, self.mesh)
                start_params = split_shadows(init_shards(self.model, contexts, self.config, self.seeds[group],
                                                         n_batches(data, self.config.batch_size), self.context_axis)[0], self.mesh)
            compile_seconds += compile_epoch(self.model, contexts, data, self.seeds[group], self.config, self.n_items,
                                             context_axis=self.context_axis)
            started = time.perf_counter()
            fit = train_shards(self.model, contexts, data, self.seeds[group], self.config, None, self.n_items,
                               init_params=start_params, context_axis=self.context_axis)
            jax.block_until_ready(fit.params)
            train_seconds += time.perf_counter() - started
            parts.append(fit.params)
        params = parts[0] if len(parts) == 1 else jax.tree.map(lambda *x: jnp.concatenate(x), *parts)
        return params, {"n_shadows": len(shadows), "group_size": size, "epochs": self.config.epochs,
                        "compile_seconds": compile_seconds, "train_seconds": train_seconds}

    def train_shadows(self) -> tuple[Any, dict]:
        """All shadows on their IN and UNLEARN pairs (before any removal)."""
        return self.train(trained_mask(self.states))

    def method_removal(self, trained_params, name: str, seed: int = 0) -> tuple[Any, dict]:
        """A registered method on every shadow (`audit/methods.py`)."""
        from erase_jax.audit.methods import method_removal

        return method_removal(self, trained_params, name, seed=seed)


def remove_nothing(shadow_set: ShadowSet, trained_params) -> tuple[Any, dict]:
    """The do-nothing "unlearning": the trained shadows themselves."""
    return trained_params, {"seconds": 0.0}


def retrain(shadow_set: ShadowSet, trained_params) -> tuple[Any, dict]:
    """Exact unlearning: every shadow retrained from scratch on its IN pairs only."""
    del trained_params
    params, record = shadow_set.train(kept_mask(shadow_set.states))
    return params, {"seconds": record["train_seconds"], "compile_seconds": record["compile_seconds"]}


REMOVALS = {UNTOUCHED: remove_nothing, "retrain": retrain}


def apply_removal(name: str, shadow_set: ShadowSet, trained_params, seed: int = 0) -> tuple[Any, dict]:
    """The shadows after removal `name` of their UNLEARN pairs: one of `REMOVALS`, or a
    registered unlearning method with its defaults (`erase_jax.audit.methods`; `seed` fixes its
    request order, retain draws and keys)."""
    name = check_removal(name)
    if name in REMOVALS:
        return REMOVALS[name](shadow_set, trained_params)
    return shadow_set.method_removal(trained_params, name, seed=seed)


def check_removal(name: str) -> str:
    """`name` (the old name `original` as `untouched`) if it is a removal; ValueError otherwise."""
    from erase_jax.unlearn.methods.base import METHODS

    name = UNTOUCHED if name == OLD_NAME else name
    if name not in REMOVALS:
        try:
            METHODS.get(name)
        except (KeyError, ValueError):
            raise ValueError(f"unknown removal {name!r}; available: {sorted(REMOVALS)} or a method of "
                             f"erase_jax.unlearn.method_names()") from None
    return name


def observation_mask(name: str, states: np.ndarray) -> np.ndarray:
    """bool [K, P]: the audited pairs in the rows a shadow is observed with after removal `name`:
    the trained ones for `untouched`, the kept (IN) ones after any real removal."""
    return trained_mask(states) if name in (UNTOUCHED, OLD_NAME) else kept_mask(states)


def shadow_seeds(seed: int, n_shadows: int) -> np.ndarray:
    """One seed per shadow, fixed by the audit's seed."""
    return np.array([seed * 1000 + s for s in range(n_shadows)], np.int64)


def training_rows(experiment) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row indices into the interactions, users, items) of the experiment's training split."""
    rows = np.asarray(experiment.data.split.train)
    inter = experiment.data.interactions
    return rows, np.asarray(inter.users[rows], np.int32), np.asarray(inter.items[rows], np.int32)
