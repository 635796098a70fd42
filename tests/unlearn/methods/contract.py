"""The contract every unlearning method keeps, checked on one real request of a tiny trained run.

`tests.tiny.tiny_run(model_name, folder)` trains one tiny model per task for one epoch through
the normal path (`train_run` on the embedded synthetic data); `first_request(protocol, method)`
builds the first request of the sensitive "Horror" stream as the sequential runner does (retain
rows from the runner's sampler, capped budget); `check_method(method, run_dir, tmp)` runs that
request through the method and checks what the runner and the result files rely on:

* `retain_budget` is a non-negative int;
* `init` (or `start`, for methods that build their own model from the data) gives a state, and
  `start(train=False)` the structure `start` trains, the restore target of a resumed run;
* `unlearn` returns parameters with the tree structure, shapes and dtypes it was given, all
  finite; a state with the structure it was given; diagnostics as a flat dict of numbers
  (flat lists of numbers and None, "not applicable", pass too: SISA reports both);
* the parameters and state survive a checkpoint round trip bit for bit (resume is exact);
* the unlearned model scores the request's users finitely over every item.

`registered_for_module(method_class)` makes the fixture that registers a test-only method for
one test module (the protocol tests' probes).

A method that cannot handle a model says so with a ValueError from `check_experiment` that
names the model, before any work (SISA and RecEraser on session models).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from erase_jax.checkpoint import Checkpointer
from erase_jax.run import load_run
from erase_jax.unlearn.methods import base
from erase_jax.unlearn.methods.base import build_method
from erase_jax.unlearn.protocol.loop import RequestLoop
from erase_jax.unlearn.protocol.requests import RetainSampler, retain_pool_factor
from erase_jax.unlearn.protocol.run import UnlearnConfig, build_protocol
from tests.tiny import SCENARIO


def registered_for_module(method_class):
    """A module-scoped autouse fixture that registers a test-only method for the module that
    assigns it to a name, and unregisters it afterwards (other tests see the real registry)."""

    @pytest.fixture(scope="module", autouse=True)
    def registered():
        base.register(method_class)
        yield
        base.METHODS.unregister(method_class.name)

    return registered


# Fewer solver, fine-tuning and shard-training iterations than the defaults: the contract does
# not depend on them. A method missing here runs with its defaults.
CHEAP = {
    "scif": {"cg_iterations": 20},
    "gif": {"gif_iterations": 5},
    "ceu": {"ceu_cg_iterations": 10, "ceu_hessian_samples": 128},
    "idea": {"idea_iterations": 10, "idea_hessian_samples": 128, "idea_finetune_samples_per_forget_row": 8},
    "fanchuan": {"unlearn_iters_contrastive": 2},
    "seif": {"seif_repair_epochs": 2},
    "sisa": {"n_shards": 2, "shard_epochs": 1, "aggregator_epochs": 1, "aggregator_batch_size": 64},
    "receraser": {"n_shards": 2, "shard_epochs": 1, "aggregator_epochs": 1, "aggregator_batch_size": 64,
                  "partition_rounds": 3},
}


def cheap_method(name: str, **options):
    return build_method(name, **{**CHEAP.get(name.lower(), {}), **options})


def first_request(protocol, method):
    """The stream's first request and its key, built by the protocol's own loop
    (`RequestLoop.prepare`) from the state before any request; no model state is needed."""
    sampler = RetainSampler(protocol.train_rows, len(protocol.stream), protocol.seed, retain_pool_factor(method))
    before = {"params": None, "method_state": None, "removed": np.zeros(len(protocol.experiment.data.interactions), bool),
              "next_batch": 0, "sampler": sampler.state_dict()}
    prepared = RequestLoop(protocol, None, method, state=before).prepare()
    return prepared.request, prepared.key


def refusal(method, experiment) -> str | None:
    """The method's ValueError for a trained run it cannot handle (None: it handles it)."""
    if not hasattr(method, "check_experiment"):
        return None
    try:
        method.check_experiment(experiment)
    except ValueError as error:
        return str(error)
    return None


def assert_same_structure(got, want, what: str) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want), f"{what}: tree structure changed"
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert np.shape(a) == np.shape(b), f"{what}: shape {np.shape(a)} != {np.shape(b)}"
        assert np.asarray(a).dtype == np.asarray(b).dtype, f"{what}: dtype {np.asarray(a).dtype} != {np.asarray(b).dtype}"


def assert_finite(tree, what: str) -> None:
    for leaf in jax.tree.leaves(tree):
        values = np.asarray(leaf)
        if np.issubdtype(values.dtype, np.inexact):
            assert np.isfinite(values).all(), f"{what}: non-finite values"


def assert_flat_numbers(diagnostics) -> None:
    """A flat dict of numbers (or flat lists of numbers, e.g. SISA's retrained shards); None is
    accepted for "not applicable" (SISA's aggregator fields under mean aggregation), which the
    runner writes as JSON null."""
    assert isinstance(diagnostics, dict), f"diagnostics must be a dict, got {type(diagnostics).__name__}"
    for name, value in diagnostics.items():
        assert isinstance(name, str), f"diagnostic key {name!r} is not a string"
        if value is None:
            continue
        values = np.asarray(value)
        assert values.dtype.kind in "biuf" and values.ndim <= 1, f"diagnostic {name!r} is not a number (or a flat list): {value!r}"


def check_method(method, run_dir: Path, tmp: Path) -> str | None:
    """Runs the first request of the tiny run through `method` and checks the contract.
    Returns the method's refusal message when it rejects the run (nothing else is run then)."""
    experiment, params = load_run(run_dir)
    model = experiment.model
    message = refusal(method, experiment)
    if message is not None:
        assert experiment.config.model in message, f"the refusal should name the model: {message}"
        return message

    protocol = build_protocol(experiment, UnlearnConfig(method=method.name, **SCENARIO))
    budget = method.retain_budget(8)
    assert isinstance(budget, (int, np.integer)) and budget >= 0, f"retain_budget(8) = {budget!r}"
    if hasattr(method, "start"):
        params, state = method.start(model, params, experiment, train=True)
        like_params, like_state = method.start(model, params, experiment, train=False)
        assert_same_structure(like_params, params, "start(train=False) params")
        assert jax.tree.structure(like_state) == jax.tree.structure(state), "start(train=False) state"
    else:
        state = method.init(model, params)
    request, key = first_request(protocol, method)
    assert request.n_forget_rows > 0 and request.n_removed > 0

    new_params, new_state, diagnostics = method.unlearn(model, params, state, request, key)
    jax.block_until_ready((new_params, new_state))
    assert_same_structure(new_params, params, "params")
    assert_finite(new_params, "params")
    assert jax.tree.structure(new_state) == jax.tree.structure(state), "method state: tree structure changed"
    assert_flat_numbers(diagnostics)

    saved = {"params": new_params, "method_state": new_state}
    checkpointer = Checkpointer(tmp / "state", max_to_keep=1)
    checkpointer.save(1, saved, {"diagnostics": {k: np.asarray(v).tolist() if v is not None else None
                                                 for k, v in diagnostics.items()}})
    restored, record = checkpointer.restore(1, {"params": params, "method_state": state})
    checkpointer.close()
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(saved), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert set(record["diagnostics"]) == set(diagnostics)

    query = experiment.task.query_of(request.forget)
    if hasattr(method, "scorer"):
        scoring_model, scoring_params, context = method.scorer(model, new_params, experiment)
    else:
        scoring_model, scoring_params, context = model, new_params, request.context_after
    scores = np.asarray(scoring_model.scores(scoring_params, context, query))
    assert scores.shape == (len(request.forget["weight"]), experiment.examples.train.n_items)
    assert np.isfinite(scores).all()
    return None
