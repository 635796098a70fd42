"""The one interface every recommender implements, and the registry that names them.

A recommender is a small object holding its hyperparameters and exposing pure functions:

    context = model.prepare(train)            # host side, once per training data
    params  = model.init(key, context)        # pytree of arrays
    loss    = model.loss(params, context, batch, key)      # scalar, jittable
    scores  = model.scores(params, context, query)         # [n_queries, n_items], jittable

`train` is the task's training data (for CF: `erase_jax.data.cf.CFTrainData`); `context` is a
pytree of device arrays the model needs besides its parameters (LightGCN's normalised graph,
ItemKNN's neighbour table). Because the graph is data, not parameters, removing edges only
means calling `prepare` again (with `capacity` fixed, shapes and compiled code stay the same).
`batch` and `query` are dicts of arrays defined by the task: for CF a training batch is
`{"users", "pos", "neg", "weight"}` (weight 0 marks padding rows) and a query is `{"users"}`;
session and basket tasks define their own with the same functions.

One optional hook: `model.epoch_context(context, key) -> context`, called by the trainer at the
start of every epoch (inside jit, so it must keep shapes). Models whose training data view
changes per epoch use it (SGL draws its two augmented graphs there); `CFModelBase` supplies
the identity default.

What the unlearning methods need from a model is declared by the model (class attributes
and hooks, with defaults in each family's base class: `erase_jax.models.cf.base.CFModelBase`,
`erase_jax.models.sbr.base.SequenceModel`), so no method names a model:

    influence_targets      parameter paths SCIF moves (None: every parameter)
    user_rows_are_local    whether the loss reads the user table only at the batch's users
    loss_is_row_mean       whether the loss is a weighted mean of per-row terms (sharding)
    output_loss, output_loss_parts(...)      the Gauss-Newton hook (`unlearn.influence.curvature`)
    prefers_gauss_newton   curvature "auto" takes Gauss-Newton for every method
    newton_damping         default damping of the removal Newton step, per curvature
    scif_damping           SCIF's default damping in its correct mode (None: SCIF's own)
    representation(...)    the query representation whose inner products give the scores
    representation_paths   the parameters that representation reads (None: all)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

import jax

from erase_jax.registry import Registry

Params = Any
Context = Any
Batch = dict[str, jax.Array]


class Recommender(Protocol):
    name: ClassVar[str]
    task: ClassVar[str]  # the name of its task plug-in (`erase_jax.tasks`)
    trainable: ClassVar[bool]  # False for Pop / ItemKNN: `init` computes everything

    def prepare(self, train: Any, capacity: int | None = None) -> Context: ...

    def init(self, key: jax.Array, context: Context) -> Params: ...

    def loss(self, params: Params, context: Context, batch: Batch, key: jax.Array) -> jax.Array: ...

    def scores(self, params: Params, context: Context, query: Batch) -> jax.Array: ...


MODELS: Registry = Registry("model", "erase_jax.models")
register = MODELS.register  # class decorator: makes a model constructible by name (case-insensitive)


def model_names() -> list[str]:
    return MODELS.names()


def get_model_class(name: str):
    return MODELS.get(name)


def build_model(name: str, **hyperparameters) -> Recommender:
    """Instantiates a registered model; unknown hyperparameters are rejected by name."""
    cls = get_model_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(hyperparameters) - known)
    if unknown:
        raise ValueError(f"model {cls.name}: unknown hyperparameters {unknown}; known: {sorted(known)}")
    return cls(**hyperparameters)
