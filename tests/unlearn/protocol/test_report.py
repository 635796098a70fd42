"""The scenario report: tables read from a hand-written unlearning.csv, gaps computed by hand."""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from erase_jax.cli import main
from erase_jax.unlearn.protocol import report

HEADER = ["dataset", "model", "scenario", "category", "method", "checkpoint_idx", "eval_type", "test_ndcg@10",
          "test_recall@20", "pct_users_with_sensitive@20", "forgotten_hit@20", "n_unlearned_users", "n_removed",
          "request_seconds_median", "retrain_seconds"]


def write_rows(folder, rows, old_labels=False):
    """`old_labels`: as files written before the rename (`erase_jax.result_labels`): the trained
    model's rows and the do-nothing method's say "original"."""
    with (folder / "unlearning.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for method, k, ndcg, exposure, seconds, retrain_seconds in rows:
            eval_type = {"trained": "trained", "retrain": "retraining"}.get(method, "unlearning")
            if old_labels and method in ("trained", "untouched"):
                method, eval_type = "original", "original" if method == "trained" else eval_type
            writer.writerow(["ml-100k", "BPR", "sensitive", "Horror", method, k, eval_type, ndcg, 0.2, exposure,
                             0.1, 10 * (k + 1), 30 * (k + 1), seconds, retrain_seconds])


@pytest.fixture
def scenario(tmp_path):
    write_rows(tmp_path, scenario_rows())
    return tmp_path


def scenario_rows():
    rows = [("trained", -1, 0.30, 50.0, "", "")]
    for k in range(4):
        rows += [
            ("trained", k, 0.30, 50.0, "", ""),
            ("scif", k, 0.29 - 0.01 * k, 40.0 - k, 0.01, ""),
            ("retrain", k, 0.28, 30.0, "", 12.0),
        ]
    return rows


def test_gap_to_the_retrain_and_order(scenario):
    rows = report.load(scenario)
    assert -1 not in set(rows["checkpoint_idx"])  # the all-data row is not a checkpoint
    table = report.at_checkpoint(rows, 3)
    assert list(table.index) == ["trained", "scif", "retrain"]
    assert table.loc["scif", "gap_test_ndcg@10"] == pytest.approx(0.26 - 0.28)
    assert table.loc["scif", "gap_pct_users_with_sensitive@20"] == pytest.approx(37.0 - 30.0)
    assert table.loc["trained", "gap_pct_users_with_sensitive@20"] == pytest.approx(20.0)
    assert table.loc["retrain", "gap_test_ndcg@10"] == 0.0
    curve = report.trajectory(rows, "test_ndcg@10")
    assert curve.loc["scif"].tolist() == pytest.approx([0.29, 0.28, 0.27, 0.26])


def test_files_that_say_original_read_as_today(tmp_path):
    """Result files written before the rename label the trained model (method and eval_type)
    and the do-nothing method "original"; they read as "trained" and "untouched"."""
    rows = scenario_rows() + [("untouched", k, 0.30, 50.0, 0.001, "") for k in range(4)]
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    write_rows(tmp_path / "old", rows, old_labels=True)
    write_rows(tmp_path / "new", rows)
    assert "original" in (tmp_path / "old" / "unlearning.csv").read_text()
    old, new = report.load(tmp_path / "old"), report.load(tmp_path / "new")
    pd.testing.assert_frame_equal(old, new)
    assert list(report.at_checkpoint(old, 3).index) == ["trained", "untouched", "scif", "retrain"]
    assert report.markdown(old, 3, "x.csv") == report.markdown(new, 3, "x.csv")


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
    values = [("trained", 3, 0.20, 50.0, 0.70), ("scif", 3, 0.15, 31.0, 0.40), ("fanchuan", 3, 0.19, 40.0, 0.80),
              ("retrain", 3, 0.19, 30.0, None), ("retrain@seed3", 3, 0.18, 33.0, 0.60), ("retrain@seed4", 3, 0.195, 28.0, 0.65)]
    pd.DataFrame(values, columns=columns).to_csv(tmp_path / "unlearning.csv", index=False)
    rows = report.load(tmp_path)
    assert list(report.at_checkpoint(rows, 3).index) == ["trained", "fanchuan", "scif", "retrain"]
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
    assert "doing nothing (Jaccard@20 with the retrain below the trained model's): scif." in text
    assert report.noise_floor(rows[~rows["method"].str.startswith("retrain@")], 3) == {}


def test_acceptance_against_the_floor_by_hand(tmp_path):
    columns = ["method", "checkpoint_idx", "test_recall@20", "pct_users_with_sensitive@20", "agree_unlearned_jaccard@20"]
    values = [("trained", 3, 0.20, 50.0, 0.70), ("scif", 3, 0.15, 31.0, 0.40), ("gif", 3, 0.19, 40.0, 0.25),
              ("kookmin", 3, 0.181, 45.0, 0.69), ("retrain", 3, 0.19, 30.0, None),
              ("retrain@seed3", 3, 0.18, 33.0, 0.60), ("retrain@seed4", 3, 0.195, 28.0, 0.65)]
    pd.DataFrame(values, columns=columns).to_csv(tmp_path / "unlearning.csv", index=False)
    rows = report.load(tmp_path)
    found = report.acceptance(rows, 3)
    assert set(found) == {"trained", "scif", "gif", "kookmin"}
    # the retrain-vs-retrain distance is 1 - 0.60 = 0.40; the trained model's Jaccard 0.70
    scif, gif, kookmin = found["scif"], found["gif"], found["kookmin"]
    assert scif["further_than_doing_nothing"] and not scif["further_beyond_floor"]  # 0.70 - 0.40 = 0.30 <= 0.40
    assert scif["recall_loss"] == pytest.approx(1 - 0.15 / 0.19) and scif["loses_over_5pct"] and not scif["passes"]
    assert gif["further_beyond_floor"] and not gif["loses_over_5pct"] and not gif["passes"]  # 0.70 - 0.25 = 0.45 > 0.40
    assert kookmin["recall_loss"] == pytest.approx(1 - 0.181 / 0.19) and not kookmin["loses_over_5pct"] and kookmin["passes"]
    assert scif["gaps"]["pct_users_with_sensitive@20"] == pytest.approx(1.0)
    assert scif["beyond_floor"] == {"test_recall@20": True, "pct_users_with_sensitive@20": False}
    assert found["trained"]["passes"] and found["trained"]["trained_jaccard"] == pytest.approx(0.70)
    text = report.markdown(rows, 3, "x.csv")
    assert "(1 - the floor's Jaccard), or losing more than 5 % of its Recall@20: gif, scif." in text
    with pytest.raises(ValueError, match="no retrain at checkpoint 3"):
        report.acceptance(rows[rows["method"] != "retrain"], 3)
