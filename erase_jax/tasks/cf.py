"""Collaborative filtering (CF) as a task plug-in: user-item interactions, BPR batches, full ranking.

* Examples: the split's training pairs and its valid/test sets (`erase_jax.data.cf`).
* Training batches: BPR rows (user, positive, sampled negative) drawn on device
  (`erase_jax.batching.cf.CFBatcher`, row-uniform or the RecBole-code user-uniform sampler).
* Evaluation: every item ranked for every user, training (and for test, validation) items
  masked (`erase_jax.evaluators.cf_ranking`).
* Unlearning requests: a user's rows are its training interactions; the model context
  (LightGCN's graph) is rebuilt without the removed interactions; a model is queried with user
  ids.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import numpy as np

from erase_jax.batching.cf import CFBatcher, PositiveIndex, bucket_size, cf_rows_batch, host_negatives, padded_rows, positive_keys
from erase_jax.data.cf import CFTrainData, build_cf_examples
from erase_jax.data.loading import LoadedData, load_dataset
from erase_jax.data.user_rows import UserRows
from erase_jax.evaluators.cf_ranking import evaluate_cf
from erase_jax.tasks.base import Batch, Evaluation, register


class CFRequestRows:
    """CF: each user's training interactions; BPR batches with negatives drawn on the host."""

    accepts_sizes = True  # request_batches pads to given (forget, retain) sizes (`protocol.shapes`)

    def __init__(self, experiment):
        inter, split, train = experiment.data.interactions, experiment.data.split, experiment.examples.train
        self.experiment = experiment
        self.user_rows = UserRows.from_rows(inter, split.train)  # rows = interaction row ids
        # negatives are never a user's training item (the original's sampler)
        self.positives = PositiveIndex.build(train.n_users, train.users, train.items, train.n_items)
        self.positive_keys = positive_keys(train.users, train.items, train.n_items)  # the same, on the host
        # graph context size, fixed so that removals keep shapes
        self.capacity = len(self.positive_keys)

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

    def host_batch(self, rows: np.ndarray, key, part: int, size: int | None = None) -> dict[str, np.ndarray]:
        """The padded batch of `rows` on the host, negatives drawn on the host
        (`batching.cf.host_negatives`) from a generator seeded by the request key and `part`."""
        inter = self.experiment.data.interactions
        batch = padded_rows(inter.users[rows], inter.items[rows], size)
        key_data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        rng = np.random.default_rng([*np.asarray(key_data).ravel().tolist(), part])
        batch["neg"] = host_negatives(rng, batch["users"], self.positive_keys, inter.n_items)
        return batch

    def request_batches(self, users, removed_after: np.ndarray, retain_rows: np.ndarray, key, with_clean: bool,
                        sizes: tuple[int, int] | None = None):
        """(F, C or None, R) for a request of `users` (spec 5.4 step 6-8); `sizes`: the (forget,
        retain) rows to pad to, None: each to its power-of-two bucket.

        F's negatives are drawn with part 0 of the key, R's with part 2 (C shares F's negatives).
        The batches are built on the host and placed in one transfer: building a request
        compiles nothing (the device draw and the cutting once compiled some 25 programs per
        stream, seconds of compilation for a millisecond of work)."""
        forget_rows = self.user_rows.gather(users)
        # C shares F's padded length, so a method compiles once per (F bucket, R bucket) instead
        # of once per combination of three buckets. (Padding F to R's bucket as well cut compiles
        # further but made methods that step through F's rows, e.g. Fanchuan, 14x slower.)
        if sizes is None:
            forget = self.host_batch(forget_rows, key, 0, bucket_size(len(forget_rows)))
            retain = self.host_batch(retain_rows, key, 2)
        else:  # the stream's fixed sizes: F's and R's negatives in one draw (one program to compile)
            joined = self.host_batch(np.concatenate([forget_rows, retain_rows]), key, 0, sum(sizes))
            forget, retain = split_rows(joined, len(forget_rows), sizes[0])
        kept = ~removed_after[forget_rows]
        clean = kept_rows_batch(forget, kept, len(forget["weight"])) if with_clean and kept.any() else None
        return jax.device_put((forget, clean, retain))

    def evaluation(self, data) -> CFEvaluation:
        return CFEvaluation(self.experiment, data)


def split_rows(joined: Batch, n_first: int, first_size: int) -> tuple[Batch, Batch]:
    """A padded batch of [first rows, other rows, padding] cut into two padded batches: the
    first `n_first` real rows padded to `first_size`, then the rest, padded to the remaining
    length. Host arrays in and out (device arrays are copied to the host)."""
    total = len(joined["weight"])
    first = np.full(first_size, total - 1, np.int32)  # the joined batch's last row is padding
    first[:n_first] = np.arange(n_first)
    second = np.arange(n_first, n_first + total - first_size, dtype=np.int32)

    def take(index: np.ndarray, n_real: int) -> Batch:
        taken = {name: np.asarray(values)[index] for name, values in joined.items()}
        taken["weight"] = (np.arange(len(index)) < n_real).astype(np.float32)
        return taken

    return take(first, n_first), take(second, int(np.asarray(joined["weight"]).sum()) - n_first)


def kept_rows_batch(forget: Batch, kept: np.ndarray, size: int | None = None) -> Batch:
    """The clean batch: the forget batch's kept rows, WITH THE SAME sampled negatives (host
    arrays; `jax.device_put` places them).

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
    clean = {name: np.asarray(values)[index] for name, values in forget.items()}
    clean["weight"] = (np.arange(size) < len(positions)).astype(np.float32)
    return clean


class CFEvaluation(Evaluation):
    """CF: test utility, and models queried by user id."""

    def __post_init__(self):
        self.test = build_cf_examples(self.data.interactions, self.data.split).test

    def test_metrics(self, model, params, context) -> dict:
        ec = self.experiment.config.eval
        return evaluate_cf(model, params, context, self.test, ec.topk, ec.metrics, ec.block_size)

    def by_user(self, model, params, context):
        return model, params, context

    def scorable(self, users: np.ndarray) -> np.ndarray:
        return np.asarray(users)


@register
class CollaborativeFiltering:
    """The CF task plug-in (`erase_jax.tasks.base.Task`)."""

    name: ClassVar[str] = "CF"
    config_section: ClassVar[str | None] = None

    def check_config(self, config):
        return config

    def build(self, config, data: LoadedData | None = None):
        """(examples, loaded data, summary) of the configured data set; `data` replaces it."""
        loaded = data if data is not None else load_dataset(config.data, config.seed)
        examples = build_cf_examples(loaded.interactions, loaded.split)
        summary = {
            "source": loaded.source,
            "n_users": loaded.interactions.n_users,
            "n_items": loaded.interactions.n_items,
            "n_interactions": len(loaded.interactions),
            "n_train": len(loaded.split.train),
            "n_valid": len(loaded.split.valid),
            "n_test": len(loaded.split.test),
            "resolved_data": loaded.resolved,
        }
        return examples, loaded, summary

    def batcher(self, config, train: CFTrainData) -> CFBatcher:
        return CFBatcher.build(train, config.train.batch_size, sampler=config.train.sampler)

    def evaluate(self, model, params, context, eval_set, eval_config, per_row: bool = False):
        ec = eval_config
        return evaluate_cf(model, params, context, eval_set, ec.topk, ec.metrics, ec.block_size, per_user=per_row)

    def request_rows(self, experiment) -> CFRequestRows:
        return CFRequestRows(experiment)

    def positive_items(self, batch: Batch) -> jax.Array:
        return batch["pos"]

    def query_of(self, batch: Batch) -> Batch:
        return {"users": batch["users"]}
