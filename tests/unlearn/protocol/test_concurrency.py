"""Two unlearn jobs on one scenario folder: the second is refused at once, the first completes
with intact results, and a job killed with SIGKILL leaves no lock that blocks the next one.

The holder is a real `erase-jax unlearn` in another process, slowed by `SlowOriginal` (the
no-op method with a pause per request), so the contender surely runs while it holds the lock.
The no-op method leaves the model as trained: its rows must equal the trained model's.
"""

from __future__ import annotations

import csv
import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest

from erase_jax.cli import main
from erase_jax.folder_lock import LOCK_FILE
from erase_jax.unlearn.methods import base
from erase_jax.unlearn.protocol import jobs
from erase_jax.unlearn.protocol.run import STATE_DIR, UnlearnConfig
from tests import tiny
from tests.conftest import REPO_ROOT
from tests.unlearn.methods.contract import registered_for_module

SCENARIO = ["--scenario", "sensitive:Horror", "--fraction", "0.01", "--evaluators", "utility"]  # 5 requests


@dataclasses.dataclass(frozen=True)
class SlowOriginal:
    """The no-op method, pausing `pause` seconds per request (tests only)."""

    name: ClassVar[str] = "test_slow_original"
    pause: float = 0.0

    def retain_budget(self, n_forget_rows: int) -> int:
        return 0

    def init(self, model, params):
        return ()

    def unlearn(self, model, params, state, request, key):
        time.sleep(self.pause)
        return params, state, {}


def register_slow() -> None:
    base.register(SlowOriginal)


slow_method = registered_for_module(SlowOriginal)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    return tiny.tiny_run("BPR", tmp_path_factory.mktemp("concurrency") / "bpr", ["train.epochs=2"])


def command(run: Path, scenario_dir: Path, pause: float) -> list[str]:
    return ["unlearn", "--quiet", "--run", str(run), "--method", SlowOriginal.name, "--option", f"pause={pause}",
            *SCENARIO, "--out", str(scenario_dir)]


def start_holder(run: Path, scenario_dir: Path, pause: float) -> subprocess.Popen:
    """`erase-jax unlearn` with the slow method in a fresh interpreter; returns once it holds
    the method folder's lock."""
    driver = (f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); "
              "from tests.unlearn.protocol.test_concurrency import register_slow; register_slow(); "
              "from erase_jax.cli import main; sys.exit(main(sys.argv[1:]))")
    process = subprocess.Popen([sys.executable, "-c", driver, *command(run, scenario_dir, pause)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = scenario_dir / SlowOriginal.name / LOCK_FILE
    deadline = time.time() + 180
    while f"pid {process.pid}," not in (lock.read_text() if lock.exists() else ""):
        assert process.poll() is None, f"the holder ended early: {process.stderr.read()}"
        assert time.time() < deadline, "the holder never took the lock"
        time.sleep(0.05)
    return process


def assert_intact(scenario_dir: Path) -> None:
    """Nine rows (the trained model at -1..3, the method at 0..3), the method's equal to the
    trained model's, every request recorded once, no temporary file and no lock left held."""
    with (scenario_dir / "unlearning.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["checkpoint_idx"]) for r in rows] == (
        [("trained", str(k)) for k in range(-1, 4)] + [(SlowOriginal.name, str(k)) for k in range(4)])
    by_key = {(r["eval_type"], r["checkpoint_idx"]): r for r in rows}
    for k in map(str, range(4)):
        assert by_key["unlearning", k]["test_ndcg@10"] == by_key["trained", k]["test_ndcg@10"]
    method_dir = scenario_dir / SlowOriginal.name
    with (method_dir / "requests.csv").open() as handle:
        assert [int(r["batch"]) for r in csv.DictReader(handle)] == list(range(5))
    assert not list(scenario_dir.rglob("*.tmp"))
    assert all(lock.read_text() == "" for lock in scenario_dir.rglob(LOCK_FILE))


def test_a_second_unlearn_on_the_folder_is_refused_while_the_first_completes(trained_run, tmp_path, capsys):
    scenario_dir = tmp_path / "scenario"
    holder = start_holder(trained_run, scenario_dir, pause=1.0)
    started = time.perf_counter()
    assert main(command(trained_run, scenario_dir, pause=1.0)) == 2
    refused_after = time.perf_counter() - started
    error = capsys.readouterr().err
    assert holder.poll() is None, "the holder finished before the contender was refused"
    assert error.startswith(f"erase-jax: error: cannot unlearn {SlowOriginal.name}: {scenario_dir / SlowOriginal.name} "
                            f"is in use by another erase-jax process (pid {holder.pid}, "), error
    assert "Traceback" not in error and refused_after < 30
    _, stderr = holder.communicate(timeout=300)
    assert holder.returncode == 0, stderr
    assert_intact(scenario_dir)


def test_a_killed_holder_leaves_no_lock_that_blocks(trained_run, tmp_path):
    scenario_dir = tmp_path / "scenario"
    holder = start_holder(trained_run, scenario_dir, pause=0.5)
    state = scenario_dir / SlowOriginal.name / STATE_DIR
    deadline = time.time() + 60
    while not any(p.name.isdigit() for p in state.glob("*")) and time.time() < deadline:
        time.sleep(0.05)  # killed mid-stream, after a request was saved
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = scenario_dir / SlowOriginal.name / LOCK_FILE
    assert f"pid {holder.pid}," in lock.read_text()  # left behind by the dead process
    assert not (scenario_dir / "unlearning.csv").exists()

    config = UnlearnConfig(method=SlowOriginal.name, method_options={"pause": 0.5}, scenario="sensitive",
                           category="Horror", fraction=0.01, evaluators=("utility",))
    assert len(jobs.unlearn(trained_run, config, out=str(scenario_dir), quiet=True)) == 9
    assert_intact(scenario_dir)
