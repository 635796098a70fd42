"""Next-basket recommendation (NBR) as a task plug-in: history baskets -> the next basket.

* Data: a basket table (`Interactions` with one row per (user, basket, item), the basket id in
  `sessions`), read from a merged basket JSON or a raw public form
  (`erase_jax.data.basket_loading`); with `data.spam_ratio`, fake basket users are appended
  (`erase_jax.data.fraud_baskets`, next-basket spec 4.4).
* Examples: one per user and phase, the original's temporal leave-one-out (spec 1.3;
  `erase_jax.data.baskets.build_basket_examples`), configured by the `basket` section.
* Training batches: histories as padded item occurrences in width buckets
  (`erase_jax.batching.baskets`).
* Evaluation: every item ranked for every test example, repeat items allowed
  (`erase_jax.evaluators.basket_ranking`).
* Unlearning requests: a user's training rows are its train-phase example (one per user). The
  forget data F are the users' examples built from the full data, the clean data C their
  examples rebuilt from the data without the removed rows, as the retrain sees them (a basket
  emptied by the removal disappears, so the target can move; a user left with too few
  baskets has no C), R other users' examples. The original kept sensitive items in C's
  history and target (spec 5.8). A model is queried for a user with the user's test
  example of the data without the removals, for the unlearned model and the retrain alike
  (the original scored unlearned models on uncleaned histories, spec 5.12). A user the
  removals took out altogether (the random scenario forgets whole users) is queried with the
  test example of the full data: what the model still predicts from the history it was asked
  to forget, next to what the retrain predicts from it (the forgetting measures of
  `erase_jax.evaluators.forgetting`); utility counts only the users left.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.batching.baskets import BasketBatcher
from erase_jax.data.basket_split import basket_split
from erase_jax.data.baskets import (
    BasketConfig,
    BasketExamples,
    BasketRows,
    basket_batch,
    build_basket_examples,
    padded_rows,
    width_of,
)
from erase_jax.data.loading import DataConfig, LoadedData
from erase_jax.data.user_rows import UserRows
from erase_jax.evaluators.basket_queries import UserHistoryQueries
from erase_jax.tasks.base import Batch, Evaluation, register

QUERY_FIELDS = ("users", "items", "baskets", "lengths", "n_baskets")


def load_basket_data(data: DataConfig, basket: BasketConfig, seed: int) -> LoadedData:
    """Reads the configured basket data (and appends fraud baskets with `data.spam_ratio`)."""
    from erase_jax.data.basket_loading import read_basket_data
    from erase_jax.data.fraud_baskets import fraud_baskets

    inter, source = read_basket_data(data, seed)
    fraud = None
    if data.spam_ratio is not None:
        inter, fraud = fraud_baskets(inter, data.spam_ratio, data.spam_target_items, seed)
    resolved = dataclasses.asdict(data) | {"split": "basket", "min_baskets": basket.min_baskets, "spam_attack": "fraud_baskets"}
    resolved = {k: list(v) if isinstance(v, tuple) else v for k, v in resolved.items()}
    return LoadedData(inter, basket_split(inter, basket.min_baskets), source, resolved, fraud=fraud)


def summary(loaded: LoadedData, examples: BasketExamples) -> dict[str, Any]:
    inter = loaded.interactions
    return {
        "source": loaded.source,
        "n_users": inter.n_users,
        "n_items": inter.n_items,
        "n_interactions": len(inter),
        "n_baskets": int(len(np.unique(inter.sessions))) if inter.sessions is not None else 0,
        "n_train": len(examples.train),
        "n_valid": len(examples.valid),
        "n_test": len(examples.test),
        "resolved_data": loaded.resolved,
    }


class NBRRequestRows:
    """NBR: each user's train-phase example; C from the data without the removals (module doc).

    A request's batches are padded to power-of-two row counts (`row_bucket`) and one history
    width for F, C and R; under the "stream" request-shape policy (`protocol.shapes`) to the
    stream's row counts and widest request (`request_width`), padding rows weighing 0.
    """

    accepts_sizes = True  # request_batches pads to given (forget, retain) sizes and width

    def __init__(self, experiment):
        self.experiment = experiment
        train = experiment.examples.train
        self.user_rows = UserRows.from_groups(train.users, experiment.data.interactions.n_users)
        self._full_test: BasketRows | None = None  # the full data's test examples, built once

    row_bucket = staticmethod(padded_rows)  # the padded row count of n rows ("buckets" policy)

    def context(self, removed: np.ndarray):
        del removed  # a basket model's context depends on the training data's sizes only
        return self.experiment.context

    def request_width(self, users, retain_rows: np.ndarray) -> int:
        """The history width of a request's batches (C, rebuilt without removed rows, is never
        wider than F)."""
        train = self.experiment.examples.train
        return max(width_of(train.select(self.user_rows.gather(users))), width_of(train.select(retain_rows)))

    def request_batches(self, users, removed_after: np.ndarray, retain_rows: np.ndarray, key, with_clean: bool,
                        sizes: tuple[int, int] | None = None, width: int | None = None):
        """(F, C or None, R); `sizes` the (forget, retain) rows and `width` the history width to
        pad to, None: power-of-two rows and the request's own widest history."""
        del key  # nothing is sampled
        train = self.experiment.examples.train
        forget_rows, retain = train.select(self.user_rows.gather(users)), train.select(retain_rows)
        clean_rows = self.counterfactual_rows(users, removed_after) if with_clean else None
        # one width for F, C and R (methods may join them into one batch)
        if width is None:
            width = max(width_of(rows) for rows in (forget_rows, retain, clean_rows) if rows is not None and len(rows))
        forget_size, retain_size = (None, None) if sizes is None else sizes
        k = train.targets.shape[1]  # every phase's target width; a rebuilt C can only be narrower
        forget = basket_batch(forget_rows, size=forget_size, width=width, target_width=k)
        clean = None
        if clean_rows is not None and len(clean_rows):
            clean = basket_batch(clean_rows, size=forget["items"].shape[0], width=width, target_width=k)
        return forget, clean, basket_batch(retain, size=retain_size, width=width, target_width=k)

    def counterfactual_rows(self, users, removed_after: np.ndarray) -> BasketRows:
        """The train-phase examples of `users` rebuilt from their rows minus the removed ones."""
        experiment = self.experiment
        inter = experiment.data.interactions
        rows = np.flatnonzero(np.isin(inter.users, users) & ~removed_after)
        return build_basket_examples(inter.select(rows), experiment.config.basket).train

    def evaluation(self, data) -> NBREvaluation:
        if self._full_test is None:
            self._full_test = build_basket_examples(self.experiment.data.interactions, self.experiment.config.basket).test
        return NBREvaluation(self.experiment, data, self._full_test)


@dataclasses.dataclass
class NBREvaluation(Evaluation):
    """NBR: test utility over every user's test example, and that example's history as the
    user's query; a user without one here is queried with its example in `full_test` (the full
    data's, module doc), a user with neither is not scorable."""

    full_test: BasketRows | None = None

    def __post_init__(self):
        config = self.experiment.config
        inter = self.data.interactions
        self.test = build_basket_examples(inter, config.basket).test
        test, queries = self.test, [self.test]
        if self.full_test is not None:
            queries.append(self.full_test.select(np.flatnonzero(~np.isin(self.full_test.users, test.users))))
        width = max(width_of(rows) for rows in queries)
        by_user = np.full(inter.n_users, sum(map(len, queries)), np.int64)  # the last row: an empty history
        padded, start = [], 0
        for rows in queries:
            by_user[rows.users] = start + np.arange(len(rows))
            padded.append(basket_batch(rows, size=len(rows), width=width) if len(rows) else None)
            start += len(rows)
        padded.append(basket_batch(test.select(np.zeros(0, np.int64)), size=1, width=width))
        fields = ("items", "baskets", "lengths", "n_baskets")
        stacked = {name: jnp.concatenate([batch[name] for batch in padded if batch is not None]) for name in fields}
        self.histories = {name: stacked[name][by_user] for name in fields}
        self.histories["users"] = jnp.arange(inter.n_users, dtype=jnp.int32)
        self.has_query = np.zeros(inter.n_users, bool)
        for rows in queries:
            self.has_query[rows.users] = True

    def test_metrics(self, model, params, context) -> dict:
        ec = self.experiment.config.eval
        return self.experiment.task.evaluate(model, params, context, self.test, ec)

    def by_user(self, model, params, context):
        return UserHistoryQueries(model), params, (context, self.histories)

    def scorable(self, users: np.ndarray) -> np.ndarray:
        users = np.asarray(users)
        return users[self.has_query[users]]


@register
class NextBasket:
    """The NBR task plug-in (`erase_jax.tasks.base.Task`); owns the `basket` config section."""

    name: ClassVar[str] = "NBR"
    config_section: ClassVar[str | None] = "basket"

    def check_config(self, config):
        return config if config.basket is not None else dataclasses.replace(config, basket=BasketConfig())

    def build(self, config, data: LoadedData | None = None):
        """(examples, loaded data, summary); `data` replaces the configured data."""
        loaded = data if data is not None else load_basket_data(config.data, config.basket, config.seed)
        examples = build_basket_examples(loaded.interactions, config.basket)
        return examples, loaded, summary(loaded, examples)

    def batcher(self, config, train: BasketRows) -> BasketBatcher:
        if config.train.sampler != "rows":
            raise ValueError(f"train.sampler={config.train.sampler!r} is for CF models; {config.model} trains on basket examples")
        return BasketBatcher.build(train, config.train.batch_size, config.basket.mix_lengths)

    def evaluate(self, model, params, context, eval_set, eval_config, per_row: bool = False):
        """The configured metrics plus the repeat / explore split of recall (always reported)."""
        from erase_jax.evaluators.basket_ranking import REPEAT_METRICS, evaluate_nbr

        ec = eval_config
        metrics = (*ec.metrics, *(m for m in REPEAT_METRICS if m not in ec.metrics))
        return evaluate_nbr(model, params, context, eval_set, ec.topk, metrics, ec.block_size, per_row=per_row)

    def request_rows(self, experiment) -> NBRRequestRows:
        return NBRRequestRows(experiment)

    def draw_forget_set(self, experiment, config, seed: int):
        """The sensitive and random scenarios' requests by the basket rules
        (`erase_jax.data.scenarios.baskets`: only users with enough baskets count and forget)."""
        from erase_jax.data.scenarios.baskets import random_basket_forget_set, sensitive_basket_forget_set

        inter, min_baskets = experiment.data.interactions, experiment.config.basket.min_baskets
        if config.scenario == "sensitive":
            return sensitive_basket_forget_set(inter, config.category, config.fraction, seed, min_baskets)
        if config.random_unit != "users":
            raise ValueError(f"random_unit {config.random_unit!r}: basket data forget whole users ('users')")
        return random_basket_forget_set(inter, config.fraction, seed, min_baskets)

    def positive_items(self, batch: Batch) -> jax.Array:
        """The target basket's items [b, K], padding as -1 (several positives per row)."""
        items = batch["targets"]
        return jnp.where(jnp.arange(items.shape[1])[None, :] < batch["target_sizes"][:, None], items, -1)

    def query_of(self, batch: Batch) -> Batch:
        return {name: batch[name] for name in QUERY_FIELDS}
