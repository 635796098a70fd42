"""The Python API (`erase_jax.api`, `erase_jax.bench`): every docstring example runs, the
scripts in `examples/` run, and the API's numbers for the first n requests are the CLI's."""

from __future__ import annotations

import dataclasses
import doctest
import json
import pydoc
import re
import runpy
import sys

import jax
import numpy as np
import pytest

import erase_jax as ej
from erase_jax import api, bench, config, result_labels
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


@pytest.mark.parametrize("module", [api, bench, config, protocol_run, protocol_loop, methods_base, result_labels],
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


def test_the_readme_shows_the_python_api_next_to_the_command_line():
    """Every `ej.<name>` the README's table names is public, and the table pairs each command."""
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("| command line | Python |"):].split("\n\n")[0]
    named = set(re.findall(r"\bej\.(\w+)", table))
    assert {"train_model", "load", "evaluate", "forget_set", "requests", "unlearn_requests", "retrain", "protocol",
            "time_request", "time_stream"} <= named
    assert named <= set(ej.__all__), named - set(ej.__all__)
    for command in ("erase-jax train", "erase-jax evaluate", "erase-jax retrain", "erase-jax unlearn"):
        assert command in table


def test_every_public_api_function_has_an_example():
    plain_records = {"Run", "Timing", "RunConfig"}  # data holders, documented by their fields
    missing = [name for name in ej.__all__ if name != "__version__" and name not in plain_records
               and ">>>" not in (getattr(ej, name).__doc__ or "")]
    assert missing == [], f"public names without a docstring example: {missing}"


EXAMPLE_SETTINGS = ["model=BPR", "dataset=synthetic", "data.synthetic={n_users: 300, n_items: 150}", "train.epochs=5"]


@pytest.fixture(scope="module")
def cli_example(tmp_path_factory):
    """The examples' model trained by `erase-jax train`, and `erase-jax unlearn` with SCIF on the
    example's scenario, whose first checkpoint falls after the first five requests."""
    out = tmp_path_factory.mktemp("cli_example")
    assert main(["train", "--quiet", *(a for s in EXAMPLE_SETTINGS for a in ("--set", s)), "--out", str(out / "run")]) == 0
    assert main(["unlearn", "--quiet", "--run", str(out / "run"), "--method", "scif", "--scenario", "sensitive:Horror",
                 "--fraction", "0.01", "--out", str(out / "scenario")]) == 0
    rows = json.loads((out / "scenario" / "scif" / "unlearning.json").read_text())["rows"]
    return json.loads((out / "run" / "result.json").read_text()), {(r["eval_type"], r["checkpoint_idx"]): r for r in rows}


def printed_numbers(line: str) -> list[str]:
    return re.findall(r"\d+\.\d+", line.split(":", 1)[1])


@pytest.mark.parametrize("script", ["train_evaluate.py", "unlearn_first_requests.py", "time_requests.py"])
def test_example_script_runs_and_prints_the_cli_numbers(script, capsys, monkeypatch, tmp_path, cli_example):
    """The scripts run; train_evaluate.py and unlearn_first_requests.py print, to their last
    digit, what `erase-jax train` / `erase-jax unlearn` wrote for the same model and requests
    (the timings of time_requests.py are measurements: only their form is checked)."""
    arguments = [str(tmp_path / "run")] if script == "train_evaluate.py" else []  # to a folder, then loaded
    monkeypatch.setattr(sys, "argv", [script, *arguments])
    runpy.run_path(str(REPO_ROOT / "examples" / script), run_name="__main__")
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == {"train_evaluate.py": 1, "unlearn_first_requests.py": 2, "time_requests.py": 3}[script]
    result, rows = cli_example
    if script == "train_evaluate.py":
        assert printed_numbers(lines[0]) == [f"{result['test'][k]:.4f}" for k in ("recall@20", "ndcg@20")]
    elif script == "unlearn_first_requests.py":
        assert rows["unlearning", 0]["n_unlearned_users"] == 5  # the CLI's checkpoint 0: the first five requests
        for line, row in zip(lines, (rows["trained", 0], rows["unlearning", 0]), strict=True):
            assert printed_numbers(line) == [f"{row['test_recall@20']:.4f}", f"{row['avg_sensitive_per_user@20']:.2f}",
                                             f"{row['forgotten_hit@20']:.3f}"], line
    else:
        assert [line.split(":")[0].strip() for line in lines] == ["scif", "gif", "kookmin"]
        assert all(len(printed_numbers(line)) == 3 for line in lines)


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
                               (cli_rows["trained", k], ej.evaluate(loop, params=run.params))):
            np.testing.assert_equal({key: row[key] for key in evaluated}, evaluated)
    untimed = lambda row: {key: value for key, value in row.items() if key not in TIMING}  # noqa: E731
    assert [untimed(row) for row in document["requests"]] == [untimed(row) for row in loop.rows]
    fresh = ej.requests(run, "sensitive:Horror", "scif", fraction=0.01)  # no request yet: the trained model on all data
    evaluated = ej.evaluate(fresh, params=run.params)
    np.testing.assert_equal({key: cli_rows["trained", -1][key] for key in evaluated}, evaluated)


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
    with pytest.raises(ValueError, match=r"model: unknown model 'Foo'; available: \['BPR'"):
        ej.RunConfig(model="Foo")
    with pytest.raises(ValueError, match=r"model: unknown model 'Foo'"):
        ej.load_config(None, ["model=Foo"])
    with pytest.raises(ValueError, match=r"model_params.embedding_size of BPR must be an integer >= 0, got -3"):
        ej.load_config(None, ["model=BPR", "model_params.embedding_size=-3"])
    with pytest.raises(ValueError, match=r"model_params.hidden_dropout of SASRec must be a number >= 0, got -0.1"):
        ej.load_config(None, ["model=SASRec", "model_params.hidden_dropout=-0.1"])
    with pytest.raises(ValueError, match=r"data.min_user_interactions must be an integer >= 0 \(or None: auto\), got -5"):
        ej.load_config(None, ["data.min_user_interactions=-5"])
    with pytest.raises(ValueError, match=r"unknown scenario settings \['fractoin'\]; the UnlearnConfig fields are \["):
        ej.scenario_config("sensitive:Horror", "scif", fractoin=0.01)
    with pytest.raises(ValueError, match=r"method scif: unknown options \['dampin'\]"):
        ej.scenario_config("sensitive:Horror", "scif", options={"dampin": 0.1})
    with pytest.raises(ValueError, match=r"method scif: option damping must be a number >= 0 \(or None\), got -1"):
        ej.UnlearnConfig(method="scif", method_options={"damping": -1})
    with pytest.raises(ValueError, match=r"method gif: option gif_iterations must be an integer >= 0, got 2.5"):
        ej.scenario_config("sensitive:Horror", "gif", options={"gif_iterations": 2.5})
    assert ej.UnlearnConfig(method="scif", method_options={"damping": "1e-3"}).method_options == {"damping": "1e-3"}
    assert ej.UnlearnConfig(method="original").method == "untouched"  # an old name becomes today's
    assert ej.UnlearnConfig(method="SCIF").method == "scif"


def test_a_bad_setting_fails_before_training_and_on_the_command_line_without_a_traceback(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"train.epochs must be an integer >= 1, got -1"):
        ej.train_model(["model=BPR", "dataset=synthetic", "train.epochs=-1"], out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    for setting, said in (("train.epochs=-1", "train.epochs must be an integer >= 1, got -1"),
                          ("model=Foo", "model: unknown model 'Foo'")):
        assert main(["train", "--quiet", "--set", "dataset=synthetic", "--set", setting, "--out", str(tmp_path / "cli")]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"erase-jax: error: {said}") and "Traceback" not in error, error
    assert not (tmp_path / "cli").exists()


def test_missing_scenario_settings_name_the_python_parameter(run):
    with pytest.raises(ValueError, match="needs fraction"):
        ej.forget_set(run, "sensitive:Horror")
    with pytest.raises(ValueError, match="needs category"):
        ej.forget_set(run, "sensitive", fraction=0.01)


@pytest.mark.parametrize("name", ["scenario_config", "forget_set", "requests", "unlearn_requests", "protocol",
                                  "time_request", "time_stream"])
def test_help_on_a_function_taking_scenario_settings_lists_them(name):
    shown = pydoc.render_doc(getattr(ej, name), renderer=pydoc.plaintext)
    missing = [f.name for f in dataclasses.fields(ej.UnlearnConfig) if f"{f.name}: " not in shown]
    assert missing == [], f"help(ej.{name}) does not list {missing}"
    assert ">>> " in shown  # the example stays in front


def test_help_on_train_model_lists_the_run_settings():
    from erase_jax.data.loading import DataConfig
    from erase_jax.train import TrainConfig

    shown = pydoc.render_doc(ej.train_model, renderer=pydoc.plaintext)
    assert [f.name for f in dataclasses.fields(ej.RunConfig) if f"{f.name}: " not in shown] == []
    for section, cls in (("train", TrainConfig), ("data", DataConfig), ("eval", config.EvalConfig)):
        listed = shown[shown.index(f"{section}.*: "):].split("(`")[0]
        assert [f.name for f in dataclasses.fields(cls) if f.name not in listed] == [], section


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
