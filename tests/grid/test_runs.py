"""The smoke grid end to end, with worker processes: the leaderboard, reuse of finished tasks by
a second run and by an overlapping grid, a failing cell that stops only itself, and (slow) a
grid killed with SIGKILL that finishes on the next run as if it had never stopped."""

from __future__ import annotations

import copy
import fcntl
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from erase_jax.cli import main
from erase_jax.grid import page
from erase_jax.grid.command import STORE_DIR, execute_grid
from erase_jax.grid.leaderboard import COLUMNS
from tests.conftest import REPO_ROOT
from tests.grid.conftest import SMOKE_FILE, leaderboard, without_timing
from tests.grid.test_spec import SMOKE


def test_the_smoke_grid_runs_every_task_once_into_one_leaderboard(smoke):
    out, plan, summary = smoke
    assert summary.failed == {} and summary.blocked == {} and summary.reused == []
    assert sorted(summary.executed) == sorted(plan.tasks)
    board = leaderboard(out)
    assert tuple(board.columns) == COLUMNS
    methods = {m: set(group["checkpoint"]) for m, group in board.groupby("method")}
    assert methods == {m: {"0", "1", "2", "3"} for m in ("untouched", "scif", "retrain")}
    cells = board.drop_duplicates("method").set_index("method")["cell"]
    assert cells["retrain"] == plan.cells[0].reference and cells["scif"] == plan.cells[1].unlearn
    scif = board[(board["method"] == "scif") & (board["checkpoint"] == "3")].set_index("metric")["value"]
    assert {"test_ndcg@10", "pct_users_with_sensitive@20", "agree_unlearned_jaccard@20", "request_seconds_median"} <= set(scif.index)
    assert float(scif["test_ndcg@10"]) > 0 and (board["commit"] != "").all() and (board["machine"] != "").all()
    text = (out / "smoke" / "leaderboard.md").read_text()
    assert "## horror: BPR on synthetic" in text and "Gap to the retrain" in text
    assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and "method" not in line][:3] == [
        "| untouched", "| scif", "| retrain"]
    assert (out / "smoke" / "failures.csv").read_text().count("\n") == 1  # the header only
    html = (out / "smoke" / "leaderboard.html").read_text()  # the page of the CSV (tests/grid/test_page.py)
    assert html == page.render(board, pd.read_csv(out / "smoke" / "failures.csv", dtype=str), "smoke")
    assert "horror: BPR on synthetic" in html and html.count("<svg ") == 4  # NDCG, Recall, % sensitive, forgotten hit


def test_running_the_grid_again_runs_nothing(smoke):
    out, plan, _ = smoke
    before = (out / "smoke" / "leaderboard.csv").read_text()
    _, summary, _ = execute_grid(SMOKE_FILE, out, workers=2, quiet=True)
    assert summary.executed == [] and sorted(summary.reused) == sorted(plan.tasks)
    assert (out / "smoke" / "leaderboard.csv").read_text() == before


def test_an_overlapping_grid_reuses_finished_cells_and_a_failing_cell_stops_only_itself(smoke, tmp_path, capsys):
    out, first, _ = smoke
    grid = copy.deepcopy(SMOKE)
    grid["datasets"]["missing"] = {"dataset": str(tmp_path / "no-such-data")}  # validates; fails when it loads
    grid["methods"]["scif-short"] = {"method": "scif", "cg_iterations": 10}
    path = tmp_path / "overlap.yaml"
    path.write_text(yaml.safe_dump(grid))
    plan, summary, _ = execute_grid(path, out, workers=2, quiet=True)

    assert sorted(summary.reused) == sorted(first.tasks)  # the smoke grid's cells, all of them
    new = [c for c in plan.cells if c.cell.dataset == "synthetic" and c.cell.method == "scif-short"]
    assert summary.executed == [new[0].unlearn]
    missing = [c for c in plan.cells if c.cell.dataset == "missing"]
    assert list(summary.failed) == [missing[0].train]
    assert "no-such-data' not found" in summary.failed[missing[0].train].error
    assert len(summary.blocked) == 4 + 1 + 3 and set(summary.blocked.values()) == {missing[0].train}

    board = leaderboard(out, "overlap")
    assert set(board["dataset"]) == {"synthetic"} and set(board["method"]) == {"untouched", "scif", "scif-short", "retrain"}
    failures = pd.read_csv(out / "overlap" / "failures.csv")
    assert list(failures["status"]) == ["failed"] + ["blocked"] * 8 and set(failures["dataset"]) == {"missing"}
    assert "## Failures" in (out / "overlap" / "leaderboard.md").read_text()

    # the command reports the failure in its exit status; only the failed task is tried again
    assert main(["grid", str(path), "--out", str(out), "--quiet"]) == 1
    assert "0 tasks run, 9 reused from the store or archive, 1 failed, 8 blocked" in capsys.readouterr().out


def grid_command(out) -> list[str]:
    return [sys.executable, "-m", "erase_jax.cli", "grid", str(SMOKE_FILE), "--out", str(out), "--workers", "2", "--quiet"]


@pytest.mark.slow
def test_a_grid_killed_mid_way_finishes_on_the_next_run_with_the_same_leaderboard(smoke, tmp_path):
    out = tmp_path / "killed"
    done = out / STORE_DIR / "done"
    process = subprocess.Popen(grid_command(out), cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if len(list(done.glob("*.json"))) >= 2:  # the trained model and a first retrain
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    finished = {p.stem for p in done.glob("*.json")}
    _, plan, _ = smoke
    assert 2 <= len(finished) < len(plan.tasks) and not (out / "smoke").exists()
    time.sleep(1)
    for lock in (out / STORE_DIR / "locks").glob("*.lock"):  # no worker outlived the grid
        with lock.open() as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)

    _, summary, _ = execute_grid(SMOKE_FILE, out, workers=2, quiet=True)
    assert set(summary.reused) == finished and set(summary.executed) == set(plan.tasks) - finished
    assert summary.failed == {}
    pd.testing.assert_frame_equal(without_timing(leaderboard(out)), without_timing(leaderboard(smoke[0])))
    assert os.path.getsize(out / "smoke" / "leaderboard.md") > 0


@pytest.mark.slow
def test_retrain_seeds_put_the_noise_floors_retrains_in_the_leaderboard(smoke, tmp_path):
    out, _, _ = smoke
    path = tmp_path / "smoke_floor.yaml"
    path.write_text(yaml.safe_dump({**copy.deepcopy(SMOKE), "retrain_seeds": [3]}))
    plan, summary, _ = execute_grid(path, out, workers=2, quiet=True)
    assert not summary.failed and not summary.blocked
    assert len(summary.reused) == 1  # the smoke grid's trained model; its retrains are another scenario folder's
    board, plain = leaderboard(out, "smoke_floor"), leaderboard(out)
    floor = board[board["method"] == "retrain@seed3"]
    assert sorted(set(floor["checkpoint"])) == ["0", "1", "2", "3"] and "agree_unlearned_jaccard@20" in set(floor["metric"])
    recall = lambda frame, method: frame[(frame["method"] == method) & (frame["metric"] == "test_recall@20")
                                         ].sort_values("checkpoint")["value"].tolist()
    assert recall(board, "retrain") == recall(plain, "retrain")  # the seed-2 retrains, trained again alike
    assert recall(board, "retrain@seed3") != recall(board, "retrain")


def test_a_grid_with_an_audit_section_adds_the_audit_to_its_leaderboard(smoke, tmp_path):
    """The smoke grid plus an `audit` section, run on the smoke grid's store: the cells' tasks are
    reused and one audit task runs (one data set, model, scenario and seed); its game 2 AUC and
    TPR stand in the leaderboard under the no-op's and the retrain's labels at the last checkpoint."""
    out, first, _ = smoke
    grid = copy.deepcopy(SMOKE)
    grid["audit"] = {"shadows": 9, "audited": 20, "epochs": 2, "population": 20, "removals": ["untouched", "retrain"]}
    path = tmp_path / "audited.yaml"
    path.write_text(yaml.safe_dump(grid))
    plan, summary, _ = execute_grid(path, out, workers=1, quiet=True)
    assert summary.failed == {} and [plan.tasks[t].kind for t in summary.executed] == ["audit"]
    board = leaderboard(out, "audited")
    audited = board[board["metric"].str.startswith("audit_")]
    assert set(audited["method"]) == {"untouched", "retrain"} and set(audited["checkpoint"]) == {"3"}
    assert set(audited["metric"]) == {"audit_game2_auc", "audit_game2_tpr@1%fpr"}
    assert all(0.0 <= float(v) <= 1.0 for v in audited["value"])
    assert "audit AUC (game 2)" in (out / "audited" / "leaderboard.md").read_text()
