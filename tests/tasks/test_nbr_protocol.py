"""The next-basket task through the unlearning protocol: a killed run resumes to the same rows.

A tiny DNNTSP (the NBR conformance model of `tests.tiny`) is unlearned with SCIF on the
sensitive "Horror" baskets of the synthetic basket data, once straight through and once killed
by a real SIGKILL after its second quarter checkpoint, then started again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from erase_jax.unlearn.protocol import jobs
from erase_jax.unlearn.protocol.run import QUARTERS_DIR, STATE_DIR, UnlearnConfig
from tests.conftest import REPO_ROOT
from tests.tiny import tiny_run
from tests.unlearn.protocol.test_protocol import read_csv_rows, saved_steps

SCENARIO = dict(scenario="sensitive", category="Horror", fraction=0.02)


@pytest.mark.slow
def test_killed_nbr_unlearning_run_resumes_to_the_same_rows(tmp_path):
    run = tiny_run("DNNTSP", tmp_path / "run")
    config = UnlearnConfig(method="scif", **SCENARIO)
    straight_dir = tmp_path / "straight"
    jobs.unlearn(run, config, out=str(straight_dir), quiet=True)

    killed_dir = tmp_path / "killed"
    method_dir = killed_dir / "scif"
    driver = f"import sys; sys.path.insert(0, {str(REPO_ROOT)!r}); from erase_jax.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", driver, "unlearn", "--quiet", "--run", str(run), "--method", "scif",
               "--scenario", "sensitive:Horror", "--fraction", "0.02", "--out", str(killed_dir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if (method_dir / QUARTERS_DIR / "1").is_dir():
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    n_requests = len(read_csv_rows(straight_dir / "scif" / "requests.csv"))
    assert saved_steps(method_dir / STATE_DIR)[-1] < n_requests
    assert not (method_dir / "unlearning.csv").exists()

    jobs.unlearn(run, config, out=str(killed_dir), quiet=True)
    assert read_csv_rows(method_dir / "unlearning.csv") == read_csv_rows(straight_dir / "scif" / "unlearning.csv")
    assert read_csv_rows(method_dir / "requests.csv") == read_csv_rows(straight_dir / "scif" / "requests.csv")
