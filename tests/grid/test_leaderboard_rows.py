"""experiments/leaderboard_rows.py: a grid's leaderboard back in the protocol's row shape, on a
hand-made leaderboard (rows written out by hand) and on the smoke grid's, whose rows must be the
ones the protocol itself wrote in the store."""

from __future__ import annotations

import csv
import importlib.util
import json

import pandas as pd
import pytest

from tests.conftest import REPO_ROOT
from tests.grid.conftest import leaderboard
from tests.grid.test_spec import GRIDS

SMOKE_GRID = GRIDS / "smoke.yaml"
# columns that say which cell a row is of: the protocol writes its own values (scenario "sensitive"),
# the leaderboard the grid's labels ("horror")
WHICH = {"dataset", "model", "seed", "scenario", "category", "fraction"}


def analysis():
    spec = importlib.util.spec_from_file_location("leaderboard_rows", REPO_ROOT / "experiments" / "leaderboard_rows.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_made(seeds=("2",)) -> pd.DataFrame:
    """A smoke-grid leaderboard by hand: the no-op and SCIF, the retrain, checkpoints 0 and 3."""
    rows = []
    for seed in seeds:
        for method, checkpoint, metric, value in [
            ("untouched", "0", "test_recall@20", "0.5"), ("untouched", "0", "request_seconds_median", "0.01"),
            ("untouched", "0", "n_requests", "5"), ("untouched", "3", "test_recall@20", "0.4"),
            ("retrain", "0", "test_recall@20", "0.45"), ("retrain", "0", "retrain_seconds", "3.0"),
            ("scif", "3", "test_recall@20", "0.3"), ("scif", "3", "n_requests", "5"),
        ]:
            rows.append({"cell": f"unlearn-{method}", "dataset": "synthetic", "model": "BPR", "scenario": "horror",
                         "method": method, "seed": seed, "checkpoint": checkpoint, "metric": metric, "value": value,
                         "commit": "abc1234" if method != "scif" else "def5678", "machine": "a machine"})
    return pd.DataFrame(rows, dtype=str)


def test_a_hand_made_leaderboard_becomes_the_protocols_rows():
    record = analysis().record(SMOKE_GRID, hand_made())
    identity = {"dataset": "synthetic", "model": "BPR", "scenario": "horror", "seed": "2"}
    assert record["rows"] == [
        {**identity, "checkpoint_idx": "0", "method": "untouched", "eval_type": "unlearning", "test_recall@20": "0.5",
         "request_seconds_median": "0.01", "n_requests": "5"},
        {**identity, "checkpoint_idx": "0", "method": "trained", "eval_type": "trained", "test_recall@20": "0.5"},
        {**identity, "checkpoint_idx": "0", "method": "retrain", "eval_type": "retraining", "test_recall@20": "0.45",
         "retrain_seconds": "3.0"},
        {**identity, "checkpoint_idx": "3", "method": "untouched", "eval_type": "unlearning", "test_recall@20": "0.4"},
        {**identity, "checkpoint_idx": "3", "method": "trained", "eval_type": "trained", "test_recall@20": "0.4"},
        {**identity, "checkpoint_idx": "3", "method": "scif", "eval_type": "unlearning", "test_recall@20": "0.3",
         "n_requests": "5"},
    ]
    assert (record["fraction"], record["n_requests"], record["epochs"]) == (0.01, 5, 1)
    provenance = record["provenance"]
    assert provenance["commit"] == "mixed" and provenance["commits"] == {"untouched": "abc1234", "retrain": "abc1234",
                                                                         "scif": "def5678"}
    assert provenance["machine"] == {"description": "a machine"}
    assert provenance["command"].startswith("erase-jax grid experiments/grids/smoke.yaml, then python ")
    assert provenance["config"]["config"] == "experiments/grids/smoke.yaml"


def test_a_choice_the_leaderboard_cannot_make_alone_is_asked_for(tmp_path, capsys):
    module = analysis()
    with pytest.raises(ValueError, match=r"several seeds \['2', '3'\]: choose one \(--seed\)"):
        module.record(SMOKE_GRID, hand_made(seeds=("2", "3")))
    assert len(module.record(SMOKE_GRID, hand_made(seeds=("2", "3")), seed=2)["rows"]) == 6
    with pytest.raises(ValueError, match="smoke.yaml: no cell .*'seed': '3'.*is the leaderboard this grid's"):
        module.record(SMOKE_GRID, hand_made(seeds=("2", "3")), seed=3)
    with pytest.raises(ValueError, match=r"no model 'SASRec' in the leaderboard; it has \['BPR'\]"):
        module.record(SMOKE_GRID, hand_made(), model="SASRec")
    with pytest.raises(SystemExit, match="leaderboard_rows: .*missing.csv"):
        module.main([str(SMOKE_GRID), "--leaderboard", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.json")])


def test_the_smoke_leaderboard_gives_back_the_rows_the_protocol_wrote(smoke, tmp_path):
    out, plan, _ = smoke
    board_file = out / "smoke" / "leaderboard.csv"
    written = tmp_path / "smoke.json"
    assert analysis().main([str(SMOKE_GRID), "--leaderboard", str(board_file), "--out", str(written)]) == 0
    rows = {(r["method"], r["checkpoint_idx"]): r for r in json.loads(written.read_text())["rows"]}
    assert len(leaderboard(out)) > 0
    for cell in plan.cells:  # each method's combined unlearning.csv, as the protocol wrote it
        with (out / "store" / plan.tasks[cell.unlearn].spec["folder"] / "unlearning.csv").open() as handle:
            protocol = [r for r in csv.DictReader(handle) if int(r["checkpoint_idx"]) >= 0]
        for row in protocol:
            mine = {k: v for k, v in rows[row["method"], row["checkpoint_idx"]].items() if k not in WHICH}
            assert mine == {k: v for k, v in row.items() if v != "" and k not in WHICH}, (row["method"], row["checkpoint_idx"])
