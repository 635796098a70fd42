"""The scenario report: tables read from a hand-written unlearning.csv, gaps computed by hand."""

from __future__ import annotations

import csv

import pytest

from erase_jax.cli import main
from erase_jax.unlearn.protocol import report

HEADER = ["dataset", "model", "scenario", "category", "method", "checkpoint_idx", "eval_type", "test_ndcg@10",
          "test_recall@20", "pct_users_with_sensitive@20", "forgotten_hit@20", "n_unlearned_users", "n_removed",
          "request_seconds_median", "retrain_seconds"]


def write_rows(folder, rows):
    with (folder / "unlearning.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for method, k, ndcg, exposure, seconds, retrain_seconds in rows:
            eval_type = {"original": "original", "retrain": "retraining"}.get(method, "unlearning")
            writer.writerow(["ml-100k", "BPR", "sensitive", "Horror", method, k, eval_type, ndcg, 0.2, exposure,
                             0.1, 10 * (k + 1), 30 * (k + 1), seconds, retrain_seconds])


@pytest.fixture
def scenario(tmp_path):
    rows = [("original", -1, 0.30, 50.0, "", "")]
    for k in range(4):
        rows += [
            ("original", k, 0.30, 50.0, "", ""),
            ("scif", k, 0.29 - 0.01 * k, 40.0 - k, 0.01, ""),
            ("retrain", k, 0.28, 30.0, "", 12.0),
        ]
    write_rows(tmp_path, rows)
    return tmp_path


def test_gap_to_the_retrain_and_order(scenario):
    rows = report.load(scenario)
    assert -1 not in set(rows["checkpoint_idx"])  # the all-data row is not a checkpoint
    table = report.at_checkpoint(rows, 3)
    assert list(table.index) == ["original", "scif", "retrain"]
    assert table.loc["scif", "gap_test_ndcg@10"] == pytest.approx(0.26 - 0.28)
    assert table.loc["scif", "gap_pct_users_with_sensitive@20"] == pytest.approx(37.0 - 30.0)
    assert table.loc["original", "gap_pct_users_with_sensitive@20"] == pytest.approx(20.0)
    assert table.loc["retrain", "gap_test_ndcg@10"] == 0.0
    curve = report.trajectory(rows, "test_ndcg@10")
    assert curve.loc["scif"].tolist() == pytest.approx([0.29, 0.28, 0.27, 0.26])


def test_markdown_shows_present_columns_only(scenario):
    text = report.markdown(report.load(scenario), 3, "x.csv")
    assert "Checkpoint 3: 40 unlearned users, 120 interactions removed." in text
    assert "| scif | 0.2600 | 0.2000 | 37.0 | 0.1000 | 0.0100 |  |" in text  # no retrain seconds for scif
    assert "spam" not in text  # a sensitive scenario has no spam columns
    assert "| scif | -0.0200 | 0.0000 | 7.0 | 0.0000 |" in text
    assert "| scif | 0.2900 | 0.2800 | 0.2700 | 0.2600 |" in text


def test_report_command_and_errors(scenario, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["report", str(scenario), "--checkpoint", "1", "--out", str(out)]) == 0
    assert "Checkpoint 1: 20 unlearned users" in (out / "report.md").read_text()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no results" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "unlearning.csv").write_text("a,b\n1,2\n")
    assert main(["report", str(empty)]) == 2
    assert "not an unlearning result file" in capsys.readouterr().err


def test_figure_when_matplotlib_is_installed(scenario):
    pytest.importorskip("matplotlib", reason="the figure needs the optional matplotlib (pip install -e '.[plot]')")
    written = report.write_report(scenario)
    assert [p.name for p in written] == ["report.md", "report.png"]
    assert (scenario / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_noise_floor_from_retrains_with_other_seeds(tmp_path):
    import pandas as pd

    columns = ["method", "checkpoint_idx", "test_recall@20", "pct_users_with_sensitive@20", "agree_unlearned_jaccard@20"]
    values = [("original", 3, 0.20, 50.0, 0.70), ("scif", 3, 0.15, 31.0, 0.40), ("fanchuan", 3, 0.19, 40.0, 0.80),
              ("retrain", 3, 0.19, 30.0, None), ("retrain@seed3", 3, 0.18, 33.0, 0.60), ("retrain@seed4", 3, 0.195, 28.0, 0.65)]
    pd.DataFrame(values, columns=columns).to_csv(tmp_path / "unlearning.csv", index=False)
    rows = report.load(tmp_path)
    assert list(report.at_checkpoint(rows, 3).index) == ["original", "fanchuan", "scif", "retrain"]
    floor = report.noise_floor(rows, 3)
    assert floor["n_seeds"] == 2
    assert floor["gap_test_recall@20"] == pytest.approx(0.01)  # |0.18 - 0.19| > |0.195 - 0.19|
    assert floor["gap_pct_users_with_sensitive@20"] == pytest.approx(3.0)
    assert floor["agree_unlearned_jaccard@20"] == pytest.approx(0.60)
    text = report.markdown(rows, 3, "x.csv")
    # scif: recall gap -0.04 beyond the floor, exposure gap 1.0 within it, Jaccard 0.40 below the floor
    assert "| scif | -0.0400 | 1.0~ | 0.4000 |" in text
    assert "| fanchuan | 0.0000~ | 10.0 | 0.8000~ |" in text
    assert "| retrain vs retrain: noise floor (2 other seeds) | 0.0100 | 3.0 | 0.6000 |" in text
    assert "doing nothing (Jaccard@20 with the retrain below the untouched original's): scif." in text
    assert report.noise_floor(rows[~rows["method"].str.startswith("retrain@")], 3) == {}
