"""The shard ensemble that SISA and RecEraser share: its settings, how it is built and retrained.

`ShardEnsemble` holds every setting of the ensemble (the fields of `SISA` and `RecEraser`) and
builds it from a trained run: the training rows are split into K shards (`make_partition`:
random, or balanced on the run's embeddings, `partition.py`), one submodel of the base
architecture is trained per shard from its own seed (all K as one vmap, `training.py`), each
validated as `shard_validation` says (`validation.py`), and an aggregator combines them
(`aggregators.py`: the mean of the scores, or RecEraser's attention, trained on all remaining
training rows with the submodels frozen). `retrain_shards` and `train_aggregator` redo those
steps on the remaining rows (`rows.py`) after a request; what a request retrains is `SISA`'s
decision (`sisa.py`). `compile_requests` compiles, while the ensemble is built, every epoch a
request can run, so a request's recorded time is training, not compilation.

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

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.evaluators.cf_ranking import evaluate_cf
from erase_jax.models.cf.bpr import CFShape
from erase_jax.train import TrainConfig
from erase_jax.unlearn.exact import partition as partitions
from erase_jax.unlearn.exact.aggregators import AttentionAggregator, MeanOfScores, ShardEmbeddings
from erase_jax.unlearn.exact.rows import aggregator_data, n_batches_for, shard_data
from erase_jax.unlearn.exact.shards import (
    final_embeddings,
    init_shards,
    replace_shards,
    shard_slice,
    stacked_embeddings,
)
from erase_jax.unlearn.exact.training import compile_epoch, train_shards
from erase_jax.unlearn.exact.validation import metric_and_k, own_validator, remaining_valid_set, validator


@dataclasses.dataclass(frozen=True)
class ShardEnsemble:
    """K submodels of the trained run's architecture, one per shard, and their aggregator.

    `shard_*` options override the trained run's training settings for the submodels (None:
    the run's); `aggregator_*` ones are the aggregator's own.
    """

    n_shards: int = 10
    partition: str = "random"  # random | ubp | ibp | inbp
    random_unit: str = "interactions"  # random partition: "interactions" or "users"
    partition_rounds: int = 30  # T, balanced partitions
    scalar_mean_anchors: bool = False  # the public code's scalar anchor update (a bug; compat only)
    # Balanced partitions on unit-length embeddings (each row divided by its norm), i.e. on
    # direction only. A BPR item embedding's norm grows with the item's popularity, so on raw
    # embeddings the distances of Eq. 1-3 group items by popularity as much as by who likes
    # them. The paper pre-trains WMF instead. Measurements: benchmarks/RESULTS.md, "A cheaper
    # shard epoch and validation, SISA's shard L2, and two partition variants".
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
    # off its optimum, request after request (benchmarks/RESULTS.md, "With the RecEraser code's
    # sampler").
    aggregator_warm_learning_rate: float | None = None
    shard_epochs: int | None = None
    shard_batch_size: int | None = None
    shard_learning_rate: float | None = None
    shard_optimizer: str | None = None
    # The submodels' L2 strength (the base model's `reg_weight`); None: the trained run's. A
    # random shard's submodel fits a tenth of every user's and item's rows with as many
    # parameters as the full model and can want more than the full model's setting
    # (benchmarks/RESULTS.md, "SISA's shard L2").
    shard_reg_weight: float | None = None
    shard_stopping_step: int | None = None
    shard_eval_step: int | None = None  # validate a shard every n epochs (stopping_step counts validations)
    shard_negatives: str = "all"  # all | shard_items (the RecEraser code's: items in the shard)
    shard_sampler: str | None = None  # rows | users (the RecEraser code's); None: the run's train.sampler
    # What a shard's early stopping validates on. "own": the validation pairs whose item the
    # shard holds, ranked among the shard's items with only its own rows masked
    # (`validation.OwnItemsRanker`), so a shard depends on its own data and the validation
    # pairs of its items alone, and a request retrains exactly the shards that used a removed
    # row, a validation row included (`SISA.forget_rows`). "all": every validation pair,
    # ranked among all items with the user's whole remaining history masked, so a shard's
    # stopping epoch also saw the other shards' rows and every validation row, and a shard
    # that was not retrained still carried a removed row's trace (a request retrains only the
    # shards holding removed training rows: not exact).
    shard_validation: str = "own"
    aggregator_sampler: str = "rows"  # rows | users

    def check_experiment(self, experiment) -> None:
        """Raises ValueError unless the trained run's model can be trained in shards (BPR-like:
        a context that is only the data's shape)."""
        if not isinstance(experiment.context, CFShape):
            raise ValueError(
                f"{self.name}: sharded training supports CF models whose context is only the data's shape "
                f"(BPR); {experiment.config.model} has another context (a graph, or a sequence model's), "
                "which is not built per shard"
            )

    def build_ensemble(self, model, params, experiment, train: bool = True, partition_embeddings=None):
        """(ensemble parameters, state, record) from the trained run: the parameters
        `{"shards": [K, ...] stacked submodel parameters, "aggregator": ...}`, the state (the
        shard of every interaction row, the rows removed so far, the retrains per shard) and
        the record of the partition and the training (sizes, epochs, seconds). `train=False`
        gives the parameters' structure only (untrained), as a restore target.

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

    def retrain_shards(self, model, shard_params, experiment, shard_of_row: np.ndarray, removed: np.ndarray,
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
        data, rows = aggregator_data(experiment, removed)
        config = self._aggregator_config(experiment, warm=previous is not None)
        valid = remaining_valid_set(experiment, removed)
        metric, k = metric_and_k(config.valid_metric)

        def validate(params):
            return evaluate_cf(aggregator, params, context, valid, (k,), (metric,))[config.valid_metric]

        seed = np.array([experiment.config.seed], np.int64)
        start = None if previous is None else jax.tree.map(lambda x: jnp.asarray(x)[None], previous)
        result = train_shards(aggregator, context, data, seed, config, validate if len(valid.users) else None,
                              experiment.data.interactions.n_items, start)
        record = {key: result.record[key] for key in ("epochs", "best_epoch", "best_valid", "train_seconds")}
        record["n_rows"] = len(rows)
        return shard_slice(result.params, 0), record

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
            data, _ = aggregator_data(experiment, removed)
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
