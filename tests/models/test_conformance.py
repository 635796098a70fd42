"""Every registered model keeps the model interface (`erase_jax.models.base`) on its task's tiny
synthetic data, with its default hyperparameters: a new model is checked here by name, with no
edit to this file (in the slow tier, unless it is a task's tiny model or not learned).

Checked: the registry finds it by its name and its task by the model's `task`; it is a frozen
(hashable) dataclass, as jit needs of a static argument; `prepare`, `init`, `epoch_context`,
`loss` and `scores` run under jit with finite values of the documented shapes, and a learned
model's gradient is finite with the parameters' structure; what a learned model declares for
the unlearning methods (`influence_targets`, `representation_paths`) names parameters it has,
and `representation` gives one finite vector per row.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.models import build_model, get_model_class, model_names
from erase_jax.run import build_experiment
from erase_jax.tasks import task_of
from erase_jax.unlearn.methods.base import build_method
from erase_jax.unlearn.protocol.run import UnlearnConfig, build_protocol
from tests.tiny import SCENARIO, TINY_MODELS, tiny_config
from tests.unlearn.methods.contract import first_request


def registered_models() -> list:
    """Every model; the fast tier checks the tiny models and the non-learned ones (they compile
    little), the slow tier the others."""
    cases = []
    for name in model_names():
        marks = [] if name in TINY_MODELS or not get_model_class(name).trainable else [pytest.mark.slow]
        cases.append(pytest.param(name, marks=marks))
    return cases


@pytest.fixture(scope="module")
def task_batches():
    """Per task: (the tiny model's experiment, a training batch of one request's rows)."""
    built = {}

    def get(task_name):
        if task_name not in built:
            model_name = next(m for m in TINY_MODELS if get_model_class(m).task.lower() == task_name.lower())
            experiment = build_experiment(tiny_config(model_name))
            protocol = build_protocol(experiment, UnlearnConfig(**SCENARIO))
            request, _ = first_request(protocol, build_method("untouched"))
            built[task_name] = experiment, request.forget
        return built[task_name]

    return get


def leaf_at(params, path):
    node = params
    for key in path:
        assert key in node, f"declared parameter path {path} is not in the parameters"
        node = node[key]
    return node


@pytest.mark.parametrize("name", registered_models())
def test_model_keeps_the_interface(task_batches, name):
    cls = get_model_class(name)
    assert cls.name == name and get_model_class(name.upper()) is cls
    model = build_model(name)
    assert dataclasses.is_dataclass(model) and hash(model) == hash(build_model(name))
    experiment, batch = task_batches(task_of(model).name)
    n_items = experiment.examples.train.n_items

    context = model.prepare(experiment.examples.train)
    params = model.init(jax.random.PRNGKey(0), context)
    epoch_context = jax.jit(model.epoch_context)(context, jax.random.PRNGKey(1))
    assert jax.tree.structure(epoch_context) == jax.tree.structure(context)

    loss, grads = jax.jit(jax.value_and_grad(model.loss))(params, epoch_context, batch, jax.random.PRNGKey(2))
    assert loss.shape == () and np.isfinite(loss)
    query = task_of(model).query_of(batch)
    scores = jax.jit(model.scores)(params, context, query)
    assert scores.shape == (len(batch["weight"]), n_items) and scores.dtype == jnp.float32
    assert np.isfinite(np.asarray(scores)).all()
    if not cls.trainable:
        return

    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    for paths in (cls.influence_targets, cls.representation_paths):
        for path in paths or ():
            leaf_at(params, path)
    representation = np.asarray(model.representation(params, context, batch))
    assert representation.ndim == 2 and representation.shape[0] == len(batch["weight"])
    assert np.isfinite(representation).all()
