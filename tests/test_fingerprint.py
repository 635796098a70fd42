"""Model fingerprints on hand-written run folders: what changes them, what they say, old folders.

The protocol end to end (overwrite, refusal of a scenario folder under a retrained model) is in
`tests/unlearn/protocol/test_fingerprints.py`.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from erase_jax import fingerprint
from erase_jax.config import load_config
from erase_jax.folder_lock import FolderInUse, FolderLock
from erase_jax.run import train_run

RESULT = {
    "model": "BPR", "valid": {"recall@20": 0.3}, "test": {"recall@20": 0.25}, "epochs": 2, "best_epoch": 2,
    "stopped": "max epochs", "timing": {"train_seconds_per_epoch": [1.0, 1.1], "eval_seconds": 0.2},
    "epoch_loss": [0.69, 0.51], "valid_history": [{"epoch": 1, "recall@20": 0.2}, {"epoch": 2, "recall@20": 0.3}],
    "data": {"source": "synthetic", "n_train": 900}, "config": {"model": "BPR", "seed": 2, "train": {"epochs": 2}},
    "finished_at": "2026-01-01T00:00:00+00:00",
}


def write_run(folder, **changes) -> None:
    folder.mkdir(exist_ok=True)
    (folder / "result.json").write_text(json.dumps({**RESULT, **changes}))


def test_what_changes_the_fingerprint(tmp_path):
    run = tmp_path / "run"
    write_run(run)
    first = fingerprint.run_fingerprint(run)["fingerprint"]
    # rerunning `train` on a finished run rewrites timings, test metrics and the finish time
    write_run(run, timing={"eval_seconds": 9.0}, test={"recall@20": 0.2500001}, finished_at="2026-02-02T00:00:00+00:00")
    assert fingerprint.run_fingerprint(run)["fingerprint"] == first
    for change in ({"epoch_loss": [0.69, 0.5100001]}, {"best_epoch": 1}, {"data": {"source": "synthetic", "n_train": 899}},
                   {"config": {**RESULT["config"], "seed": 3}}):
        write_run(run, **change)
        assert fingerprint.run_fingerprint(run)["fingerprint"] != first, change


def test_the_change_is_described(tmp_path):
    run = tmp_path / "run"
    write_run(run)
    before = fingerprint.run_fingerprint(run)
    write_run(run, config={"model": "BPR", "seed": 2, "train": {"epochs": 5, "learning_rate": 0.01}},
              finished_at="2026-03-03T00:00:00+00:00")
    said = fingerprint.describe_change(before, fingerprint.run_fingerprint(run))
    assert said == (f"{run.resolve()} was trained with other settings at 2026-03-03T00:00:00+00:00 "
                    "(train.epochs: 2 -> 5; train.learning_rate: None -> 0.01); "
                    "the results come from the model finished at 2026-01-01T00:00:00+00:00")
    write_run(run, data={"source": "synthetic", "n_train": 800})
    assert "retrained at 2026-01-01T00:00:00+00:00 on other data (n_train)" in fingerprint.describe_change(
        before, fingerprint.run_fingerprint(run))


def test_a_folder_is_claimed_once_and_refused_for_another_model(tmp_path):
    run, derived = tmp_path / "run", tmp_path / "scenario"
    write_run(run)
    recorded = fingerprint.claim(derived, run)
    assert json.loads((derived / fingerprint.MODEL_FILE).read_text()) == recorded
    assert fingerprint.claim(derived, run) == recorded == fingerprint.recorded_model(derived)
    write_run(run, epoch_loss=[0.7, 0.5], finished_at="2026-04-04T00:00:00+00:00")
    for check in (lambda: fingerprint.claim(derived, run), lambda: fingerprint.recorded_model(derived)):
        with pytest.raises(fingerprint.StaleResults, match=f"{derived} holds results derived from another model: "
                           "the model in .* was retrained at 2026-04-04T00:00:00"):
            check()
    (run / "result.json").unlink()
    assert fingerprint.recorded_model(derived) == recorded  # a run since removed is not checked
    with pytest.raises(FileNotFoundError, match="has not finished training"):
        fingerprint.claim(derived, run)


def test_old_folders_are_adopted_only_when_newer_than_the_model(tmp_path, capsys):
    run, derived = tmp_path / "run", tmp_path / "scenario"
    write_run(run)
    (derived / "scif").mkdir(parents=True)
    (derived / "scif" / "unlearning.csv").write_text("method\nscif\n")
    past = time.time() - 3600
    os.utime(derived / "scif" / "unlearning.csv", (past, past))
    with pytest.raises(fingerprint.StaleResults, match=r"records no model fingerprint .* e\.g\. scif/unlearning\.csv"):
        fingerprint.claim(derived, run)
    assert not (derived / fingerprint.MODEL_FILE).exists()

    os.utime(derived / "scif" / "unlearning.csv")  # written after the model: derived from it
    assert fingerprint.claim(derived, run) == fingerprint.run_fingerprint(run)
    assert "is adopted as derived from it" in capsys.readouterr().err


def test_train_refuses_while_jobs_read_the_run_and_a_failed_train_leaves_no_run(tmp_path):
    run = tmp_path / "run"
    write_run(run)
    (run / "unlearn" / "s").mkdir(parents=True)
    config = load_config(None, ["model=BPR", "dataset=synthetic"])
    with FolderLock(run, "unlearn", shared=True):  # what an unlearn job holds
        with pytest.raises(FolderInUse, match="reading it"):
            train_run(config, run, overwrite=True, quiet=True)
    assert (run / "result.json").exists() and (run / "unlearn" / "s").is_dir()

    broken = load_config(None, ["model=BPR", f"data.data_root={tmp_path}", "dataset=no_such_data"])
    with pytest.raises(FileNotFoundError):
        train_run(broken, run, overwrite=True, quiet=True)  # fails while building: the old run stays
    assert (run / "result.json").exists() and (run / "unlearn" / "s").is_dir()
    with pytest.raises(FileNotFoundError):
        train_run(broken, tmp_path / "new", quiet=True)
    assert not (tmp_path / "new").exists()
