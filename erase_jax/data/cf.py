"""Collaborative-filtering task data: training pairs and evaluation sets from a split.

Data flows one way: `Interactions` + `Split` -> `CFExamples` (numpy) -> device arrays in
`erase_jax.train` / `erase_jax.evaluate`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.splits import Split


@dataclasses.dataclass(frozen=True)
class CFTrainData:
    """Positive training pairs; what a CF model's `prepare` and the BPR sampler consume."""

    n_users: int
    n_items: int
    users: np.ndarray  # int32 [n_train]
    items: np.ndarray  # int32 [n_train]

    def __len__(self) -> int:
        return len(self.users)


@dataclasses.dataclass(frozen=True)
class CFEvalSet:
    """Users to rank for, their target items, and the items to mask (already seen).

    Targets and history are (user, item) pairs; the evaluator groups them by user.
    """

    n_users: int
    n_items: int
    users: np.ndarray  # int32 [n_eval_users], ascending, each with >= 1 target
    target_users: np.ndarray
    target_items: np.ndarray
    history_users: np.ndarray
    history_items: np.ndarray


@dataclasses.dataclass(frozen=True)
class CFExamples:
    train: CFTrainData
    valid: CFEvalSet
    test: CFEvalSet


def build_cf_examples(interactions: Interactions, split: Split) -> CFExamples:
    """Training pairs from the train rows; valid masks train items, test masks train+valid.

    Repeated user-item pairs are kept in training (the original does not deduplicate); in
    evaluation a target or history item counts once per user.
    """
    n_users, n_items = interactions.n_users, interactions.n_items
    u, i = interactions.users, interactions.items
    train = CFTrainData(n_users, n_items, u[split.train].copy(), i[split.train].copy())
    seen_before_test = np.concatenate([split.train, split.valid])
    valid = eval_set(n_users, n_items, u[split.valid], i[split.valid], u[split.train], i[split.train])
    test = eval_set(n_users, n_items, u[split.test], i[split.test], u[seen_before_test], i[seen_before_test])
    return CFExamples(train, valid, test)


def eval_set(n_users, n_items, target_users, target_items, history_users, history_items) -> CFEvalSet:
    tu, ti = _unique_pairs(target_users, target_items, n_items)
    hu, hi = _unique_pairs(history_users, history_items, n_items)
    return CFEvalSet(n_users, n_items, np.unique(tu).astype(np.int32), tu, ti, hu, hi)


def _unique_pairs(users, items, n_items):
    key = np.unique(users.astype(np.int64) * n_items + items)
    return (key // n_items).astype(np.int32), (key % n_items).astype(np.int32)
