"""Training: resume after an interruption is bit-identical; early stopping; config errors."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.batching.cf import CFBatcher
from erase_jax.checkpoint import Checkpointer
from erase_jax.config import ConfigError, load_config
from erase_jax.run import build_experiment, evaluate_params
from erase_jax.train import TrainConfig, fit

SMALL_SYNTHETIC = "data.synthetic={n_users: 300, n_items: 150, avg_interactions: 20}"


def _experiment(model="BPR"):
    config = load_config(None, [f"model={model}", "dataset=synthetic", SMALL_SYNTHETIC])
    return build_experiment(config)


def _fit(experiment, checkpointer, config, progress=None):
    batcher = CFBatcher.build(experiment.examples.train, config.batch_size)
    return fit(
        experiment.model, experiment.context, batcher,
        lambda params: evaluate_params(experiment, params, "valid"),
        config, seed=5, checkpointer=checkpointer, progress=progress,
    )


class Interrupt(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("model", ["BPR", "LightGCN"])
def test_resumed_training_is_bit_identical(tmp_path, model):
    experiment = _experiment(model)
    config = TrainConfig(epochs=6, batch_size=256, stopping_step=100)
    straight = _fit(experiment, Checkpointer(tmp_path / "straight"), config)

    def stop_after_epoch_3(info):
        if info["epoch"] == 3:
            raise Interrupt

    interrupted = Checkpointer(tmp_path / "interrupted")
    with pytest.raises(Interrupt):
        _fit(experiment, interrupted, config, progress=stop_after_epoch_3)
    assert interrupted.latest_step() == 3
    resumed = _fit(experiment, Checkpointer(tmp_path / "interrupted"), config)

    assert resumed.record["epoch_loss"] == straight.record["epoch_loss"]
    assert resumed.record["valid"] == straight.record["valid"]
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(straight.state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_early_stopping_keeps_the_best_epoch():
    experiment = _experiment()
    # A learning rate this large makes validation get worse quickly after the first epochs.
    config = TrainConfig(epochs=50, batch_size=256, learning_rate=0.5, stopping_step=2)
    result = _fit(experiment, None, config)
    scores = [v["recall@20"] for v in result.record["valid"]]
    assert result.record["stopped"] == "early stopping"
    best = int(result.state.best_epoch)
    assert scores[best - 1] == max(scores)
    assert all(s < max(scores) for s in scores[best:])  # no later validation reached the best
    assert len(scores) == best + 3  # stopped after more than stopping_step=2 stale validations


@pytest.mark.slow
def test_without_validation_data_training_runs_the_configured_epochs(tmp_path):
    """valid_ratio 0 on given train/test files: no validation, the last epoch is the result."""
    from erase_jax.run import train_run

    folder = tmp_path / "given"
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = [" ".join(map(str, [u, *rng.choice(60, 12, replace=False)])) for u in range(40)]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    (folder / "test.txt").write_text("\n".join(f"{u} {60 + u % 5}" for u in range(40)) + "\n")
    config = load_config(None, ["dataset=given", f"data.data_root={tmp_path}", "data.valid_ratio=0",
                                "train.epochs=3", "train.batch_size=64"])
    result = train_run(config, tmp_path / "run", quiet=True)
    assert result["data"]["n_valid"] == 0 and result["valid"] == {}
    assert result["epochs"] == 3 and result["best_epoch"] == 3 and result["stopped"] == "max epochs"
    assert 0 <= result["test"]["recall@20"] <= 1


def test_unknown_config_keys_are_named():
    with pytest.raises(ConfigError, match=r"train.learnin_rate"):
        load_config(None, ["train.learnin_rate=0.1"])
    with pytest.raises(ConfigError, match=r"unknown model_params \['n_layer'\]"):
        load_config(None, ["model=LightGCN", "model_params.n_layer=3"])
    with pytest.raises(ValueError, match="model: unknown model 'Bert'; available: "):
        load_config(None, ["model=Bert"])


def test_yaml_file_and_overrides_resolve_model_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model: LightGCN\ndataset: synthetic\ntrain: {learning_rate: 0.01}\n")
    config = load_config(path, ["model_params.n_layers=3"])
    assert config.model_params == {"embedding_size": 64, "n_layers": 3, "reg_weight": 1e-4, "require_pow": False}
    assert config.train.learning_rate == 0.01 and config.data.dataset == "synthetic"


def _cli(*args, cwd):
    return [sys.executable, "-m", "erase_jax.cli", *args]


@pytest.mark.slow
def test_cli_run_killed_mid_training_resumes_to_the_same_result(tmp_path):
    """A real SIGKILL of `erase-jax train`, then the same command again."""
    common = ["train", "--quiet", "--set", "dataset=synthetic", "--set", SMALL_SYNTHETIC,
              "--set", "train.epochs=8", "--set", "train.stopping_step=100", "--set", "train.batch_size=256"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_cli(*common, "--out", str(straight), cwd=tmp_path), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(_cli(*common, "--out", str(killed), cwd=tmp_path), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        steps = [p.name for p in (killed / "checkpoints").glob("*") if p.name.isdigit()]
        if any(int(s) >= 2 for s in steps):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "result.json").exists(), "the run finished before it could be killed"

    subprocess.run(_cli(*common, "--out", str(killed), cwd=tmp_path), check=True, env=env, capture_output=True)
    a = json.loads((straight / "result.json").read_text())
    b = json.loads((killed / "result.json").read_text())
    assert a["test"] == b["test"] and a["valid"] == b["valid"] and a["epoch_loss"] == b["epoch_loss"]


@pytest.mark.slow
def test_cli_reports_bad_config_without_a_traceback(tmp_path):
    result = subprocess.run(
        _cli("train", "--set", "train.nope=1", "--out", str(tmp_path / "x"), cwd=tmp_path),
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "unknown config keys ['train.nope']" in result.stderr
    assert "Traceback" not in result.stderr


def test_exponent_numbers_without_a_dot_are_floats():
    # YAML 1.1 reads "1e-4" as a string; the config must still take it as a number.
    config = load_config(None, ["model=LightGCN", "model_params.reg_weight=1e-4", "train.learning_rate=1e-3"])
    assert config.model_params["reg_weight"] == 1e-4 and config.train.learning_rate == 1e-3
    with pytest.raises(ConfigError, match="expected a number"):
        load_config(None, ["train.learning_rate=fast"])


def test_adagrad_accumulator_start_sets_the_first_step():
    # The RecEraser TF code starts Adagrad's accumulator at 1e-8 with no epsilon: the first
    # step is lr * g / sqrt(1e-8 + g^2), i.e. about lr per entry whatever g's size; optax's
    # default start 0.1 makes a gradient of 1e-4 move by lr * 3e-4 instead.
    from erase_jax.train import TrainConfig, make_optimizer

    grads = {"w": jnp.array([1e-4, -2e-3, 0.0])}
    params = {"w": jnp.zeros(3)}
    paper = make_optimizer(TrainConfig(optimizer="adagrad", learning_rate=0.05, adagrad_initial_accumulator=1e-8, adagrad_eps=0.0), 1)
    step, _ = paper.update(grads, paper.init(params), params)
    want = -0.05 * np.array([1e-4, -2e-3, 0.0]) / np.sqrt(1e-8 + np.array([1e-4, -2e-3, 0.0]) ** 2)
    np.testing.assert_allclose(np.asarray(step["w"]), want, rtol=1e-5)
    default = make_optimizer(TrainConfig(optimizer="adagrad", learning_rate=0.05), 1)
    step, _ = default.update(grads, default.init(params), params)
    np.testing.assert_allclose(np.asarray(step["w"])[0], -0.05 * 1e-4 / np.sqrt(0.1 + 1e-8 + 1e-7), rtol=1e-5)
