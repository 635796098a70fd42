"""The Python API (`erase_jax.api`, `erase_jax.bench`): every docstring example runs, the
scripts in `examples/` run, and the API's numbers for the first n requests are the CLI's."""

from __future__ import annotations

import doctest
import json
import runpy
import sys

import jax
import numpy as np
import pytest

import erase_jax as ej
from erase_jax import api, bench, config
from erase_jax.cli import main
from erase_jax.unlearn.methods import base as methods_base
from erase_jax.unlearn.protocol import loop as protocol_loop
from erase_jax.unlearn.protocol import run as protocol_run
from erase_jax.unlearn.protocol.run import load_quarter
from tests.conftest import REPO_ROOT

SMALL = "data.synthetic={n_users: 300, n_items: 150, avg_interactions: 20}"
SETTINGS = ["model=BPR", "dataset=synthetic", SMALL, "train.epochs=2", "train.batch_size=256",
            "model_params.embedding_size=16"]
SCENARIO = ["--scenario", "sensitive:Horror", "--fraction", "0.01"]
TIMING = ("seconds", "method_seconds", "checkpoint_seconds", "checkpoint_idx", "compile_seconds", "n_compiles")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "bpr"
    ej.train_model(SETTINGS, out=out)
    return out


@pytest.fixture(scope="module")
def run(folder):
    return ej.load(folder)


@pytest.mark.parametrize("module", [api, bench, config, protocol_run, protocol_loop, methods_base],
                         ids=lambda m: m.__name__)
def test_every_docstring_example_runs(module, run, folder):
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = 0
    for test in finder.find(module, globs={"ej": ej, "run": run, "folder": folder, "SMALL": SMALL,
                                           "load_config": config.load_config}):
        examples += len(test.examples)
        runner.run(test)
    assert examples > 0
    assert runner.failures == 0, f"{runner.failures} docstring examples of {module.__name__} failed (output above)"


def test_every_public_api_function_has_an_example():
    plain_records = {"Run", "Timing", "RunConfig"}  # data holders, documented by their fields
    missing = [name for name in ej.__all__ if name != "__version__" and name not in plain_records
               and ">>>" not in (getattr(ej, name).__doc__ or "")]
    assert missing == [], f"public names without a docstring example: {missing}"


@pytest.mark.parametrize("script", ["train_evaluate.py", "unlearn_first_requests.py", "time_requests.py"])
def test_example_script_runs(script, capsys, monkeypatch, tmp_path):
    arguments = [str(tmp_path / "run")] if script == "train_evaluate.py" else []  # to a folder, then loaded
    monkeypatch.setattr(sys, "argv", [script, *arguments])
    runpy.run_path(str(REPO_ROOT / "examples" / script), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == {"train_evaluate.py": 1, "unlearn_first_requests.py": 2, "time_requests.py": 3}[script]
    if script == "time_requests.py":
        assert [line.split(":")[0].strip() for line in lines] == ["scif", "gif", "kookmin"]


def test_the_first_requests_agree_exactly_with_the_cli(folder, run, tmp_path):
    """At each quarter checkpoint c_k of `erase-jax unlearn`, the API after c_k + 1 requests holds
    the same parameters and removals, evaluates to the same row (unlearned and trained model),
    and recorded the same requests."""
    scenario_dir = tmp_path / "scenario"
    assert main(["unlearn", "--quiet", "--run", str(folder), "--method", "scif", *SCENARIO, "--out", str(scenario_dir)]) == 0
    document = json.loads((scenario_dir / "scif" / "unlearning.json").read_text())
    cli_rows = {(row["eval_type"], row["checkpoint_idx"]): row for row in document["rows"]}
    loop = ej.requests(run, "sensitive:Horror", "scif", fraction=0.01)
    n_rows = len(run.experiment.data.interactions)
    assert len(loop.protocol.checkpoint_batches) == 4
    for k, last in enumerate(loop.protocol.checkpoint_batches):
        for _ in loop.take(last + 1 - loop.next_batch):
            pass
        params, removed = load_quarter(scenario_dir / "scif", k, run.params, n_rows)
        assert jax.tree.all(jax.tree.map(np.array_equal, params, loop.params)), f"parameters at checkpoint {k}"
        assert np.array_equal(removed, loop.removed)
        for row, evaluated in ((cli_rows["unlearning", k], ej.evaluate(loop)),
                               (cli_rows["original", k], ej.evaluate(loop, params=run.params))):
            np.testing.assert_equal({key: row[key] for key in evaluated}, evaluated)
    untimed = lambda row: {key: value for key, value in row.items() if key not in TIMING}  # noqa: E731
    assert [untimed(row) for row in document["requests"]] == [untimed(row) for row in loop.rows]
    fresh = ej.requests(run, "sensitive:Horror", "scif", fraction=0.01)  # no request yet: the original on all data
    evaluated = ej.evaluate(fresh, params=run.params)
    np.testing.assert_equal({key: cli_rows["original", -1][key] for key in evaluated}, evaluated)


def test_a_retrain_agrees_exactly_with_the_cli_retrain(folder, run, tmp_path):
    """`ej.retrain` after the requests through checkpoint 0 is `erase-jax retrain --checkpoint-idx 0`."""
    from erase_jax.run import restore_best_params

    scenario_dir = tmp_path / "scenario"
    assert main(["retrain", "--quiet", "--run", str(folder), *SCENARIO, "--checkpoint-idx", "0", "--out", str(scenario_dir)]) == 0
    after = ej.unlearn_requests(run, "sensitive:Horror", "untouched", fraction=0.01,
                                n_requests=ej.requests(run, "sensitive:Horror", fraction=0.01).protocol.checkpoint_batches[0] + 1)
    reference = ej.retrain(run, after)
    saved = restore_best_params(scenario_dir / "retrain" / "k0", reference.experiment)
    assert jax.tree.all(jax.tree.map(np.array_equal, saved, reference.params))


def test_settings_are_checked_when_built_naming_python_parameters():
    with pytest.raises(ValueError, match="method: unknown unlearning method 'scfi'"):
        ej.UnlearnConfig(method="scfi")
    with pytest.raises(ValueError, match=r"train.epochs must be an integer >= 1, got -1"):
        ej.load_config(None, ["train.epochs=-1"])
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        ej.UnlearnConfig(scenario="sensitive:Horror", fraction=2.0)
    with pytest.raises(ValueError, match="unlearning_batchsize must be an integer >= 1"):
        ej.UnlearnConfig(unlearning_batchsize=0)
    assert ej.UnlearnConfig(scenario="sensitive:Horror").category == "Horror"
    assert ej.UnlearnConfig(scenario="random:interactions").random_unit == "interactions"


def test_missing_scenario_settings_name_the_python_parameter(run):
    with pytest.raises(ValueError, match="needs fraction"):
        ej.forget_set(run, "sensitive:Horror")
    with pytest.raises(ValueError, match="needs category"):
        ej.forget_set(run, "sensitive", fraction=0.01)


def test_config_fields_are_documented_where_help_shows_them():
    from erase_jax.data.baskets import BasketConfig
    from erase_jax.data.loading import DataConfig
    from erase_jax.data.sequences import SequenceConfig
    from erase_jax.train import TrainConfig

    for cls in (ej.RunConfig, ej.UnlearnConfig, config.EvalConfig, TrainConfig, DataConfig, SequenceConfig, BasketConfig):
        undocumented = [f for f in cls.__dataclass_fields__ if f"{f}:" not in cls.__doc__ and f"{f}," not in cls.__doc__]
        assert undocumented == [], f"{cls.__name__}: fields without a line in the docstring: {undocumented}"


def test_the_do_nothing_method_is_untouched_and_original_still_names_it():
    from erase_jax.unlearn import build_method

    assert "untouched" in ej.method_names() and "original" not in ej.method_names()
    assert type(build_method("original")) is type(build_method("untouched"))
