"""Session-based recommendation (SBR) as a task plug-in: prefix -> next-item rows, CE over all items.

* Examples: each sequence (a user's history, or a session cut by a time gap) gives prefix ->
  next-item rows, split per sequence (`erase_jax.data.sequences`); Diginetica click files are
  read as sessions.
* Training batches: padded prefixes in length buckets (`erase_jax.batching.sequences`).
* Evaluation: every item ranked for every test prefix (`erase_jax.evaluators.sequence_ranking`).
* Unlearning requests: a user's rows are the prefix rows of its sequence; the forget data F are
  the rows built from the user's full sequence, the clean data C the rows of the
  COUNTERFACTUAL sequence without the forgotten items (re-augmented and re-split, as the
  retrain sees it), R other users' rows. The context (sizes only) never changes. A model is
  queried for a user with the user's last test prefix of the data without the removals, so
  sensitive exposure is measured on the history with the forgotten items removed, for the
  unlearned model and the retrain alike. The original fed its unlearning runs histories that
  still held the sensitive items and its retrain runs cleaned ones (docs/differences.md). A user
  the removals took out altogether is queried with its last test prefix of the full data (what
  the model still predicts from the forgotten history; `SBREvaluation`).
* `sequence.objective: all_positions` (causal models): training batches are chunk rows scored
  at every position (`erase_jax.data.positions`); the retrains train the same way (they run the
  same config), and a request's F, C and R are prefix rows cut to the chunk contexts, the same
  (context, target) pairs and the same mean loss, one row per pair.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.batching.cf import bucket_size
from erase_jax.batching.sequences import SequenceBatcher
from erase_jax.data.interactions import Interactions
from erase_jax.data.loading import (
    DataConfig,
    LoadedData,
    inject_spam,
    load_dataset,
    resolve_data_root,
)
from erase_jax.data.positions import chunk_contexts, position_rows
from erase_jax.data.sequences import (
    SequenceConfig,
    SequenceRows,
    SequenceSplit,
    build_sequences,
    read_diginetica,
)
from erase_jax.data.splits import chronological_split
from erase_jax.data.user_rows import UserRows
from erase_jax.evaluators.sequence_ranking import evaluate_sbr
from erase_jax.tasks.base import Batch, Evaluation, register


@dataclasses.dataclass(frozen=True)
class SequenceExamples:
    train: SequenceRows
    valid: SequenceRows
    test: SequenceRows


def load_sequence_data(data: DataConfig, sequence: SequenceConfig, seed: int) -> tuple[LoadedData, SequenceExamples]:
    """Reads the configured data set and builds its split prefix rows.

    A folder holding `train-item-views.csv` is read as Diginetica clicks (sessions are its
    sequences); anything else goes through `load_dataset` (RecBole atomic files; SBR configs
    set the k-core minimums to 0, as the original applies none to SBR data). With
    `data.spam_ratio`, fake sessions are injected before the split (spec 3.3.1; the
    attack is "fraud_sessions" unless `data.spam_attack` says otherwise), copying the
    statistics of the sessions the task trains on: one per user, or cut by
    `sequence.session_gap` when grouping by session.
    """
    data = dataclasses.replace(data, spam_attack=data.spam_attack or "fraud_sessions")
    session_gap = sequence.session_gap if sequence.group_by == "session" else None
    clicks = _diginetica_file(data)
    if clicks is not None:
        inter, fraud = read_diginetica(clicks), None
        if data.spam_ratio is not None:
            inter, fraud = inject_spam(inter, data, seed, session_gap)
        resolved = dataclasses.asdict(data) | {"split": "sequence", "min_user_interactions": 0, "min_item_interactions": 0}
        resolved = {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}
        loaded = LoadedData(inter, chronological_split(inter, data.split_ratios), str(clicks.parent), resolved, fraud=fraud)
    else:
        loaded = load_dataset(data, seed, session_gap)
    split = build_sequences(loaded.interactions, sequence, data.split_ratios)
    return loaded, SequenceExamples(split.train, split.valid, split.test)


def task_from_interactions(inter: Interactions, sequence: SequenceConfig, ratios=(0.8, 0.1, 0.1)) -> SequenceExamples:
    split: SequenceSplit = build_sequences(inter, sequence, ratios)
    return SequenceExamples(split.train, split.valid, split.test)


def _diginetica_file(data: DataConfig) -> Path | None:
    for folder in (resolve_data_root(data.data_root) / data.dataset, Path(data.dataset).expanduser()):
        if (folder / "train-item-views.csv").is_file():
            return (folder / "train-item-views.csv").resolve()
    return None


def summary(loaded: LoadedData, task: SequenceExamples) -> dict[str, Any]:
    inter = loaded.interactions
    return {
        "source": loaded.source,
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "n_interactions": len(inter),
        "n_train": len(task.train),
        "n_valid": len(task.valid),
        "n_test": len(task.test),
        "resolved_data": loaded.resolved,
    }


def build_task(data: DataConfig, sequence: SequenceConfig, seed: int, loaded: LoadedData | None = None):
    """(loaded data, SequenceExamples, summary) for the train job; `loaded` replaces the configured data."""
    if loaded is None:
        loaded, task = load_sequence_data(data, sequence, seed)
    else:
        task = task_from_interactions(loaded.interactions, sequence, data.split_ratios)
    return loaded, task, summary(loaded, task)


class SBRRequestRows:
    """SBR: each user's training prefix rows; C from the counterfactual sequence (module doc)."""

    accepts_sizes = True  # request_batches pads to given (forget, retain) sizes and width

    def __init__(self, experiment):
        self.experiment = experiment
        train = experiment.examples.train
        inter = experiment.data.interactions
        # rows = indices into task.train, grouped by the user of their target interaction
        # (with per-session sequences a user owns several sequences)
        self.user_rows = UserRows.from_groups(inter.users[train.target_rows], inter.n_users)
        self._full_queries = None  # (has_query, prefixes, lengths) of the full data, built once

    def context(self, removed: np.ndarray):
        del removed  # a sequence model's context is its sizes
        return self.experiment.context

    def request_width(self, users, retain_rows: np.ndarray) -> int:
        """The prefix width of a request's batches (C never has longer prefixes than F)."""
        train = self.experiment.examples.train
        forget_rows = self.in_objective(train.select(self.user_rows.gather(users)))
        return max(prefix_width(forget_rows), prefix_width(self.in_objective(train.select(retain_rows))))

    def request_batches(self, users, removed_after: np.ndarray, retain_rows: np.ndarray, key, with_clean: bool,
                        sizes: tuple[int, int] | None = None, width: int | None = None):
        """(F, C or None, R); `sizes` the (forget, retain) rows and `width` the prefix width to
        pad to (`protocol.shapes`' "stream" policy), None: each to its own buckets."""
        del key  # nothing is sampled: CE over all items needs no negatives
        train = self.experiment.examples.train
        forget_rows = self.in_objective(train.select(self.user_rows.gather(users)))
        retain = self.in_objective(train.select(retain_rows))
        # one width for F, C and R (methods may join them into one batch); removing items
        # never adds rows or lengthens a prefix, so C fits F's shape
        if width is None:
            width = max(prefix_width(forget_rows), prefix_width(retain))
        forget_size, retain_size = (None, None) if sizes is None else sizes
        forget = sequence_batch(forget_rows, forget_size, width=width)
        clean = None
        if with_clean:
            counterfactual = self.counterfactual_rows(users, removed_after)
            if len(counterfactual):
                clean = sequence_batch(counterfactual, *forget["items"].shape)
        return forget, clean, sequence_batch(retain, retain_size, width=width)

    def counterfactual_rows(self, users, removed_after: np.ndarray):
        """The training prefix rows of `users` built from their interactions minus the removed ones."""
        from erase_jax.data.sequences import build_sequences

        experiment = self.experiment
        inter = experiment.data.interactions
        rows = np.flatnonzero(np.isin(inter.users, users) & ~removed_after)
        return self.in_objective(build_sequences(inter.select(rows), experiment.config.sequence, experiment.config.data.split_ratios).train)

    def in_objective(self, rows: SequenceRows) -> SequenceRows:
        """Prefix rows as the configured objective sees them: with all_positions, each context
        cut to its chunk's (`chunk_contexts`), so F, C and R are prefix-row batches of exactly
        the training objective's (context, target) pairs and every method runs unchanged."""
        return chunk_contexts(rows) if self.experiment.config.sequence.objective == "all_positions" else rows

    def evaluation(self, data) -> SBREvaluation:
        if self._full_queries is None:
            full = SBREvaluation(self.experiment, self.experiment.data)
            self._full_queries = (full.has_query, full.prefixes, full.lengths)
        return SBREvaluation(self.experiment, data, self._full_queries)


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
    from erase_jax.batching.sequences import bucket_of, bucket_widths

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


@dataclasses.dataclass
class SBREvaluation(Evaluation):
    """SBR: test utility over all test prefixes, and each user's last test prefix as the
    user's query; a user without a test row here (the random scenario removes whole users) is
    queried with its last test prefix of the full data, `full_queries` (has_query, prefixes,
    lengths), as in `erase_jax.tasks.nbr`; a user with neither is not scorable."""

    full_queries: tuple | None = None

    def __post_init__(self):
        from erase_jax.tasks.sbr import task_from_interactions

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
        if self.full_queries is not None:
            full_has, full_prefixes, full_lengths = (np.asarray(a) for a in self.full_queries)
            missing = full_has & ~self.has_query
            width = max(prefixes.shape[1], full_prefixes.shape[1])
            prefixes = np.pad(prefixes, ((0, 0), (0, width - prefixes.shape[1])), constant_values=inter.n_items)
            prefixes[missing, : full_prefixes.shape[1]] = full_prefixes[missing]
            lengths[missing] = full_lengths[missing]
            self.has_query |= missing
        self.prefixes, self.lengths = jnp.asarray(prefixes), jnp.asarray(lengths)

    def test_metrics(self, model, params, context) -> dict:
        from erase_jax.evaluators.sequence_ranking import evaluate_sbr

        ec = self.experiment.config.eval
        return evaluate_sbr(model, params, context, self.test, ec.topk, ec.metrics, ec.block_size)

    def by_user(self, model, params, context):
        return LastPrefixQueries(model), params, (context, self.prefixes, self.lengths)

    def scorable(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        return users[self.has_query[users]]


@register
class SessionBased:
    """The SBR task plug-in (`erase_jax.tasks.base.Task`); owns the `sequence` config section."""

    name: ClassVar[str] = "SBR"
    config_section: ClassVar[str | None] = "sequence"

    def check_config(self, config):
        from erase_jax.config import ConfigError
        from erase_jax.models import get_model_class

        config = config if config.sequence is not None else dataclasses.replace(config, sequence=SequenceConfig())
        if config.sequence.objective == "all_positions" and not getattr(get_model_class(config.model), "causal", False):
            raise ConfigError(f"sequence.objective=all_positions needs a causal model (GRU4Rec, SASRec); "
                              f"{config.model} is not causal: train it with objective=prefixes")
        return config

    def build(self, config, data: LoadedData | None = None):
        """(examples, loaded data, summary); `data` replaces the configured data."""
        loaded, examples, summary_ = build_task(config.data, config.sequence, config.seed, data)
        return examples, loaded, summary_

    def batcher(self, config, train: SequenceRows) -> SequenceBatcher:
        if config.train.sampler != "rows":
            raise ValueError(f"train.sampler={config.train.sampler!r} is for CF models; {config.model} trains on sequence rows")
        if config.sequence.objective == "all_positions":
            return SequenceBatcher.build_positions(position_rows(train), config.train.batch_size, config.sequence.mix_lengths)
        return SequenceBatcher.build(train, config.train.batch_size, config.sequence.mix_lengths)

    def evaluate(self, model, params, context, eval_set, eval_config, per_row: bool = False):
        ec = eval_config
        return evaluate_sbr(model, params, context, eval_set, ec.topk, ec.metrics, ec.block_size, per_row=per_row)

    def request_rows(self, experiment) -> SBRRequestRows:
        return SBRRequestRows(experiment)

    def positive_items(self, batch: Batch) -> jax.Array:
        return batch["targets"]

    def query_of(self, batch: Batch) -> Batch:
        return {"items": batch["items"], "lengths": batch["lengths"]}
