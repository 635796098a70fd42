"""What a shard's and the aggregator's early stopping validate on, and which shards a removed
validation row touches.

A submodel's early stopping ranks validation rows, so the validation rows it ranked are part of
what it was trained on: exact unlearning must retrain it when one of them is removed. With
`shard_validation="own"` (`ensemble.ShardEnsemble`) a shard validates on the validation pairs
whose item it holds (`own_validation_set`), ranked among its own items only (`OwnItemsRanker`)
with only its own rows masked, so it depends on its own data and those pairs alone, and
`shards_validating_on` names the shards a removed validation row reaches. With "all" every
shard (and the aggregator) validates on every remaining validation pair (`validator`,
`remaining_valid_set`). Removed rows are never validated on: model selection must not see them.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from erase_jax.data.cf import eval_set
from erase_jax.evaluators.cf_ranking import evaluate_cf
from erase_jax.train import TrainConfig
from erase_jax.unlearn.exact.rows import remaining_shard_rows, remaining_train_rows, remaining_valid_rows
from erase_jax.unlearn.exact.shards import final_embeddings


def remaining_valid_set(experiment, removed: np.ndarray):
    """Validation targets and history without the removed rows: model selection must not see them."""
    inter = experiment.data.interactions
    valid = remaining_valid_rows(experiment, removed)
    history = remaining_train_rows(experiment, removed)
    return eval_set(inter.n_users, inter.n_items, inter.users[valid], inter.items[valid], inter.users[history], inter.items[history])


def validator(model, experiment, removed: np.ndarray, config: TrainConfig):
    """`params -> validation score` of one submodel, or None when there is nothing to validate on."""
    valid = remaining_valid_set(experiment, removed)
    if len(valid.users) == 0:
        return None
    return _scorer(model, experiment, valid, config)


def shards_validating_on(experiment, shard_of_row: np.ndarray, removed_before: np.ndarray, valid_rows: np.ndarray) -> np.ndarray:
    """The shards whose own validation (`own_validation_set`) ranked one of the validation
    rows `valid_rows` (not yet removed) when the rows removed so far were `removed_before`:
    the shards holding a remaining training row of one of their items. Sorted shard ids.

    `removed_before` is the mask before the request, not after, because it is the one such a
    shard last trained under: since then its training rows are unchanged (a removed one
    would have retrained it) and so is each validation row it ranked (idem). Taking the mask
    after the request would change the answer only for a shard that loses its last row of
    an item in this request, and that shard is retrained anyway for its removed training row.
    """
    inter = experiment.data.interactions
    items = np.zeros(inter.n_items, bool)
    items[inter.items[valid_rows]] = True
    holding = (shard_of_row >= 0) & ~removed_before & items[inter.items]
    return np.unique(shard_of_row[holding]).astype(np.int64)


def own_validation_set(experiment, shard_of_row: np.ndarray, removed: np.ndarray, shard: int):
    """(eval set, own items): the validation pairs whose item has a remaining training row in
    `shard`, with only the shard's remaining rows as the history to mask, and the mask of the
    shard's items [n_items]; built from the shard's data alone. None when no validation pair
    falls on the shard's items."""
    inter = experiment.data.interactions
    rows = remaining_shard_rows(shard_of_row, removed, shard)
    own_items = np.zeros(inter.n_items, bool)
    own_items[inter.items[rows]] = True
    valid = remaining_valid_rows(experiment, removed)
    valid = valid[own_items[inter.items[valid]]]
    if len(valid) == 0:
        return None
    targets = eval_set(inter.n_users, inter.n_items, inter.users[valid], inter.items[valid], inter.users[rows], inter.items[rows])
    return targets, own_items


# A shard's items are ranked in slots padded to a multiple of this (not to a power of two,
# which can pad a large shard to more slots than the data set has items).
OWN_ITEM_SLOTS = 256


@dataclasses.dataclass(frozen=True)
class OwnItemsRanker:
    """`model` ranking only a shard's items: slot j scores item `params["item_ids"][j]`, and
    padding slots (`params["real"]` False) score -inf.

    A submodel's embedding of an item it holds no row of is its untrained initial draw: its
    scores say nothing about the shard's data, so the shard is judged on its own items only.
    Scoring just those items (not all, then masking) makes a validation cost in proportion to
    the shard's items (a balanced partition's shards hold from a small share to most of them).
    """

    model: object

    def scores(self, params, context, query):
        users, items = final_embeddings(self.model, params["model"], context)
        scores = users[query["users"]] @ items[params["item_ids"]].T
        return jnp.where(params["real"], scores, -jnp.inf)


def own_item_slots(targets, own_items: np.ndarray):
    """(`targets` with items renumbered to slots, slot item ids, real-slot mask) for
    `OwnItemsRanker`: the shard's items in id order, padded to a multiple of
    `OWN_ITEM_SLOTS` (so shards, and a shard before and after a request, mostly share one
    compiled ranking)."""
    item_ids = np.nonzero(own_items)[0]
    n_slots = max(1, -(-len(item_ids) // OWN_ITEM_SLOTS)) * OWN_ITEM_SLOTS
    slot_of = np.full(len(own_items), -1, np.int64)
    slot_of[item_ids] = np.arange(len(item_ids))
    renumbered = eval_set(targets.n_users, n_slots, targets.target_users, slot_of[targets.target_items],
                          targets.history_users, slot_of[targets.history_items])
    real = np.arange(n_slots) < len(item_ids)
    return renumbered, np.pad(item_ids, (0, n_slots - len(item_ids))).astype(np.int32), real


def own_validator(model, experiment, shard_of_row: np.ndarray, removed: np.ndarray, shard: int, config: TrainConfig):
    """`params -> score` of one shard on `own_validation_set`, ranking the shard's items
    only; None when that set is empty."""
    own = own_validation_set(experiment, shard_of_row, removed, shard)
    if own is None:
        return None
    targets, item_ids, real = own_item_slots(*own)
    item_ids, real = jnp.asarray(item_ids), jnp.asarray(real)
    return _scorer(OwnItemsRanker(model), experiment, targets, config,
                   lambda params: {"model": params, "item_ids": item_ids, "real": real})


def _scorer(model, experiment, targets, config: TrainConfig, as_params=lambda params: params):
    """`params -> config.valid_metric` of `model` on the evaluation set `targets`."""
    metric, k = metric_and_k(config.valid_metric)
    return lambda params: evaluate_cf(model, as_params(params), experiment.context, targets, (k,), (metric,))[config.valid_metric]


def metric_and_k(valid_metric: str) -> tuple[str, int]:
    metric, _, k = valid_metric.partition("@")
    return metric, int(k)
