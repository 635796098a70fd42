"""Result-row labels: the trained model's rows say `trained`; files that say `original` (written
before the rename) read the same everywhere a row is read."""

from __future__ import annotations

import csv

import pandas as pd

from erase_jax.result_labels import OLD_NAME, TRAINED, UNTOUCHED, current, current_frame, current_row
from erase_jax.unlearn.protocol.jobs import combine
from tests.test_results_page import script

COLUMNS = ["method", "checkpoint_idx", "eval_type", "test_recall@20"]


def rows_of(method: str, eval_type: str, ks, value: float) -> list[dict]:
    return [{"method": method, "checkpoint_idx": str(k), "eval_type": eval_type, "test_recall@20": str(value + k)}
            for k in ks]


def write(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_each_old_label_and_its_meaning():
    assert current(OLD_NAME, OLD_NAME) == (TRAINED, TRAINED)  # the trained model's rows
    assert current(OLD_NAME, "unlearning") == (UNTOUCHED, "unlearning")  # the do-nothing method
    assert current(OLD_NAME) == (UNTOUCHED, None)  # a grid label (no eval_type column)
    assert current("scif", "unlearning") == ("scif", "unlearning")
    assert current_row({"method": "retrain", "eval_type": "retraining"}) == {"method": "retrain", "eval_type": "retraining"}


def test_a_table_and_its_rows_read_alike():
    rows = (rows_of(OLD_NAME, OLD_NAME, range(-1, 4), 0.1) + rows_of(OLD_NAME, "unlearning", range(4), 0.1)
            + rows_of("scif", "unlearning", range(4), 0.2) + rows_of("retrain", "retraining", range(4), 0.3)
            + rows_of(TRAINED, TRAINED, range(4), 0.1))
    expected = pd.DataFrame([current_row(row) for row in rows])
    pd.testing.assert_frame_equal(current_frame(pd.DataFrame(rows)), expected)
    assert OLD_NAME not in set(expected["method"]) | set(expected["eval_type"])
    without_eval_type = pd.DataFrame(rows).drop(columns="eval_type")
    assert set(current_frame(without_eval_type)["method"]) == {UNTOUCHED, "scif", "retrain", TRAINED}


def test_a_scenario_folder_with_an_old_method_folder_combines_with_new_labels(tmp_path):
    """An `original/` folder of an older run next to a new `scif/`: the combined CSV holds the
    trained model's rows once per checkpoint, then the do-nothing method's and SCIF's."""
    write(tmp_path / "original" / "unlearning.csv",
          rows_of(OLD_NAME, OLD_NAME, range(-1, 4), 0.1) + rows_of(OLD_NAME, "unlearning", range(4), 0.1))
    write(tmp_path / "scif" / "unlearning.csv", rows_of(TRAINED, TRAINED, range(-1, 4), 0.1) + rows_of("scif", "unlearning", range(4), 0.2))
    combine(tmp_path)
    with (tmp_path / "unlearning.csv").open() as handle:
        combined = [(row["method"], row["eval_type"], row["checkpoint_idx"]) for row in csv.DictReader(handle)]
    assert combined == ([(TRAINED, TRAINED, str(k)) for k in range(-1, 4)] + [(UNTOUCHED, "unlearning", str(k)) for k in range(4)]
                        + [("scif", "unlearning", str(k)) for k in range(4)])


def test_the_results_pages_pick_the_trained_row_from_old_and_new_files():
    read = script("results_topics/read")
    old = rows_of(OLD_NAME, OLD_NAME, range(4), 0.1) + rows_of(OLD_NAME, "unlearning", range(4), 0.5)
    new = [current_row(row) for row in old]
    for rows in (old, new):
        assert read.pick(rows, TRAINED)["test_recall@20"] == "3.1"
        assert read.pick(rows, UNTOUCHED)["test_recall@20"] == "3.5"
