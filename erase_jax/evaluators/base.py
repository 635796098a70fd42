"""The evaluator interface, and the registry that finds evaluators by name.

An evaluator is one file in `erase_jax/evaluators/`: a small class registered with `@register`
whose `name` is what a configuration lists (`UnlearnConfig.evaluators`), with one method:

    metrics = evaluator.evaluate(checkpoint)    # flat dict: CSV column name -> number

`checkpoint` (`Checkpoint`) is one model at one checkpoint k of an unlearning run: the run
(forget set, request stream, seed, configurations), k (0..3, or -1 for the trained model on all
data), the evaluated model and the reference model (the retrain matching k) or None. It also
holds what several evaluators need, computed once on first use: the data without the
removals through k, the task's evaluation view of it, the models asked by user id, the
unlearned users and the evaluated model's top-k lists for them. Keys follow the scheme of
`erase_jax.evaluators.scoring` (`name@k`, role prefixes); no two evaluators may return the
same key.

The protocol runs the configured evaluators in order and joins their dicts into one result
row (`evaluate`); `DEFAULT_EVALUATORS` are those of every run unless the configuration says
otherwise. A new evaluator (e.g. a membership-inference audit) is one more file here:

    @register
    @dataclasses.dataclass(frozen=True)
    class PrivacyAudit:
        name: ClassVar[str] = "privacy_audit"

        def evaluate(self, checkpoint: Checkpoint) -> dict:
            ...
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

import numpy as np

from erase_jax.evaluators.cf_ranking import top_k_items
from erase_jax.evaluators.scoring import model_scores_fn
from erase_jax.registry import Registry

EVALUATORS: Registry = Registry("evaluator", "erase_jax.evaluators")
register = EVALUATORS.register  # class decorator: makes an evaluator selectable by name

# Every run's evaluators unless configured otherwise; their order is the order of the columns.
DEFAULT_EVALUATORS = ("utility", "exposure", "agreement", "forgetting")
ORIGINAL_FULL_DATA = -1  # checkpoint k (checkpoint_idx) of the trained model evaluated on all data


class Evaluator(Protocol):
    name: ClassVar[str]

    def evaluate(self, checkpoint: Checkpoint) -> dict: ...


@dataclasses.dataclass(frozen=True)
class ScoredModel:
    """A model with its parameters and context (e.g. the retrain used as the reference)."""

    model: object
    params: object
    context: object

    def scores_fn(self):
        return model_scores_fn(self.model, self.params, self.context)

    def top_k(self, users, k: int, block_size: int):
        return top_k_items(self.model, self.params, self.context, users, k, block_size=block_size)

    def by_user(self, view) -> ScoredModel:
        """The same recommender asked by user id on the evaluation view (SBR: last test prefixes)."""
        return ScoredModel(*view.by_user(self.model, self.params, self.context))


@dataclasses.dataclass
class Checkpoint:
    """One model at checkpoint k of an unlearning run: what every evaluator receives.

    `run` is the `erase_jax.unlearn.protocol.run.UnlearningRun`; `evaluated` the model to
    measure, `reference` the retrain matching k (None for the retrain itself, for the trained
    model on all data, and before the retrain exists). The properties below are computed on first use
    and shared by the evaluators of the row.

    Users are asked about through the task's evaluation view: CF scores user ids; SBR scores
    each user's last test prefix of `data` (forgotten items removed), and users without a test
    prefix are left out of the per-user measures.
    """

    run: Any
    k: int
    evaluated: ScoredModel
    reference: ScoredModel | None = None

    @property
    def ks(self) -> tuple[int, ...]:
        """The cut-offs of the run's evaluation configuration (`eval.topk`)."""
        return self.run.experiment.config.eval.topk

    @property
    def block_size(self) -> int:
        return self.run.experiment.config.eval.block_size

    @functools.cached_property
    def data(self):
        """The data without the removals through k (split recomputed)."""
        return self.run.data_at(self.k)

    @functools.cached_property
    def view(self):
        """The task's evaluation view of `data` (test split, user queries)."""
        return self.run.evaluation_at(self.k)

    @functools.cached_property
    def evaluated_by_user(self) -> ScoredModel:
        return self.evaluated.by_user(self.view)

    @functools.cached_property
    def reference_by_user(self) -> ScoredModel | None:
        return None if self.reference is None else self.reference.by_user(self.view)

    @functools.cached_property
    def unlearned_users(self) -> np.ndarray:
        """The users whose requests were served through k (all forget-set users for k = -1)."""
        return self.run.unlearned_users(self.k)

    @functools.cached_property
    def scored_unlearned_users(self) -> np.ndarray:
        """`unlearned_users` that the evaluation view can score."""
        return self.view.scorable(self.unlearned_users)

    @functools.cached_property
    def unlearned_top_k(self) -> np.ndarray:
        """The evaluated model's top max(ks) items of `scored_unlearned_users`, raw scores
        (nothing masked, spec 5.2): int32 [n_scored, max(ks)]."""
        return self.evaluated_by_user.top_k(self.scored_unlearned_users, max(self.ks), self.block_size)


def check_names(names: Iterable[str]) -> tuple[str, ...]:
    """The names as a tuple; raises ValueError for unknown or repeated evaluators."""
    names = tuple(names)
    known = {name.lower(): name for name in EVALUATORS.names()}
    unknown = [name for name in names if str(name).lower() not in known]
    if unknown:
        raise ValueError(f"unknown evaluators {unknown}; available: {sorted(known.values())}")
    lowered = [name.lower() for name in names]
    repeated = sorted({name for name in names if lowered.count(name.lower()) > 1})
    if repeated:
        raise ValueError(f"evaluators listed more than once: {repeated}")
    return names


def evaluate(checkpoint: Checkpoint, names: Iterable[str]) -> dict:
    """The named evaluators' metrics of one checkpoint, in the order of `names`, in one dict."""
    row: dict = {}
    for name in names:
        metrics = EVALUATORS.get(name)().evaluate(checkpoint)
        clashes = sorted(set(metrics) & set(row))
        if clashes:
            raise ValueError(f"evaluator {name!r} returns columns another evaluator already wrote: {clashes}")
        row.update(metrics)
    return row
