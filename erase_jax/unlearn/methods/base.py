"""The one interface every unlearning method implements, and the registry that names them.

An unlearning method is a frozen dataclass of its hyperparameters (the original's names and
defaults) with three functions:

    budget = method.retain_budget(n_forget_rows)          # retain rows it wants per request
    state  = method.init(model, params)                    # pytree kept across requests
    params, state, diagnostics = method.unlearn(model, params, state, request, key)

`state` carries whatever persists from one request to the next (the original keeps one Adam
optimiser for the whole request stream); it is checkpointed with the parameters, so a
resumed run continues exactly. `diagnostics` is a flat dict of numbers (solver residuals,
noise scales, steps taken) recorded per request.

The sequential protocol (`erase_jax.unlearn.protocol.run`) owns everything else: request
order, retain sampling, removal masks, timing, checkpoints and evaluation.

Methods with an influence-function step have two modes, `compat` in COMPAT_MODES: "correct"
(the default: the paper's update, without the original's quirks) and "erase" (the original's
arithmetic, quirks included, in the method's `<name>_erase` module; `check_compat` validates
the field).

Methods that replace the trained model by one built from the training data (exact unlearning
by sharded retraining: SISA, RecEraser) implement two optional hooks instead of `init`:

    params, state = method.start(model, params, experiment, train=True)   # e.g. the shard ensemble
    scoring_model, scoring_params, context = method.scorer(model, params, experiment)

`start` receives the trained run's `Experiment` (data, split, settings); with `train=False` it
returns only the structure, as the restore target of a resumed run or a quarter checkpoint.
`scorer` gives the recommender that is evaluated in place of the base model; the optional
`check_experiment(experiment)` rejects, before any work, a trained run the method cannot
handle (a clear ValueError). Such methods read
`request.removed_rows` and `request.experiment`.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, ClassVar, Protocol

import jax
import numpy as np

from erase_jax.registry import Registry

Batch = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class RequestData:
    """What one unlearning request hands to a method (unlearning-algorithms spec, 5.4).

    `forget` holds ALL training rows of the request's users (forgotten and kept ones, as the
    original passes them), `clean` the same rows without the forgotten interactions (None in
    the spam scenario or when nothing remains), `retain` rows of sampled other users. Each is a
    flat padded batch in the task's training format (CF: users/pos/neg/weight; SBR: prefix
    items [n, width]/lengths/targets/weight, `clean` being the rows of the user's sequence
    without the forgotten items; weight 0 on padding); padding lengths are bucketed so that
    methods compile once per bucket (the task's `request_batches`, `erase_jax.tasks`).
    `context_before` / `context_after` are the model's data context (e.g. LightGCN's graph)
    with and without the interactions removed so far, this request included.
    """

    index: int
    users: np.ndarray
    forget: Batch
    clean: Batch | None
    retain: Batch
    n_forget_rows: int  # real (unpadded) rows in `forget`
    n_removed: int  # interactions this request removes
    context_before: Any
    context_after: Any
    time_limit_seconds: float | None = None
    removed_rows: np.ndarray | None = None  # interaction rows this request removes (row ids)
    experiment: Any = None  # the trained run's Experiment, for methods that retrain from data
    n_train_rows: int | None = None  # training rows kept after this request (None: unknown)
    # rows a method that joins F, C and R into one batch pads it to, the same for the whole
    # stream (`protocol.shapes`, policy "stream"); None: a bucket of this request's real rows
    joined_rows: int | None = None


class UnlearningMethod(Protocol):
    name: ClassVar[str]

    def retain_budget(self, n_forget_rows: int) -> int: ...

    def init(self, model, params) -> Any: ...

    def unlearn(self, model, params, state, request: RequestData, key: jax.Array) -> tuple[Any, Any, dict]: ...


COMPAT_MODES = ("correct", "erase")


def check_compat(name: str, compat: str) -> None:
    if compat not in COMPAT_MODES:
        raise ValueError(f"{name}: compat must be one of {COMPAT_MODES}, got {compat!r}")


METHODS: Registry = Registry("unlearning method", "erase_jax.unlearn")
register = METHODS.register  # class decorator: makes a method constructible by name (case-insensitive)


def method_names() -> list[str]:
    """The registered methods' names (aliases such as `original` are accepted by `build_method`
    but not listed).

    >>> "scif" in ej.method_names(), "untouched" in ej.method_names(), "original" in ej.method_names()
    (True, True, False)
    """
    return METHODS.names()


def build_method(name: str, **options) -> UnlearningMethod:
    """The method `name` (or an old name of it) with `options`; unknown options, and a numeric
    option that is not a number >= 0 (every method's are counts, rates, scales or tolerances),
    raise a ValueError naming them."""
    cls = METHODS.get(name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"method {cls.name}: unknown options {unknown}; known: {sorted(fields)}")
    return cls(**{option: _checked_number(cls.name, option, str(fields[option].type), value)
                  for option, value in options.items()})


def _checked_number(method: str, option: str, annotation: str, value):
    """`value`, a float field's YAML string such as "1e-3" as a float; a ValueError unless a
    numeric option is a number >= 0."""
    kind = annotation.split("|")[0].strip()
    if kind not in ("int", "float") or (value is None and "None" in annotation):
        return value
    integral = kind == "int"
    if not integral and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integral else numbers.Real) or not value >= 0:
        none = " (or None)" if "None" in annotation else ""
        raise ValueError(f"method {method}: option {option} must be {'an integer' if integral else 'a number'} >= 0"
                         f"{none}, got {value!r}")
    return value


@register
@dataclasses.dataclass(frozen=True)
class Untouched:
    """The method that changes nothing: what the trained model still shows.

    Named `original` before (still accepted: `build_method("original")`, result files and
    grids that name it); renamed so it is not confused with the original (PyTorch) benchmark.
    """

    name: ClassVar[str] = "untouched"
    aliases: ClassVar[tuple[str, ...]] = ("original",)

    def retain_budget(self, n_forget_rows: int) -> int:
        return 0

    def init(self, model, params):
        return ()

    def unlearn(self, model, params, state, request, key):
        return params, state, {}
