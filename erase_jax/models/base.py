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
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Protocol

import jax

Params = Any
Context = Any
Batch = dict[str, jax.Array]


class Recommender(Protocol):
    name: ClassVar[str]
    task: ClassVar[str]  # "CF", "SBR" or "NBR"
    trainable: ClassVar[bool]  # False for Pop / ItemKNN: `init` computes everything

    def prepare(self, train: Any, capacity: int | None = None) -> Context: ...

    def init(self, key: jax.Array, context: Context) -> Params: ...

    def loss(self, params: Params, context: Context, batch: Batch, key: jax.Array) -> jax.Array: ...

    def scores(self, params: Params, context: Context, query: Batch) -> jax.Array: ...


class CFModelBase:
    """Mixin for CF models: sets `task` and the identity `epoch_context` hook."""

    task: ClassVar[str] = "CF"

    def epoch_context(self, context: Context, key: jax.Array) -> Context:
        del key
        return context


_REGISTRY: dict[str, Callable[..., Recommender]] = {}


def register(cls):
    """Class decorator: makes a model constructible by name (case-insensitive)."""
    _REGISTRY[cls.name.lower()] = cls
    return cls


def model_names() -> list[str]:
    return sorted(cls.name for cls in _REGISTRY.values())


def get_model_class(name: str):
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; available: {model_names()}") from None


def build_model(name: str, **hyperparameters) -> Recommender:
    """Instantiates a registered model; unknown hyperparameters are rejected by name."""
    cls = get_model_class(name)
    import dataclasses

    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(hyperparameters) - known)
    if unknown:
        raise ValueError(f"model {cls.name}: unknown hyperparameters {unknown}; known: {sorted(known)}")
    return cls(**hyperparameters)
