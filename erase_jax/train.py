"""Training: one jitted call per epoch, early stopping on a validation metric, resumable.

The whole epoch is a single compiled function: the batcher builds the epoch's batches
(negatives sampled on device) from a host-drawn row order, and `lax.scan` runs the optimiser
steps. The host only sees the epoch's mean loss, validates, and checkpoints the `TrainState`
pytree with Orbax after every epoch. Every epoch's randomness derives from (seed, epoch)
(`fold_in(run_key, epoch)` on device, `default_rng([seed, epoch])` for the order), so a run
resumed from any checkpoint ends bit-identical to an uninterrupted one.

Early stopping follows RecBole: validate every `eval_step` epochs; a score >= the best so far
becomes the best (its parameters are kept); after more than `stopping_step` validations
without improvement training stops, and the best parameters are the result.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from erase_jax import lazy_adam
from erase_jax.batching.cf import SAMPLERS
from erase_jax.checkpoint import Checkpointer

OPTIMIZERS = ("adam", "sgd", "adagrad", "rmsprop")


@dataclasses.dataclass
class TrainConfig:
    """Optimisation settings (`train.*` keys); defaults are the original's CF settings (spec 2.1).

    Every field is checked when the object is built (a ValueError naming `train.<field>` and
    its valid range).

    Fields:
        epochs: most epochs to train, >= 1 (early stopping may end sooner).
        batch_size: training examples per step, >= 1.
        learning_rate: >= 0 (0 leaves the parameters where they start).
        optimizer: one of OPTIMIZERS ("adam", "sgd", "adagrad", "rmsprop").
        weight_decay: L2 added to the gradient, as torch's `weight_decay`, >= 0.
        adam_beta1, adam_beta2, adam_eps: Adam's constants.
        adagrad_initial_accumulator, adagrad_eps: Adagrad's; optax's (and TF2's) accumulator
            starts at 0.1, the RecEraser/NGCF TF code's at 1e-8 with no epsilon (set both to match).
        lr_step_size: multiply the learning rate by `lr_gamma` every this many epochs (>= 1); None: constant.
        lr_gamma: that factor.
        sampler: CF only. "rows": every epoch visits each training row once (RecBole); "users":
            each example draws a user uniformly, then one of the user's rows (the NGCF-family TF
            code behind the RecEraser paper), so every user weighs the same in the loss.
        valid_metric: the validation metric that picks the best epoch, `<metric>@<k>`.
        stopping_step: stop after more than this many validations without improvement (>= 0; 0:
          stop at the first validation without a gain; `epochs` never stops).
        eval_step: validate every this many epochs, >= 1.
        max_training_hours: stop training after this long (> 0); None: no limit.
    """

    epochs: int = 100
    batch_size: int = 2048
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    adagrad_initial_accumulator: float = 0.1
    adagrad_eps: float = 1e-7
    lr_step_size: int | None = None
    lr_gamma: float = 0.1
    sampler: str = "rows"
    valid_metric: str = "recall@20"
    stopping_step: int = 10
    eval_step: int = 1
    max_training_hours: float | None = None

    def __post_init__(self):
        # Checked here, where every training path (a run, the shards, the aggregator) builds its
        # settings, so a bad value fails when the config is read, not when an epoch is drawn.
        if self.sampler not in SAMPLERS:
            raise ValueError(f"unknown train.sampler {self.sampler!r}; choose one of {SAMPLERS}")
        if str(self.optimizer).lower() not in OPTIMIZERS:
            raise ValueError(f"unknown train.optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("eval_step", 1), ("stopping_step", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"train.{name} must be an integer >= {low}, got {value!r}")
        if self.lr_step_size is not None and self.lr_step_size < 1:
            raise ValueError(f"train.lr_step_size must be >= 1 (or None), got {self.lr_step_size!r}")
        if not self.learning_rate >= 0:  # 0 freezes the parameters (a test of the loop itself)
            raise ValueError(f"train.learning_rate must be >= 0, got {self.learning_rate!r}")
        if self.weight_decay < 0:
            raise ValueError(f"train.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.max_training_hours is not None and not self.max_training_hours > 0:
            raise ValueError(f"train.max_training_hours must be > 0 (or None), got {self.max_training_hours!r}")


@flax.struct.dataclass
class TrainState:
    params: Any
    opt_state: Any
    key: jax.Array  # raw uint32 key data of the run; epoch keys are fold_in(key, epoch)
    epoch: jax.Array  # completed epochs
    best_params: Any
    best_score: jax.Array
    best_epoch: jax.Array
    stale_validations: jax.Array  # validations since the best one (RecBole's cur_step)


def make_optimizer(config: TrainConfig, steps_per_epoch: int,
                   row_sparse_paths: tuple[tuple[str, ...], ...] = ()) -> optax.GradientTransformation:
    """The configured optimiser; with `row_sparse_paths` (a model's `row_sparse_params`), Adam
    whose tables at those paths take lazy, row-sparse updates (`erase_jax.lazy_adam`)."""
    learning_rate: Any = config.learning_rate
    if config.lr_step_size:
        learning_rate = optax.exponential_decay(
            config.learning_rate, config.lr_step_size * steps_per_epoch, config.lr_gamma, staircase=True
        )
    name = config.optimizer.lower()
    if row_sparse_paths:
        if name != "adam" or config.weight_decay:
            raise ValueError(f"row-sparse parameters {list(row_sparse_paths)} train with train.optimizer='adam' and no "
                             f"train.weight_decay (got {config.optimizer!r}, {config.weight_decay!r})")
        return lazy_adam.row_sparse_adam(learning_rate, config.adam_beta1, config.adam_beta2, config.adam_eps,
                                         tuple(row_sparse_paths))
    if name == "adam":
        base = optax.adam(learning_rate, config.adam_beta1, config.adam_beta2, config.adam_eps)
    elif name == "sgd":
        base = optax.sgd(learning_rate)
    elif name == "adagrad":
        base = optax.adagrad(learning_rate, config.adagrad_initial_accumulator, config.adagrad_eps)
    elif name == "rmsprop":
        base = optax.rmsprop(learning_rate)
    else:
        raise ValueError(f"unknown train.optimizer {config.optimizer!r}; choose one of {OPTIMIZERS}")
    if config.weight_decay:
        return optax.chain(optax.add_decayed_weights(config.weight_decay), base)
    return base


def init_state(model, context, optimizer, seed: int) -> TrainState:
    key = jax.random.PRNGKey(seed)
    init_key, run_key = jax.random.split(key)
    params = model.init(init_key, context)
    return TrainState(
        params=params,
        opt_state=optimizer.init(params),
        key=run_key,
        epoch=jnp.int32(0),
        best_params=params,
        best_score=jnp.float32(-jnp.inf),
        best_epoch=jnp.int32(-1),
        stale_validations=jnp.int32(0),
    )


def make_train_epoch(model, optimizer):
    """Returns `train_epoch(state, context, batcher, order) -> (state, mean_loss)`, jitted.

    `batcher.epoch(key, order)` must produce stacked batches `{name: [n_batches, ...]}` with
    a "weight" entry; `order` is the epoch's row order from `batcher.shuffled_order`. A model
    with `row_sparse_params` steps lazily (`row_sparse_step`); its optimiser must come from
    `make_optimizer(..., row_sparse_paths=model.row_sparse_params)`.
    """
    paths = tuple(getattr(model, "row_sparse_params", ()) or ())

    @jax.jit
    def train_epoch(state: TrainState, context, batcher, order):
        epoch_key = jax.random.fold_in(state.key, state.epoch)
        batch_key, context_key, step_key = jax.random.split(epoch_key, 3)
        batches = batcher.epoch(batch_key, order)
        epoch_context = model.epoch_context(context, context_key) if hasattr(model, "epoch_context") else context
        n_batches = jax.tree.leaves(batches)[0].shape[0]
        step_keys = jax.random.split(step_key, n_batches)

        def step(carry, inputs):
            params, opt_state = carry
            batch, key = inputs
            if paths:
                return row_sparse_step(model, optimizer, params, opt_state, epoch_context, batch, key)
            loss, grads = jax.value_and_grad(model.loss)(params, epoch_context, batch, key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        if paths and not lazy_adam.has_lazy_state(state.opt_state):
            raise ValueError(f"{type(model).__name__} updates {list(paths)} row-sparsely: build its optimiser with "
                             "make_optimizer(config, steps, row_sparse_paths=model.row_sparse_params)")
        (params, opt_state), losses = jax.lax.scan(step, (state.params, state.opt_state), (batches, step_keys))
        state = state.replace(params=params, opt_state=opt_state, epoch=state.epoch + 1)
        return state, jnp.mean(losses)

    return train_epoch


def row_sparse_step(model, optimizer, params, opt_state, context, batch, key):
    """One lazy step: the tables at `model.row_sparse_params` enter the loss as slabs of the
    batch's rows (`model.row_sparse_rows`, `model.with_row_slabs`), so their gradient is
    [K, ...], never a dense table; the optimiser updates those rows only (`erase_jax.lazy_adam`)."""
    rows = model.row_sparse_rows(context, batch)
    slabs = params
    for path, table_rows in rows.items():
        table = lazy_adam.get_path(params, path)
        slabs = lazy_adam.set_path(slabs, path, table.at[table_rows].get(mode="fill", fill_value=0))
    loss, grads = jax.value_and_grad(model.loss)(slabs, model.with_row_slabs(context, rows), batch, key)
    for path, table_rows in rows.items():
        grads = lazy_adam.set_path(grads, path, lazy_adam.RowSparse(table_rows, lazy_adam.get_path(grads, path)))
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return (lazy_adam.apply_updates(params, updates), opt_state), loss


@dataclasses.dataclass
class FitResult:
    state: TrainState
    record: dict  # per-epoch losses, validation scores, timings


def fit(
    model,
    context,
    batcher,
    validate: Callable[[Any], dict[str, float]] | None,
    config: TrainConfig,
    seed: int,
    checkpointer: Checkpointer | None = None,
    progress: Callable[[dict], None] | None = None,
) -> FitResult:
    """Trains `model` with early stopping; resumes from `checkpointer` when it holds a step.

    `validate(params)` returns the validation metrics; `config.valid_metric` selects the one
    that decides. `validate=None` (no validation data) trains exactly `config.epochs` epochs
    and returns the last parameters. Non-trainable models (Pop, ItemKNN) return their initial state at once.
    """
    steps_per_epoch = batcher.n_batches
    optimizer = make_optimizer(config, steps_per_epoch, tuple(getattr(model, "row_sparse_params", ()) or ()))
    state = init_state(model, context, optimizer, seed)
    record = {"epoch_loss": [], "epoch_seconds": [], "valid": [], "compile_seconds": None, "stopped": None}
    if not model.trainable:
        record["stopped"] = "not trainable"
        return FitResult(state, record)

    if checkpointer is not None and checkpointer.latest_step() is not None:
        state, record = checkpointer.restore(checkpointer.latest_step(), state)
        if record.get("stopped"):
            return FitResult(state, record)

    train_epoch = make_train_epoch(model, optimizer)
    if record["compile_seconds"] is None:
        started = time.perf_counter()
        train_epoch.lower(state, context, batcher, batcher.shuffled_order(seed, 0)).compile()
        record["compile_seconds"] = time.perf_counter() - started

    started_run = time.perf_counter()
    while int(state.epoch) < config.epochs:
        if config.max_training_hours is not None and record["epoch_seconds"]:
            elapsed = time.perf_counter() - started_run
            if elapsed + record["epoch_seconds"][-1] > config.max_training_hours * 3600:
                record["stopped"] = "time budget"
                break
        started = time.perf_counter()
        state, loss = train_epoch(state, context, batcher, batcher.shuffled_order(seed, int(state.epoch)))
        loss = float(loss)  # waits for the epoch to finish
        record["epoch_seconds"].append(time.perf_counter() - started)
        record["epoch_loss"].append(loss)
        if not math.isfinite(loss):
            record["stopped"] = f"non-finite loss at epoch {int(state.epoch)}"
            raise FloatingPointError(f"training diverged: loss {loss} at epoch {int(state.epoch)}")

        epoch = int(state.epoch)
        if validate is None:
            # No validation data: train the configured number of epochs; the last is the result.
            state = state.replace(best_params=state.params, best_epoch=jnp.int32(epoch))
        elif epoch % config.eval_step == 0 or epoch == config.epochs:
            scores = validate(state.params)
            if config.valid_metric not in scores:
                raise KeyError(f"valid_metric {config.valid_metric!r} not among {sorted(scores)}")
            score = scores[config.valid_metric]
            record["valid"].append({"epoch": epoch, **scores})
            if score >= float(state.best_score):
                state = state.replace(
                    best_params=state.params,
                    best_score=jnp.float32(score),
                    best_epoch=jnp.int32(epoch),
                    stale_validations=jnp.int32(0),
                )
            else:
                state = state.replace(stale_validations=state.stale_validations + 1)
            if int(state.stale_validations) > config.stopping_step:
                record["stopped"] = "early stopping"
        if epoch >= config.epochs and not record["stopped"]:
            record["stopped"] = "max epochs"
        if checkpointer is not None:
            checkpointer.save(epoch, state, record)
        if progress is not None:
            progress({"epoch": epoch, "loss": loss, "best": float(state.best_score)})
        if record["stopped"]:
            break
    if not record["stopped"]:
        record["stopped"] = "max epochs"
    return FitResult(state, record)


def best_params(result: FitResult):
    """The parameters to evaluate: the best validated ones (the initial ones if none)."""
    state = result.state
    return state.best_params if int(state.best_epoch) >= 0 else state.params
