"""What the unlearning protocol needs from a task: rows per user, request batches, evaluation.

The request loop (`runner`) and the checkpoint evaluation (`report`) are the same for every
task; what differs is what a user's "training rows" are and how a model is asked about a user:

* CF: a user's rows are its training interactions; a batch is BPR rows (user, positive,
  sampled negative); the model context (LightGCN's graph) is rebuilt without the removed
  interactions; a model is queried with user ids.
* SBR: a user's rows are the prefix -> next-item training rows of its sequence (spec 1.3);
  a batch is padded prefixes with their targets; the forget data F are the rows built from the
  user's full sequence, the clean data C the rows of the COUNTERFACTUAL sequence without the
  forgotten items (re-augmented and re-split, as the retrain sees it), R other users' rows.
  The context (sizes only) never changes. A model is queried for a user with the user's last
  test prefix of the data without the removals, so sensitive exposure is measured on the
  history with the forgotten items removed, for the unlearned model and the retrain alike.
  This fixes the original's inconsistency (spec 7 item 10 / unlearning spec Q11: its unlearn
  runs fed histories that still held the sensitive items, its retrain runs cleaned ones).

A task object is built once per protocol from the trained run's `Experiment`; `evaluation(data)`
gives the scoring view of one data version (the data without the removals through a checkpoint).
Methods that need the task's row fields use `positive_items`, `query_of` and `representation`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.batching import PositiveIndex, bucket_size, cf_rows_batch
from erase_jax.data.cf import CFTrainData, build_cf_task
from erase_jax.evaluate import evaluate_cf
from erase_jax.unlearn.requests import UserRows

Batch = dict[str, jax.Array]


def is_sequence_model(model) -> bool:
    return getattr(model, "task", "CF") == "SBR"


# ------------------------------------------------------------------ row fields, per task


def positive_items(batch: Batch) -> jax.Array:
    """The item each row is a positive example of (CF: `pos`; SBR: the next item `targets`)."""
    return batch["targets"] if "targets" in batch else batch["pos"]


def query_of(batch: Batch) -> Batch:
    """The part of a training batch that `model.scores` takes as its query."""
    if "targets" in batch:
        return {"items": batch["items"], "lengths": batch["lengths"]}
    return {"users": batch["users"]}


def representation(model, params, context, batch: Batch, key=None) -> jax.Array:
    """The query representation whose inner products with the items give the scores.

    CF: the raw user-embedding rows (the original's `user_embedding(user_id)`); SBR: the
    sequence representation (`model.forward(item_seq, item_seq_len)`, dropout when `key`).
    """
    if "targets" in batch:
        return model.represent(params, context, batch["items"], batch["lengths"], key)
    return params["params"]["user_embedding"]["embedding"][batch["users"]]


# ------------------------------------------------------------------ CF


class CFRequestRows:
    """CF: each user's training interactions; BPR batches with on-device negatives."""

    def __init__(self, experiment):
        inter, split, train = experiment.data.interactions, experiment.data.split, experiment.task.train
        self.experiment = experiment
        self.user_rows = UserRows.from_rows(inter, split.train)  # rows = interaction row ids
        # negatives are never a user's training item (the original's sampler)
        self.positives = PositiveIndex.build(train.n_users, train.users, train.items, train.n_items)
        # graph context size, fixed so that removals keep shapes
        self.capacity = len(np.unique(train.users.astype(np.int64) * train.n_items + train.items))

    def context(self, removed: np.ndarray):
        """The model context from the training rows that remain after `removed` (bool over rows)."""
        experiment = self.experiment
        inter, rows = experiment.data.interactions, experiment.data.split.train
        rows = rows[~removed[rows]]
        train = CFTrainData(inter.n_users, inter.n_items, inter.users[rows], inter.items[rows])
        return experiment.model.prepare(train, self.capacity)

    def batch(self, rows: np.ndarray, key, size: int | None = None) -> Batch:
        inter = self.experiment.data.interactions
        return cf_rows_batch(inter.users[rows], inter.items[rows], self.positives, inter.n_items, key, size)

    def request_batches(self, users, removed_after: np.ndarray, retain_rows: np.ndarray, key, with_clean: bool):
        """(F, C or None, R) for a request of `users` (spec 5.4 step 6-8)."""
        forget_rows = self.user_rows.gather(users)
        forget_key, _unused_clean_key, retain_key = jax.random.split(key, 3)  # kept: same retain keys as before
        # C shares F's padded length, so a method compiles once per (F bucket, R bucket) instead
        # of once per combination of three buckets. (Padding F to R's bucket as well cut compiles
        # further but made methods that step through F's rows, e.g. Fanchuan, 14x slower.)
        forget_size = bucket_size(len(forget_rows))
        forget = self.batch(forget_rows, forget_key, forget_size)
        kept = ~removed_after[forget_rows]
        clean = kept_rows_batch(forget, kept, forget_size) if with_clean and kept.any() else None
        return forget, clean, self.batch(retain_rows, retain_key)

    def evaluation(self, data) -> "CFEvaluation":
        return CFEvaluation(self.experiment, data)


def kept_rows_batch(forget: Batch, kept: np.ndarray, size: int | None = None) -> Batch:
    """The clean batch: the forget batch's kept rows, WITH THE SAME sampled negatives.

    A BPR row's gradient depends on its random negative, so two independent draws for the
    same kept rows make sum_C grad - sum_F grad a difference of two noisy sums (over a
    user's ~100 rows its noise outweighs the 1-5 forgotten rows' signal). With shared
    negatives the kept rows cancel exactly and the difference is the forgotten rows' own
    gradient, the quantity the influence methods need. The original draws both loaders'
    negatives independently (the same distribution row by row, more noise).
    """
    positions = np.nonzero(kept)[0]
    size = bucket_size(len(positions)) if size is None else size
    index = np.zeros(size, np.int32)
    index[: len(positions)] = positions
    index = jnp.asarray(index)
    weight = jnp.asarray((np.arange(size) < len(positions)).astype(np.float32))
    clean = {name: values[index] for name, values in forget.items()}
    clean["weight"] = weight
    return clean


@dataclasses.dataclass
class Evaluation:
    """Scoring on one data version (the data without the removals through a checkpoint)."""

    experiment: Any
    data: Any

    def __post_init__(self):  # the task's view is built here by the subclasses
        pass

    @property
    def n_users(self) -> int:
        return self.data.interactions.n_users


class CFEvaluation(Evaluation):
    """CF: test utility, and models queried by user id."""

    def __post_init__(self):
        self.test = build_cf_task(self.data.interactions, self.data.split).test

    def test_metrics(self, model, params, context) -> dict:
        ec = self.experiment.config.eval
        return evaluate_cf(model, params, context, self.test, ec.topk, ec.metrics, ec.block_size)

    def by_user(self, model, params, context):
        return model, params, context

    def scorable(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(users)


# ------------------------------------------------------------------ SBR


class SBRRequestRows:
    """SBR: each user's training prefix rows; C from the counterfactual sequence (module doc)."""

    def __init__(self, experiment):
        self.experiment = experiment
        train = experiment.task.train
        inter = experiment.data.interactions
        # rows = indices into task.train, grouped by the user of their target interaction
        # (with per-session sequences a user owns several sequences)
        self.user_rows = UserRows.from_groups(inter.users[train.target_rows], inter.n_users)

    def context(self, removed: np.ndarray):
        del removed  # a sequence model's context is its sizes
        return self.experiment.context

    def request_batches(self, users, removed_after: np.ndarray, retain_rows: np.ndarray, key, with_clean: bool):
        del key  # nothing is sampled: CE over all items needs no negatives
        train = self.experiment.task.train
        forget_rows, retain = train.select(self.user_rows.gather(users)), train.select(retain_rows)
        # one width for F, C and R (methods may join them into one batch); removing items
        # never adds rows or lengthens a prefix, so C fits F's shape
        width = max(prefix_width(forget_rows), prefix_width(retain))
        forget = sequence_batch(forget_rows, width=width)
        clean = None
        if with_clean:
            counterfactual = self.counterfactual_rows(users, removed_after)
            if len(counterfactual):
                clean = sequence_batch(counterfactual, *forget["items"].shape)
        return forget, clean, sequence_batch(retain, width=width)

    def counterfactual_rows(self, users, removed_after: np.ndarray):
        """The training prefix rows of `users` built from their interactions minus the removed ones."""
        from erase_jax.data.sequences import build_sequences

        experiment = self.experiment
        inter = experiment.data.interactions
        rows = np.flatnonzero(np.isin(inter.users, users) & ~removed_after)
        return build_sequences(inter.select(rows), experiment.config.sequence, experiment.config.data.split_ratios).train

    def evaluation(self, data) -> "SBREvaluation":
        return SBREvaluation(self.experiment, data)


def sequence_batch(rows, size: int | None = None, width: int | None = None) -> Batch:
    """Prefix rows as a flat padded batch {items, lengths, targets, weight}.

    The row count is bucketed to a power of two and the prefix width to the narrowest of
    `sbr.bucket_widths` that holds the longest prefix (prefixes are left-aligned, so cutting
    trailing padding changes no score; recurrent and attention work shrinks with the width),
    so that methods compile once per (rows, width) bucket.
    """
    n = len(rows)
    size = bucket_size(n) if size is None else size
    width = prefix_width(rows) if width is None else width
    if size < n or (n and width < rows.lengths.max()):
        raise ValueError(f"padded shape ({size}, {width}) is smaller than the rows ({n}, {rows.lengths.max()})")
    items = np.full((size, width), rows.n_items, np.int32)
    lengths = np.ones(size, np.int32)  # padding rows: length 1 of the padding item, weight 0
    targets = np.zeros(size, np.int32)
    items[:n], lengths[:n], targets[:n] = rows.prefixes[:, :width], rows.lengths, rows.targets
    return {
        "items": jnp.asarray(items),
        "lengths": jnp.asarray(lengths),
        "targets": jnp.asarray(targets),
        "weight": jnp.asarray((np.arange(size) < n).astype(np.float32)),
    }


def prefix_width(rows) -> int:
    """The narrowest of `sbr.bucket_widths` that holds every prefix of `rows`."""
    from erase_jax.sbr import bucket_of, bucket_widths

    longest = int(rows.lengths.max()) if len(rows) else 1
    return bucket_widths(rows.max_length)[int(bucket_of(np.array([longest]), rows.max_length)[0])]


@dataclasses.dataclass(frozen=True)
class LastPrefixQueries:
    """A sequence model asked by user id: the user's query is a stored prefix.

    Its context is (the model's context, prefixes [n_users, L], lengths [n_users]), traced
    arrays, so one compilation serves every checkpoint; `scores` takes {"users": ids} like a
    CF model, which lets the exposure measures and top-k lists work unchanged.
    """

    model: Any

    def scores(self, params, context, query: Batch) -> jax.Array:
        inner, prefixes, lengths = context
        users = query["users"]
        return self.model.scores(params, inner, {"items": prefixes[users], "lengths": lengths[users]})


class SBREvaluation(Evaluation):
    """SBR: test utility over all test prefixes, and each user's last test prefix as the
    user's query (users without a test row are not scorable)."""

    def __post_init__(self):
        from erase_jax.sbr import task_from_interactions

        config = self.experiment.config
        inter = self.data.interactions
        self.test = task_from_interactions(inter, config.sequence, config.data.split_ratios).test
        test = self.test
        owners = inter.users[test.target_rows]
        order = np.lexsort((test.target_times, owners))  # rows are in time order within a sequence
        last = order[np.r_[owners[order][1:] != owners[order][:-1], True]] if len(order) else order
        prefixes = np.full((inter.n_users, test.max_length), inter.n_items, np.int32)
        lengths = np.ones(inter.n_users, np.int32)
        prefixes[owners[last]] = test.prefixes[last]
        lengths[owners[last]] = test.lengths[last]
        self.has_query = np.zeros(inter.n_users, bool)
        self.has_query[owners[last]] = True
        self.prefixes, self.lengths = jnp.asarray(prefixes), jnp.asarray(lengths)

    def test_metrics(self, model, params, context) -> dict:
        from erase_jax.sbr import evaluate_sbr

        ec = self.experiment.config.eval
        return evaluate_sbr(model, params, context, self.test, ec.topk, ec.metrics, ec.block_size)

    def by_user(self, model, params, context):
        return LastPrefixQueries(model), params, (context, self.prefixes, self.lengths)

    def scorable(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        return users[self.has_query[users]]


def request_rows(experiment):
    """The task's row source for the unlearning protocol."""
    return SBRRequestRows(experiment) if is_sequence_model(experiment.model) else CFRequestRows(experiment)
