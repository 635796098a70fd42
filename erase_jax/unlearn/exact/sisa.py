"""SISA: exact unlearning by sharded, isolated retraining (Bourtoule et al., S&P 2021).

The training interactions are split into K shards (`partition.py`), one submodel of the base
architecture is trained per shard (all K as one vmap, `training.py`), and predictions combine
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
trained on, not assumed). Building the ensemble (`ensemble.py`, where its settings and the
differences from the paper's code are described) also compiles what a request will run
(`compile_requests`: the retrain epoch of every number of shards, the warm aggregator's
epoch), so a request's recorded time is training, not compilation.

How this plugs into the sequential runner (see `methods/base.py`): the method's `start` hook builds
the ensemble from the trained run (the run's parameters serve as the pre-trained embeddings
of the balanced partitions) and returns it as the parameters the runner carries and
checkpoints: `{"shards": [K, ...] stacked base-model parameters, "aggregator": ...}`. Its
state holds the shard of every interaction row and the rows removed so far. `scorer` turns
those parameters into the recommender that is evaluated. Requests need `removed_rows` and the
`experiment` (training data and settings), which the runner puts into `RequestData`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import ClassVar

import numpy as np

from erase_jax.unlearn.exact.ensemble import ShardEnsemble
from erase_jax.unlearn.exact.validation import shards_validating_on
from erase_jax.unlearn.methods.base import register


@register
@dataclasses.dataclass(frozen=True)
class SISA(ShardEnsemble):
    """Random shards, one submodel each, mean of scores; exact retraining per request.

    The settings are `ShardEnsemble`'s. `partition` may also be a balanced one (ubp / ibp /
    inbp) and `aggregation` "attention" (that combination is `RecEraser`).
    """

    name: ClassVar[str] = "sisa"
    updates_context: ClassVar[bool] = False  # evaluated through `scorer`, not the base context

    # -- the UnlearningMethod interface ---------------------------------------------------

    def retain_budget(self, n_forget_rows: int) -> int:
        return 0  # retraining uses the shard's own remaining data, never sampled retain rows

    def init(self, model, params):
        raise TypeError(f"{self.name} builds its ensemble from the training data: call start(model, params, experiment)")

    def start(self, model, params, experiment, train: bool = True):
        """(ensemble parameters, state) from the trained run; `train=False` gives only their
        structure (untrained), as the restore target of a resumed run or a checkpoint."""
        ensemble, state, _ = self.build_ensemble(model, params, experiment, train)
        return ensemble, state

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
            shard_params = self.retrain_shards(model, shard_params, experiment, shard_of_row, removed, affected, diagnostics)
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

