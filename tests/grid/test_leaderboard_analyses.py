"""The analyses that read a grid's leaderboard. experiments/leaderboard_rows.py: the leaderboard back
in the protocol's row shape, on a hand-made leaderboard (rows written out by hand) and on the smoke
grid's, whose rows must be the ones the protocol itself wrote in the store.
experiments/leaderboard_acceptance.py: the noise floor and each method's verdict, on a hand-made
leaderboard whose floor and verdicts are computed by hand below."""

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


def analysis(name: str = "leaderboard_rows"):
    """An analysis script of `experiments/` (a scripts folder, not a package), imported from its file."""
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "experiments" / f"{name}.py")
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


def test_the_acceptance_of_a_hand_made_leaderboard_is_the_one_computed_by_hand(tmp_path):
    grid = tmp_path / "smoke_floor.yaml"
    grid.write_text(SMOKE_GRID.read_text() + "retrain_seeds: [3]\n")
    measures = {  # checkpoint 3: recall@20, NDCG@10, Jaccard@20 with the retrain
        "untouched": ("0.30", "0.20", "0.70"), "scif": ("0.27", "0.18", "0.40"),
        "retrain": ("0.30", "0.21", None), "retrain@seed3": ("0.29", "0.22", "0.80"),
    }
    rows = []
    for method, values in measures.items():
        named = dict(zip(("test_recall@20", "test_ndcg@10", "agree_unlearned_jaccard@20"), values, strict=True))
        named |= {"n_unlearned_users": "5", "n_removed": "12"}
        rows += [{"cell": "c", "dataset": "synthetic", "model": "BPR", "scenario": "horror", "method": method, "seed": "2",
                  "checkpoint": "3", "metric": metric, "value": value, "commit": "abc1234", "machine": "m"}
                 for metric, value in named.items() if value is not None]
    board = tmp_path / "leaderboard.csv"
    pd.DataFrame(rows).to_csv(board, index=False)
    out = tmp_path / "distance.json"
    assert analysis("leaderboard_acceptance").main([str(grid), "--leaderboard", str(board), "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["models"]["bpr"]
    assert (entry["n_unlearned_users"], entry["n_removed"]) == (5, 12)
    # the floor: the seed-3 retrain's largest gap to the reference, its Jaccard with it
    assert entry["noise_floor"] == pytest.approx({"n_seeds": 1, "gap_test_recall@20": 0.01, "gap_test_ndcg@10": 0.01,
                                                  "agree_unlearned_jaccard@20": 0.80})
    verdicts = entry["methods_at_checkpoint_3"]
    assert set(verdicts) == {"trained", "untouched", "scif"}  # the retrains judge, they are not judged
    assert verdicts["untouched"]["passes"] and not verdicts["untouched"]["further_than_doing_nothing"]
    scif = verdicts["scif"]
    # 0.70 - 0.40 = 0.30 further than doing nothing, beyond 1 - 0.80 = 0.20; 1 - 0.27 / 0.30 = 10 % of Recall@20 lost
    assert scif["further_beyond_floor"] and scif["loses_over_5pct"] and not scif["passes"]
    assert scif["recall_loss"] == pytest.approx(0.1) and scif["gaps"]["test_ndcg@10"] == pytest.approx(-0.03)
    assert scif["beyond_floor"] == {"test_recall@20": True, "test_ndcg@10": True}
