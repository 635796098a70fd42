"""SISA: exact unlearning by sharded, isolated retraining (Bourtoule et al., S&P 2021).

The training interactions are split into K shards (`partition.py`), one submodel of the base
architecture is trained per shard (all K as one vmap, `shards.py`), and predictions combine
the submodels (SISA: the mean of their scores). A request retrains from scratch only the
shards whose training used its removed interactions, on what remains of their data, with the
same per-shard seed: the shards that held removed training rows and, as a shard's early
stopping validates on the validation pairs of its own items (`shard_validation="own"`), the
shards holding an item of a removed validation row (`shards_validating_on`). The result is
exactly the model that never saw the removed data, for the partition chosen when the ensemble
was built: the partition is kept, not recomputed, as in the SISA and RecEraser papers (a
balanced one measured its distances on embeddings pre-trained on all the data, so which shard
an untouched row sits in may still reflect a removed row). With `shard_validation="all"` it is not:
every shard's early stopping ranked every validation row against all shards' training rows,
and such a shard is not retrained. Removed test rows are used by no training and retrain
nothing. A trained aggregator (RecEraser's attention, `receraser.py`) saw all training data
and validates on the validation split, so it is retrained after every request that removes
training or validation rows, on the remaining rows only: from scratch by default, or
(`aggregator_warm_start`) from the previous aggregator's parameters. The warm start is much
cheaper but no longer exact for the aggregator itself: its starting point was fitted on data
that included the removed rows (the submodels, which hold the per-user and per-item
parameters, stay exact either way). The per-request diagnostics name the retrained shards
(and those retrained for a removed validation row), count the removed training and
validation rows, and count the removed rows left in the retrained shards' training data
(always 0: the claim that the forgotten data is absent is checked on the arrays that were
trained on, not assumed). Building the ensemble also compiles
what a request will run (`compile_requests`: the retrain epoch of every number of shards, the
warm aggregator's epoch), so a request's recorded time is training, not compilation.

How this plugs into the sequential runner (see `base.py`): the method's `start` hook builds
the ensemble from the trained run (the run's parameters serve as the pre-trained embeddings
of the balanced partitions) and returns it as the parameters the runner carries and
checkpoints: `{"shards": [K, ...] stacked base-model parameters, "aggregator": ...}`. Its
state holds the shard of every interaction row and the rows removed so far. `scorer` turns
those parameters into the recommender that is evaluated. Requests need `removed_rows` and the
`experiment` (training data and settings), which the runner puts into `RequestData`.

Differences from the paper's code: shard submodels and the aggregator validate on the run's
validation split without the removed rows (the public code validates on the test set), a
shard on the pairs of its own items with only its own rows masked (`shard_validation`);
negatives avoid each shard's own positives only (the code's avoid the user's positives in
all shards), so a shard depends on its data only; `shard_negatives="shard_items"` draws them
from the shard's items as the code does. The code's sampler (uniform users, then one of the
user's rows: `local_sample`) is `shard_sampler="users"` / `aggregator_sampler="users"`; the
default takes the run's `train.sampler` for the shards and visits every row for the aggregator.
The code trains the aggregator with Adagrad (lr 0.05, batch 256, accumulator 1e-8, at most 50
epochs): `aggregator_optimizer="adagrad"` with the run's `train.adagrad_*` settings; the
default is Adam on large batches (cheaper per epoch; see benchmarks/RESULTS.md for both).
Only base models whose context does not depend on the training data (BPR) are supported:
LightGCN would need one graph per shard.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.data.cf import eval_set
from erase_jax.evaluators.cf_ranking import evaluate_cf
from erase_jax.models.cf.bpr import CFShape
from erase_jax.train import TrainConfig
from erase_jax.unlearn.exact import partition as partitions
from erase_jax.unlearn.exact.aggregators import AttentionAggregator, MeanOfScores, ShardEmbeddings
from erase_jax.unlearn.exact.shards import (
    ShardData,
    compile_epoch,
    final_embeddings,
    init_shards,
    replace_shards,
    shard_slice,
    stacked_embeddings,
    train_shards,
)
from erase_jax.unlearn.methods.base import register


@register
@dataclasses.dataclass(frozen=True)
class SISA:
    """Random shards, one submodel each, mean of scores; exact retraining per request.

    `shard_*` options override the trained run's training settings for the submodels (None:
    the run's). `partition` may also be a balanced one (ubp / ibp / inbp) and `aggregation`
    "attention" (that combination is `RecEraser`).
    """

    name: ClassVar[str] = "sisa"
    updates_context: ClassVar[bool] = False  # evaluated through `scorer`, not the base context

    n_shards: int = 10
    partition: str = "random"  # random | ubp | ibp | inbp
    random_unit: str = "interactions"  # random partition: "interactions" or "users"
    partition_rounds: int = 30  # T, balanced partitions
    scalar_mean_anchors: bool = False  # the public code's scalar anchor update (a bug; compat only)
    # Balanced partitions on unit-length embeddings (each row divided by its norm), i.e. on
    # direction only. A BPR item embedding's norm grows with the item's popularity (ML-1M:
    # Spearman 0.63 between norm and rows; users 0.11), so on raw embeddings the distances of
    # Eq. 1-3 group items by popularity as much as by who likes them. The paper pre-trains WMF
    # instead. Measured on ML-1M (RESULTS).
    partition_unit_norm: bool = False
    aggregation: str = "mean"  # mean | attention
    attention_size: int = 32
    aggregator_epochs: int = 10
    aggregator_batch_size: int = 1024
    aggregator_learning_rate: float = 1e-3
    # The public code trains it with Adagrad (lr 0.05, batch 256); Adagrad's accumulator start
    # and epsilon come from the run's `train` settings (the code's: 1e-8 and 0).
    aggregator_optimizer: str = "adam"
    aggregator_reg_weight: float | None = None  # None: the base model's reg_weight (and its form)
    aggregator_transfer_reg: float = 0.0  # L2 on the transfer (W_i, b_i), the public code's 1e-5
    aggregator_user_dropout: float = 0.0  # the public code's 0.3 (keep 0.7)
    aggregator_stopping_step: int | None = None  # validations without gain; None: no early stop
    aggregator_warm_start: bool = False  # after a request, start from the previous aggregator
    aggregator_warm_epochs: int | None = None  # epochs of a warm-started retrain; None: aggregator_epochs
    # lr of a warm-started retrain; None: aggregator_learning_rate. A fresh Adam's first steps
    # are about lr per entry whatever the gradient, so the full lr knocks the fitted aggregator
    # off its optimum (measured on ML-1M: test Recall@20 0.2189 -> 0.2173 -> 0.2158 -> 0.2142
    # over three requests at 5e-3).
    aggregator_warm_learning_rate: float | None = None
    shard_epochs: int | None = None
    shard_batch_size: int | None = None
    shard_learning_rate: float | None = None
    shard_optimizer: str | None = None
    # The submodels' L2 strength (the base model's `reg_weight`); None: the trained run's. A
    # random shard's submodel fits a tenth of every user's and item's rows with as many
    # parameters as the full model and can want more than the full model's setting (on ML-1M
    # SISA gains from 0.01 to 0.03, RecEraser's InBP shards do not: RESULTS).
    shard_reg_weight: float | None = None
    shard_stopping_step: int | None = None
    shard_eval_step: int | None = None  # validate a shard every n epochs (stopping_step counts validations)
    shard_negatives: str = "all"  # all | shard_items (the RecEraser code's: items in the shard)
    shard_sampler: str | None = None  # rows | users (the RecEraser code's); None: the run's train.sampler
    # What a shard's early stopping validates on. "own": the validation pairs whose item the
    # shard holds, ranked among the shard's items with only its own rows masked
    # (`OwnItemsRanker`), so a shard depends on its own data and the validation pairs of its
    # items alone, and a request retrains exactly the shards that used a removed row, a
    # validation row included (`forget_rows`). "all" (the only behaviour before this option):
    # every validation pair, ranked among all items with the user's whole remaining history
    # masked, so a shard's stopping epoch also saw the other shards' rows and every validation
    # row, and a shard that was not retrained still carried a removed row's trace (a request
    # retrains only the shards holding removed training rows: not exact).
    shard_validation: str = "own"
    aggregator_sampler: str = "rows"  # rows | users

    # -- the UnlearningMethod interface ---------------------------------------------------

    def retain_budget(self, n_forget_rows: int) -> int:
        return 0  # retraining uses the shard's own remaining data, never sampled retain rows

    def init(self, model, params):
        raise TypeError(f"{self.name} builds its ensemble from the training data: call start(model, params, experiment)")

    def check_experiment(self, experiment) -> None:
        """Raises ValueError unless the trained run's model can be trained in shards (BPR-like:
        a context that is only the data's shape)."""
        _check_base_model(experiment)

    def start(self, model, params, experiment, train: bool = True):
        """(ensemble parameters, state) from the trained run; `train=False` gives only their
        structure (untrained), as the restore target of a resumed run or a checkpoint."""
        ensemble, state, _ = self.build_ensemble(model, params, experiment, train)
        return ensemble, state

    def build_ensemble(self, model, params, experiment, train: bool = True, partition_embeddings=None):
        """`start` plus the record of the partition and the training (sizes, epochs, seconds).

        `partition_embeddings`: (user [n_users, d], item [n_items, d]) arrays a balanced
        partition measures its distances on, instead of the trained run's embeddings (e.g. the
        paper's WMF pre-training: experiments/receraser_wmf_partition_ml1m.py).
        """
        self.check_experiment(experiment)
        shard_model = self.shard_model(model)
        n_rows = len(experiment.data.interactions)
        seeds = self.shard_seeds(experiment.config.seed)
        config = self.shard_train_config(experiment)
        shard_of_row = np.full(n_rows, -1, np.int32)
        removed = np.zeros(n_rows, bool)
        record = {}
        if train:
            started = time.perf_counter()
            chosen = self.make_partition(model, params, experiment, partition_embeddings)
            shard_of_row[experiment.data.split.train] = chosen.shard_of_row
            record.update({"partition_seconds": time.perf_counter() - started, **chosen.summary()})
            data, _ = shard_data(experiment, shard_of_row, removed, np.arange(self.n_shards))
            shard_fit = train_shards(
                shard_model, experiment.context, data, seeds, config,
                self.shard_validators(shard_model, experiment, shard_of_row, removed, np.arange(self.n_shards), config),
                experiment.examples.train.n_items, negatives=self.shard_negatives,
            )
            shard_params = shard_fit.params
            record["shards"] = shard_fit.record
            aggregator_params, record["aggregator"] = self.train_aggregator(model, shard_params, experiment, removed)
            record["ensemble_train_seconds"] = time.perf_counter() - started
            compiling = time.perf_counter()
            self.compile_requests(model, shard_params, experiment, shard_of_row, removed)
            # the wall time: compilation, and the setup around it (initial shards of every size)
            record["request_compile_seconds"] = time.perf_counter() - compiling
        else:
            steps = n_batches_for(experiment, config)
            shard_params, _ = init_shards(shard_model, experiment.context, config, seeds, steps)
            aggregator = self.aggregator(model)
            aggregator_params = aggregator.init(jax.random.PRNGKey(0), self.embeddings_of(model, shard_params, experiment))
        state = {
            "shard_of_row": shard_of_row,
            "removed": removed,
            "n_retrains": np.zeros(self.n_shards, np.int32),
            "ensemble_train_seconds": np.float64(record.get("ensemble_train_seconds", 0.0)),
        }
        return {"shards": shard_params, "aggregator": aggregator_params}, state, record

    def unlearn(self, model, params, state, request, key):
        del key  # every random choice of a retrain derives from the run's seed and the shard
        if request.removed_rows is None or request.experiment is None:
            raise ValueError(f"{self.name} needs request.removed_rows and request.experiment (the sequential runner sets them)")
        return self.forget_rows(model, params, state, request.experiment, request.removed_rows)

    def scorer(self, model, params, experiment):
        """(recommender, parameters, context) that score the ensemble."""
        return self.aggregator(model), params["aggregator"], self.embeddings_of(model, params["shards"], experiment)

    # -- the work --------------------------------------------------------------------------

    def forget_rows(self, model, params, state, experiment, removed_rows: np.ndarray):
        """Removes interaction rows: retrains from scratch every shard whose training used one
        of them, then the aggregator.

        A shard used a removed row when the row is one of its training rows or, with
        `shard_validation="own"`, a validation row its early stopping ranked
        (`shards_validating_on`). Retraining both kinds with their seeds makes every shard the
        one trained from scratch without the removed rows: exact. With "all" a shard's
        validation ranks every validation row against every shard's training rows, and only
        the shards holding removed training rows are retrained: not exact (`shard_validation`).
        The aggregator, trained on all remaining training rows and validated on the remaining
        validation rows, is retrained whenever a training or validation row is removed. Test
        rows are used by no training: a request removing only them retrains nothing.
        """
        started = time.perf_counter()
        removed_rows = np.asarray(removed_rows, np.int64)
        removed_before = np.asarray(state["removed"])
        removed = removed_before.copy()
        removed[removed_rows] = True
        shard_of_row = np.asarray(state["shard_of_row"])
        hit = shard_of_row[removed_rows]
        holding_removed = np.unique(hit[hit >= 0])
        # A validation row removed by an earlier request has been in no validation since: only
        # new ones count. Test rows are in no shard's training or validation, nor in the
        # aggregator's: removing them retrains nothing.
        valid_rows = np.intersect1d(removed_rows[~removed_before[removed_rows]], experiment.data.split.valid)
        validating_on_removed = (shards_validating_on(experiment, shard_of_row, removed_before, valid_rows)
                                 if self.shard_validation == "own" else np.array([], np.int64))
        affected = np.union1d(holding_removed, validating_on_removed).astype(np.int64)
        retrain_aggregator = len(holding_removed) > 0 or len(valid_rows) > 0
        n_retrains = np.asarray(state["n_retrains"]).copy()
        diagnostics = {
            "retrained_shards": affected.tolist(),
            "n_retrained_shards": len(affected),
            "removed_train_rows": int((hit >= 0).sum()),
            "removed_valid_rows": len(valid_rows),
            # every shard that validated on a removed validation row, whether or not it also
            # held a removed training row
            "retrained_for_validation": validating_on_removed.tolist(),
            "retrained_aggregator": retrain_aggregator,
            "ensemble_train_seconds": float(state["ensemble_train_seconds"]),
        }
        shard_params = params["shards"]
        if len(affected):
            shard_params = self._retrain_shards(model, shard_params, experiment, shard_of_row, removed, affected, diagnostics)
            diagnostics["shard_seconds"] = time.perf_counter() - started
            n_retrains[affected] += 1
        aggregator_params = params["aggregator"]
        if retrain_aggregator:
            aggregating = time.perf_counter()
            previous = params["aggregator"] if self.aggregator_warm_start else None
            aggregator_params, aggregator_record = self.train_aggregator(model, shard_params, experiment, removed, previous)
            diagnostics["aggregator_seconds"] = time.perf_counter() - aggregating
            diagnostics["aggregator_epochs"] = aggregator_record.get("epochs")
            diagnostics["aggregator_rows"] = aggregator_record.get("n_rows")
        params = {"shards": shard_params, "aggregator": aggregator_params}
        state = {**state, "removed": removed, "n_retrains": n_retrains}
        return params, state, diagnostics

    def _retrain_shards(self, model, shard_params, experiment, shard_of_row: np.ndarray, removed: np.ndarray,
                        shards: np.ndarray, diagnostics: dict):
        """`shard_params` with `shards` retrained from scratch on their remaining rows; records
        in `diagnostics` their epochs and the removed rows left in their data (always 0)."""
        config = self.shard_train_config(experiment)
        data, rows = shard_data(experiment, shard_of_row, removed, shards)
        diagnostics["forgotten_rows_in_retrained_shards"] = int(sum(removed[r].sum() for r in rows))
        shard_model = self.shard_model(model)
        shard_fit = train_shards(
            shard_model, experiment.context, data, self.shard_seeds(experiment.config.seed)[shards], config,
            self.shard_validators(shard_model, experiment, shard_of_row, removed, shards, config),
            experiment.examples.train.n_items, negatives=self.shard_negatives,
        )
        shard_params = replace_shards(shard_params, shards, shard_fit.params)
        jax.block_until_ready(shard_params)
        diagnostics["shard_epochs"] = shard_fit.record["epochs"]
        return shard_params

    def make_partition(self, model, params, experiment, embeddings=None) -> partitions.Partition:
        """The shards of the training rows: random, or balanced on the run's final embeddings
        (or on `embeddings`, (users, items), when given)."""
        train = experiment.examples.train
        if self.partition == "random":
            return partitions.random_partition(train.users, self.n_shards, experiment.config.seed, self.random_unit)
        if embeddings is None:
            embeddings = final_embeddings(model, params, experiment.context)
        users, items = (np.asarray(e) for e in embeddings)
        if self.partition_unit_norm:
            users, items = partitions.unit_rows(users), partitions.unit_rows(items)
        return partitions.balanced_partition(
            self.partition, train.users, train.items, users, items, self.n_shards, experiment.config.seed,
            self.partition_rounds, self.scalar_mean_anchors,
        )

    def aggregator(self, model):
        if self.aggregation == "mean":
            return MeanOfScores()
        if self.aggregation == "attention":
            reg = getattr(model, "reg_weight", 0.0) if self.aggregator_reg_weight is None else self.aggregator_reg_weight
            return AttentionAggregator(self.attention_size, reg, getattr(model, "reg_require_pow", False),
                                        self.aggregator_transfer_reg, self.aggregator_user_dropout)
        raise ValueError(f"aggregation must be 'mean' or 'attention', got {self.aggregation!r}")

    def train_aggregator(self, model, shard_params, experiment, removed: np.ndarray, previous=None):
        """The aggregator trained on all remaining training rows (submodels frozen): from
        scratch, or from `previous` (its parameters before the request) as a warm start.

        The submodels' stacked embeddings are computed once, here, and are the constant
        context of every step. It trains through the shard machinery as one "shard" holding
        every remaining row, padded to the full training set: the padding changes nothing
        (padding-only steps are masked), and the shapes, hence the compiled epoch, stay the
        same from request to request.
        """
        aggregator = self.aggregator(model)
        context = self.embeddings_of(model, shard_params, experiment)
        if not aggregator.trainable:
            return aggregator.init(jax.random.PRNGKey(0), context), {}
        data, rows = self._aggregator_data(experiment, removed)
        config = self._aggregator_config(experiment, warm=previous is not None)
        valid = remaining_valid_set(experiment, removed)
        metric, k = _metric_and_k(config.valid_metric)

        def validate(params):
            return evaluate_cf(aggregator, params, context, valid, (k,), (metric,))[config.valid_metric]

        seed = np.array([experiment.config.seed], np.int64)
        start = None if previous is None else jax.tree.map(lambda x: jnp.asarray(x)[None], previous)
        result = train_shards(aggregator, context, data, seed, config, validate if len(valid.users) else None,
                              experiment.data.interactions.n_items, start)
        record = {key: result.record[key] for key in ("epochs", "best_epoch", "best_valid", "train_seconds")}
        record["n_rows"] = len(rows)
        return shard_slice(result.params, 0), record

    def _aggregator_data(self, experiment, removed: np.ndarray):
        """The aggregator's one "shard": every remaining training row, padded to all of them."""
        inter, rows = experiment.data.interactions, remaining_train_rows(experiment, removed)
        data = ShardData.build(inter.n_users, inter.n_items, [inter.users[rows]], [inter.items[rows]], len(experiment.data.split.train))
        return data, rows

    def _aggregator_config(self, experiment, warm: bool) -> TrainConfig:
        epochs, learning_rate = self.aggregator_epochs, self.aggregator_learning_rate
        if warm and self.aggregator_warm_epochs is not None:
            epochs = self.aggregator_warm_epochs
        if warm and self.aggregator_warm_learning_rate is not None:
            learning_rate = self.aggregator_warm_learning_rate
        stopping_step = epochs if self.aggregator_stopping_step is None else self.aggregator_stopping_step
        return TrainConfig(
            epochs=epochs, batch_size=self.aggregator_batch_size,
            learning_rate=learning_rate, optimizer=self.aggregator_optimizer,
            adagrad_initial_accumulator=experiment.config.train.adagrad_initial_accumulator,
            adagrad_eps=experiment.config.train.adagrad_eps,
            valid_metric=experiment.config.train.valid_metric, stopping_step=stopping_step,
            sampler=self.aggregator_sampler,
        )

    def compile_requests(self, model, shard_params, experiment, shard_of_row: np.ndarray, removed: np.ndarray) -> float:
        """Compiles what a request runs and the ensemble's training did not: the retrain epoch
        of every number of shards a request can retrain (the ensemble compiled all K as one
        vmap; one shard runs the unvmapped epoch, 2..K-1 a vmap of that many) and, for a
        warm-started aggregator, its retrain epoch (another learning rate is another compiled
        step). Every shard and every request has the same padded shapes, so this happens once,
        here, and a request's time is training. Several shards per request are common where
        forget sets hold validation rows (`shards_validating_on`). Returns the seconds spent."""
        config = self.shard_train_config(experiment)
        seeds = self.shard_seeds(experiment.config.seed)
        seconds = 0.0
        # The first n shards' data of every size n are slices of one build (same padded shapes).
        largest, _ = shard_data(experiment, shard_of_row, removed, np.arange(max(self.n_shards - 1, 1)))
        for n_retrained in range(1, self.n_shards):
            retrained = jax.tree.map(lambda x, n=n_retrained: x[:n], largest)
            seconds += compile_epoch(self.shard_model(model), experiment.context, retrained, seeds[:n_retrained], config,
                                     experiment.examples.train.n_items, self.shard_negatives)
        aggregator = self.aggregator(model)
        if aggregator.trainable and self.aggregator_warm_start:
            data, _ = self._aggregator_data(experiment, removed)
            context = self.embeddings_of(model, shard_params, experiment)
            seconds += compile_epoch(aggregator, context, data, np.array([experiment.config.seed], np.int64),
                                     self._aggregator_config(experiment, warm=True), experiment.data.interactions.n_items)
        return seconds

    def shard_model(self, model):
        """The submodels' architecture: the trained run's model, with `shard_reg_weight`."""
        if self.shard_reg_weight is None:
            return model
        if not hasattr(model, "reg_weight"):
            raise ValueError(f"shard_reg_weight needs a model with a reg_weight; {type(model).__name__} has none")
        return dataclasses.replace(model, reg_weight=self.shard_reg_weight)

    def shard_validators(self, model, experiment, shard_of_row: np.ndarray, removed: np.ndarray, shards: np.ndarray, config: TrainConfig):
        """The early-stopping validator of each of `shards` (`shard_validation`)."""
        if self.shard_validation == "all":
            return validator(model, experiment, removed, config)
        if self.shard_validation == "own":
            return [own_validator(model, experiment, shard_of_row, removed, s, config) for s in shards]
        raise ValueError(f"shard_validation must be 'all' or 'own', got {self.shard_validation!r}")

    def embeddings_of(self, model, shard_params, experiment) -> ShardEmbeddings:
        users, items = stacked_embeddings(model, shard_params, experiment.context)
        return ShardEmbeddings(users, items)

    def shard_seeds(self, seed: int) -> np.ndarray:
        """One seed per shard, fixed by the run's seed: a retrain repeats its shard's run."""
        return np.array([seed * 1000 + s for s in range(self.n_shards)], np.int64)

    def shard_train_config(self, experiment) -> TrainConfig:
        overrides = {
            "epochs": self.shard_epochs,
            "batch_size": self.shard_batch_size,
            "learning_rate": self.shard_learning_rate,
            "optimizer": self.shard_optimizer,
            "stopping_step": self.shard_stopping_step,
            "eval_step": self.shard_eval_step,
            "sampler": self.shard_sampler,
        }
        return dataclasses.replace(experiment.config.train, **{k: v for k, v in overrides.items() if v is not None})


def _check_base_model(experiment) -> None:
    if not isinstance(experiment.context, CFShape):
        raise ValueError(
            f"sharded training supports models whose context is only the data's shape (BPR); "
            f"{experiment.config.model} trains on a data-dependent context (one graph per shard is not built)"
        )


def shard_data(experiment, shard_of_row: np.ndarray, removed: np.ndarray, shards: np.ndarray):
    """The padded training data of `shards` and, per shard, the interaction rows in it: the
    shard's rows minus every removed row. Padded to the largest shard at partition time, so
    every retrain of the same number of shards reuses one compiled epoch."""
    inter = experiment.data.interactions
    width = int(np.bincount(shard_of_row[shard_of_row >= 0]).max())
    rows = [remaining_shard_rows(shard_of_row, removed, s) for s in shards]
    data = ShardData.build(
        inter.n_users, inter.n_items, [inter.users[r] for r in rows], [inter.items[r] for r in rows], width
    )
    return data, rows


def remaining_shard_rows(shard_of_row: np.ndarray, removed: np.ndarray, shard: int) -> np.ndarray:
    """The interaction rows of `shard` that are not removed."""
    return np.nonzero((shard_of_row == shard) & ~removed)[0]


def n_batches_for(experiment, config: TrainConfig) -> int:
    return -(-len(experiment.data.split.train) // config.batch_size)


def remaining_train_rows(experiment, removed: np.ndarray) -> np.ndarray:
    rows = experiment.data.split.train
    return rows[~removed[rows]]


def remaining_valid_rows(experiment, removed: np.ndarray) -> np.ndarray:
    rows = experiment.data.split.valid
    return rows[~removed[rows]]


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
# which would pad ML-1M's 2,540-item shard to more slots than the data set has items).
OWN_ITEM_SLOTS = 256


@dataclasses.dataclass(frozen=True)
class OwnItemsRanker:
    """`model` ranking only a shard's items: slot j scores item `params["item_ids"][j]`, and
    padding slots (`params["real"]` False) score -inf.

    A submodel's embedding of an item it holds no row of is its untrained initial draw: its
    scores say nothing about the shard's data, so the shard is judged on its own items only.
    Scoring just those items (not all, then masking) makes a validation cost in proportion to
    the shard's items (ML-1M's InBP shards on seed 2 hold 122-2,979 of its 3,706).
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
    metric, k = _metric_and_k(config.valid_metric)
    return lambda params: evaluate_cf(model, as_params(params), experiment.context, targets, (k,), (metric,))[config.valid_metric]


def _metric_and_k(valid_metric: str) -> tuple[str, int]:
    metric, _, k = valid_metric.partition("@")
    return metric, int(k)
