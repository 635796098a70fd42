"""The sequential unlearning protocol end to end: resume, quarter checkpoints, retain data, bad input.

The scenario / request-stream / retain-sampler units are tested in `tests/data/test_scenarios.py`; here
the real runner (`erase_jax.unlearn.runner.run_requests` behind `jobs.unlearn` and the
CLI) runs on a small trained BPR with `ProbeFinetune`, a test-only method whose state changes
with every request: a few SGD-with-momentum steps (descent on the retain rows, ascent on the
forget rows) with the optimiser state carried across requests, plus a perturbation drawn from
the request's key. So a resumed run can only end identical to an uninterrupted one if the
parameters, method state, removal mask, retain-pool cursor and keys are all restored exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from erase_jax.batching.cf import bucket_size
from erase_jax.checkpoint import Checkpointer
from erase_jax.config import load_config
from erase_jax.run import load_run, train_run
from erase_jax.unlearn.methods import base
from erase_jax.unlearn.protocol import jobs
from erase_jax.unlearn.protocol.run import (
    QUARTERS_DIR,
    STATE_DIR,
    UnlearnConfig,
    build_protocol,
    load_quarter,
)
from tests.conftest import REPO_ROOT
from tests.unlearn.methods.contract import registered_for_module

SMALL_SYNTHETIC = "data.synthetic={n_users: 300, n_items: 150, avg_interactions: 20}"
SCENARIO = ["--scenario", "sensitive:Horror", "--fraction", "0.02"]  # 20 requests on this data
SLOW_ENV = "ERASE_JAX_TEST_SECONDS_PER_REQUEST"  # lets a subprocess be killed mid-stream
TIMING_COLUMNS = ("seconds", "_rss_", "_mib", "n_timeouts", "timeout", "n_compiles", "compilation_cache")


# ---------------------------------------------------------------------------------------------
# a test-only unlearning method

PROBE_ROWS = 256
PROBE_LOG: list[dict] = []  # what the probe saw and produced, request by request (this process)


@dataclasses.dataclass(frozen=True)
class ProbeFinetune:
    """Fine-tuning with a carried optimiser state and key-driven noise (tests only).

    Per request: `steps` SGD-with-momentum steps on
    loss(retain rows) - ascent_weight * loss(forget rows), then params += noise * N(0, 1)
    drawn from the request's key. Only for BPR-like models whose loss ignores its key.
    """

    name: ClassVar[str] = "test_finetune"
    learning_rate: float = 0.05
    momentum: float = 0.9
    ascent_weight: float = 0.5
    steps: int = 3
    noise: float = 1e-3

    def retain_budget(self, n_forget_rows: int) -> int:
        return 32

    def init(self, model, params):
        return {"optimizer": self._optimizer().init(params), "n_requests": jnp.int32(0)}

    def unlearn(self, model, params, state, request, key):
        pause = float(os.environ.get(SLOW_ENV, "0"))
        if pause:
            time.sleep(pause)
        forget, retain = _padded(request.forget), _padded(request.retain)
        params, optimizer_state = _probe_steps(
            model, self, params, state["optimizer"], forget, retain, request.context_after, _noise_like(params, key)
        )
        state = {"optimizer": optimizer_state, "n_requests": state["n_requests"] + 1}
        retain = request.retain
        PROBE_LOG.append({
            "index": request.index,
            "users": np.asarray(request.users).copy(),
            "retain_users": np.unique(np.asarray(retain["users"])[np.asarray(retain["weight"]) > 0]),
            "params": jax.tree.map(np.asarray, params),
        })
        return params, state, {"n_requests": state["n_requests"]}

    def _optimizer(self):
        return optax.sgd(self.learning_rate, momentum=self.momentum)


def _padded(batch: dict) -> dict:
    """The batch padded (weight 0) to at least PROBE_ROWS rows, so the probe compiles once."""
    size = bucket_size(len(batch["weight"]), PROBE_ROWS)
    return {name: jnp.pad(value, (0, size - len(value))) for name, value in batch.items()}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _probe_steps(model, method: ProbeFinetune, params, optimizer_state, forget, retain, context, noise):
    optimizer = method._optimizer()
    no_key = jax.random.PRNGKey(0)  # BPR's loss draws nothing

    def objective(p):
        return model.loss(p, context, retain, no_key) - method.ascent_weight * model.loss(p, context, forget, no_key)

    def step(_, carry):
        params, optimizer_state = carry
        updates, optimizer_state = optimizer.update(jax.grad(objective)(params), optimizer_state, params)
        return optax.apply_updates(params, updates), optimizer_state

    params, optimizer_state = jax.lax.fori_loop(0, method.steps, step, (params, optimizer_state))
    return jax.tree.map(lambda x, n: x + method.noise * n, params, noise), optimizer_state


def _noise_like(params, key) -> dict:
    """Standard normal noise for every parameter, drawn from the request's key (on the host:
    a threefry draw under jit would cost seconds of compilation on a busy CPU)."""
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    return jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(x.dtype), params)


def register_probe() -> None:
    base.register(ProbeFinetune)


probe_method = registered_for_module(ProbeFinetune)


# ---------------------------------------------------------------------------------------------
# shared runs: one trained model, one uninterrupted unlearning run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("protocol") / "bpr"
    config = load_config(None, [
        "model=BPR", "dataset=synthetic", SMALL_SYNTHETIC, "train.epochs=3", "train.batch_size=256",
        "model_params.embedding_size=16",
    ])
    train_run(config, out, quiet=True)
    return out


def probe_config(**changes) -> UnlearnConfig:
    values = dict(method="test_finetune", scenario="sensitive", category="Horror", fraction=0.02)
    return UnlearnConfig(**{**values, **changes})


@dataclasses.dataclass
class FinishedRun:
    scenario_dir: Path
    rows: list[dict]
    log: list[dict]

    @property
    def method_dir(self) -> Path:
        return self.scenario_dir / "test_finetune"


@pytest.fixture(scope="module")
def straight(trained_run, probe_method) -> FinishedRun:
    """The probe over the whole request stream, uninterrupted."""
    PROBE_LOG.clear()
    scenario_dir = trained_run.parent / "straight"
    rows = jobs.unlearn(trained_run, probe_config(), out=str(scenario_dir), quiet=True)
    return FinishedRun(scenario_dir, rows, list(PROBE_LOG))


@pytest.fixture(scope="module")
def protocol(trained_run):
    experiment, _ = load_run(trained_run)
    return build_protocol(experiment, probe_config())


# ---------------------------------------------------------------------------------------------
# comparing two finished runs


def saved_steps(folder: Path) -> list[int]:
    checkpointer = Checkpointer(folder, max_to_keep=None)
    steps = checkpointer.all_steps()
    checkpointer.close()
    return sorted(steps)


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if not any(part in k for part in TIMING_COLUMNS)}


def read_csv_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return [without_timing(row) for row in csv.DictReader(handle)]


def assert_same_results(a: Path, b: Path, params_like, n_rows: int) -> None:
    """Quarter params and masks bit-identical; per-request record and result rows equal
    except for timing and memory fields."""
    for k in range(4):
        qa = Checkpointer(a / QUARTERS_DIR, max_to_keep=None)
        qb = Checkpointer(b / QUARTERS_DIR, max_to_keep=None)
        like = {"params": params_like, "removed": np.zeros(n_rows, bool)}
        (sa, ra), (sb, rb) = qa.restore(k, like), qb.restore(k, like)
        qa.close(), qb.close()
        assert ra == rb
        for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    ja, jb = (json.loads((d / "unlearning.json").read_text()) for d in (a, b))
    assert [without_timing(r) for r in ja["requests"]] == [without_timing(r) for r in jb["requests"]]
    assert [without_timing(r) for r in ja["rows"]] == [without_timing(r) for r in jb["rows"]]
    rows_a, rows_b = read_csv_rows(a / "unlearning.csv"), read_csv_rows(b / "unlearning.csv")
    assert rows_a == rows_b and len(rows_a) == 9  # the trained model at -1..3, the method at 0..3
    assert read_csv_rows(a / "requests.csv") == read_csv_rows(b / "requests.csv")


# ---------------------------------------------------------------------------------------------
# checkpoints, removal masks, retain data


@pytest.mark.slow
def test_four_quarter_checkpoints_hold_the_params_and_masks_through_c_k(straight, protocol):
    inter = protocol.experiment.data.interactions
    checkpoints = protocol.stream.checkpoint_batches
    assert len(protocol.stream) == 20 and checkpoints == [5, 10, 15, 19]
    assert saved_steps(straight.method_dir / QUARTERS_DIR) == [0, 1, 2, 3]
    after_request = {entry["index"]: entry["params"] for entry in straight.log}
    assert sorted(after_request) == list(range(20))
    for k, c_k in enumerate(checkpoints):
        params, removed = load_quarter(straight.method_dir, k, after_request[0], len(inter))
        np.testing.assert_array_equal(removed, protocol.forget_set.removal_mask(inter, c_k + 1))
        assert removed.sum() < protocol.forget_set.removal_mask(inter).sum() or k == 3
        for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(after_request[c_k]), strict=True):
            np.testing.assert_array_equal(np.asarray(x), y)
    rows = {(r["eval_type"], r["checkpoint_idx"]): r for r in straight.rows}
    for k, c_k in enumerate(checkpoints):
        assert rows["unlearning", k]["n_unlearned_users"] == c_k + 1
        assert rows["unlearning", k]["n_removed"] == protocol.forget_set.removal_mask(inter, c_k + 1).sum()


@pytest.mark.slow
def test_retain_rows_never_belong_to_users_unlearned_so_far(straight, protocol):
    stream, train_users = protocol.stream, protocol.train_rows.counts > 0
    for entry in straight.log:
        b = entry["index"]
        np.testing.assert_array_equal(entry["users"], stream.batch(b).users)
        retain_users = entry["retain_users"]
        assert len(retain_users) > 0
        assert not np.isin(retain_users, stream.users_through(b)).any(), f"request {b}"
        assert train_users[retain_users].all()


# ---------------------------------------------------------------------------------------------
# resume


class Interrupt(Exception):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("where", ["between_quarter_and_state_save", "after_state_save"])
def test_interrupted_run_resumes_to_identical_results(trained_run, straight, protocol, monkeypatch, where):
    """Stopped right after request c_1 (the second checkpoint), then run again.

    "between_quarter_and_state_save" stops after quarter 1 is written but before the
    resumable state of that request is: the rerun redoes request c_1 and rewrites quarter 1.
    """
    c_1 = protocol.stream.checkpoint_batches[1]
    real_save = Checkpointer.save

    def save_then_stop(self, step, state, record):
        is_state = self.directory.name == STATE_DIR
        if is_state and step == c_1 + 1 and where == "between_quarter_and_state_save":
            raise Interrupt
        real_save(self, step, state, record)
        if is_state and step == c_1 + 1:
            raise Interrupt

    scenario_dir = trained_run.parent / f"interrupted_{where}"
    with monkeypatch.context() as patch:
        patch.setattr(Checkpointer, "save", save_then_stop)
        with pytest.raises(Interrupt):
            jobs.unlearn(trained_run, probe_config(), out=str(scenario_dir), quiet=True)
    method_dir = scenario_dir / "test_finetune"
    assert saved_steps(method_dir / QUARTERS_DIR) == [0, 1]
    expected_state_step = c_1 if where == "between_quarter_and_state_save" else c_1 + 1
    assert saved_steps(method_dir / STATE_DIR)[-1] == expected_state_step
    assert not (method_dir / "unlearning.csv").exists()

    jobs.unlearn(trained_run, probe_config(), out=str(scenario_dir), quiet=True)
    n_rows = len(protocol.experiment.data.interactions)
    assert_same_results(straight.method_dir, method_dir, straight.log[0]["params"], n_rows)


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory) -> dict:
    """The environment of CLI subprocesses: one persistent JAX compilation cache for all of
    them, so that each one after the first skips most compilation."""
    cache = tmp_path_factory.mktemp("jax_cache")
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def cli_with_probe(*args: str) -> list[str]:
    """`erase-jax ARGS` in a fresh interpreter that knows the probe method."""
    driver = (
        f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
        "from tests.unlearn.protocol.test_protocol import register_probe; register_probe(); "
        "from erase_jax.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return [sys.executable, "-c", driver, *args]


@pytest.mark.slow
def test_cli_run_killed_after_the_second_checkpoint_resumes_identically(trained_run, straight, protocol, cli_env):
    """A real SIGKILL of `erase-jax unlearn` once quarters/1 exists, then the same command."""
    scenario_dir = trained_run.parent / "killed"
    method_dir = scenario_dir / "test_finetune"
    command = cli_with_probe("unlearn", "--quiet", "--run", str(trained_run), "--method", "test_finetune",
                             *SCENARIO, "--out", str(scenario_dir))
    process = subprocess.Popen(command, env={**cli_env, SLOW_ENV: "0.15"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (method_dir / QUARTERS_DIR / "1").is_dir():
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    assert protocol.stream.checkpoint_batches[1] <= saved_steps(method_dir / STATE_DIR)[-1] < len(protocol.stream)
    assert not (method_dir / "unlearning.csv").exists()

    # The same job again (in this process: a second interpreter would only add start-up time).
    jobs.unlearn(trained_run, probe_config(), out=str(scenario_dir), quiet=True)
    n_rows = len(protocol.experiment.data.interactions)
    assert_same_results(straight.method_dir, method_dir, straight.log[0]["params"], n_rows)


# ---------------------------------------------------------------------------------------------
# bad input


def test_scenario_folder_of_a_forget_file_without_fraction():
    config = UnlearnConfig(scenario="sensitive", category="Horror", forget_file="sets/ml_pairs_seed_2.inter")
    assert config.tag() == "sensitive_Horror_ml_pairs_seed_2"
    assert UnlearnConfig(scenario="sensitive", category="Horror", fraction=0.003).tag() == "sensitive_Horror_f0.003"


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under the folders."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()
    }


@pytest.mark.slow
def test_bad_input_fails_clearly_and_leaves_results_untouched(trained_run, straight, protocol, cli_env, tmp_path):
    inter = protocol.experiment.data.interactions
    user, item = inter.user_tokens[0], inter.item_tokens[0]
    header = "user_id:token\titem_id:token\n"
    files = {
        "unknown_user": f"{header}{user}\t{item}\nno_such_user\t{item}\n",
        "unknown_item": f"{header}{user}\tno_such_item\n",
        "empty": header,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = ["--out", str(straight.scenario_dir)]  # the finished run's folder: must stay as it is
    run = ["--run", str(trained_run), *out]
    forget_file = ["--scenario", "sensitive:Horror", "--forget-file"]
    cases = {
        "unknown_user": (["unlearn", "--method", "original", *run, *forget_file, str(tmp_path / "unknown_user")],
                         "line 3: unknown user 'no_such_user'"),
        "unknown_item": (["unlearn", "--method", "original", *run, *forget_file, str(tmp_path / "unknown_item")],
                         "line 2: unknown item 'no_such_item'"),
        "empty": (["unlearn", "--method", "original", *run, *forget_file, str(tmp_path / "empty")],
                  "empty forget set"),
        "few_requests": (["unlearn", "--method", "original", *run, "--scenario", "sensitive:Horror",
                          "--fraction", "0.005"], "2 requests are too few for four checkpoints"),
        "unknown_category": (["retrain", *run, "--scenario", "sensitive:Western", "--fraction", "0.02"],
                             "category 'Western' not present"),
        "spam_unpoisoned": (["unlearn", "--method", "original", *run, "--scenario", "spam"],
                            "needs a model trained on poisoned data"),
        "other_settings": (["unlearn", "--method", "test_finetune", *run, "--scenario", "sensitive:Horror",
                            "--fraction", "0.03"], "holds an unlearning run with other settings"),
    }
    before = snapshot(trained_run, straight.scenario_dir)
    plain_cli = [sys.executable, "-m", "erase_jax.cli"]
    processes = {
        name: subprocess.Popen(
            cli_with_probe(*args, "--quiet") if "test_finetune" in args else [*plain_cli, *args, "--quiet"],
            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for name, (args, _) in cases.items()
    }
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 2, f"{name}: exit {process.returncode}\n{stderr}"
        assert cases[name][1] in stderr, f"{name}: {stderr}"
        assert "erase-jax: error: " in stderr and "Traceback" not in stderr, f"{name}: {stderr}"
    assert snapshot(trained_run, straight.scenario_dir) == before
    assert not list(straight.scenario_dir.rglob("*.tmp")) and not (straight.scenario_dir / "untouched").exists()
