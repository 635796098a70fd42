"""Every registered unlearning method x one tiny model per task keeps the method contract
(`contract.py`): a new method or a new task is checked here without editing this file.

The fast tier runs every method on the first tiny model (CF's BPR); the other tasks' tiny
models are in the slow tier.
"""

from __future__ import annotations

import pytest

from erase_jax.models import get_model_class
from erase_jax.run import build_experiment
from erase_jax.tasks import task_names
from erase_jax.unlearn import method_names
from tests.tiny import TINY_MODELS, tiny_config, tiny_run
from tests.unlearn.methods.contract import cheap_method, check_method, refusal

FAST_MODEL = next(iter(TINY_MODELS))


def cases() -> list:
    return [
        pytest.param(method_name, model_name, marks=() if model_name == FAST_MODEL else pytest.mark.slow,
                     id=f"{method_name}-{model_name}")
        for method_name in method_names() for model_name in TINY_MODELS
    ]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Trained lazily, once per model for the whole module."""
    runs = {}

    def get(model_name):
        if model_name not in runs:
            runs[model_name] = tiny_run(model_name, tmp_path_factory.mktemp(model_name) / "run")
        return runs[model_name]

    return get


def test_every_task_has_a_tiny_model():
    covered = {get_model_class(name).task.lower() for name in TINY_MODELS}
    assert covered == {name.lower() for name in task_names()}


@pytest.mark.parametrize("method_name, model_name", cases())
def test_method_keeps_the_contract_on_a_tiny_model(tiny_runs, tmp_path, method_name, model_name):
    # A refusal (a ValueError naming the model, from check_experiment, before any work) passes
    # here; test_every_method_handles_some_tiny_model keeps it from being the rule.
    check_method(cheap_method(method_name), tiny_runs(model_name), tmp_path)


def test_every_method_handles_some_tiny_model():
    experiments = {name: build_experiment(tiny_config(name)) for name in TINY_MODELS}
    for method_name in method_names():
        method = cheap_method(method_name)
        handled = [name for name, experiment in experiments.items() if refusal(method, experiment) is None]
        assert handled, f"{method_name} refuses every tiny model"
