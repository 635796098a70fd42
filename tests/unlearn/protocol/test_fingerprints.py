"""Results derived from a trained model are never those of another model.

A tiny BPR is trained, unlearned with the no-op `untouched` method (so the unlearned model at
every checkpoint IS the trained model: its rows must equal the trained model's rows), then trained
again with other settings. Whatever was derived from the first model must not reappear next
to the second: `--overwrite` discards it, and a scenario folder outside the run is refused.
"""

from __future__ import annotations

import hashlib
import json

import jax
import numpy as np
import pytest

from erase_jax import fingerprint
from erase_jax.cli import main
from erase_jax.config import load_config
from erase_jax.run import load_run, train_run
from erase_jax.unlearn.protocol import jobs
from erase_jax.unlearn.protocol.report import write_report
from erase_jax.unlearn.protocol.run import STATE_DIR, UnlearnConfig, load_quarter, prepare_out_dir
from tests import tiny

SETTINGS = ["model=BPR", "dataset=synthetic", tiny.SYNTHETIC, "model_params.embedding_size=8", "train.batch_size=256",
            "train.stopping_step=100"]
SCENARIO = UnlearnConfig(method="untouched", scenario="sensitive", category="Horror", fraction=0.01, evaluators=("utility",))
CLI_SCENARIO = ["--method", "untouched", "--scenario", "sensitive:Horror", "--fraction", "0.01", "--evaluators", "utility"]


def bpr_config(epochs: int):
    return load_config(None, [*SETTINGS, f"train.epochs={epochs}"])


def metrics(row: dict) -> dict:
    return {key: value for key, value in row.items() if key.startswith("test_")}


def assert_rows_of_the_model_in(run, rows: list[dict], method_dir) -> None:
    """The no-op method's rows are the trained model's at every checkpoint, and its quarter
    checkpoints hold the parameters now saved in `run`."""
    experiment, params = load_run(run)
    by_key = {(row["eval_type"], row["checkpoint_idx"]): row for row in rows}
    for k in range(4):
        assert metrics(by_key["unlearning", k]) == metrics(by_key["trained", k]), f"checkpoint {k}"
        quarter, _ = load_quarter(method_dir, k, params, len(experiment.data.interactions))
        for got, want in zip(jax.tree.leaves(quarter), jax.tree.leaves(params), strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def snapshot(folder) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwritten_run_is_unlearned_from_the_new_model(tmp_path):
    """The user's report: 5 epochs, unlearn, `train --overwrite` with 2 epochs, `unlearn` again
    (here 3 and 1 epochs). The old code kept `unlearn/`, "resumed" the finished stream and paired the old model's checkpoints
    with the new trained model."""
    run = tmp_path / "bpr"
    train_run(bpr_config(3), run, quiet=True)
    scenario_dir = run / "unlearn" / SCENARIO.tag()
    assert_rows_of_the_model_in(run, jobs.unlearn(run, SCENARIO, quiet=True), scenario_dir / "untouched")

    assert main(["train", "--quiet", *sum((["--set", s] for s in SETTINGS), []), "--set", "train.epochs=1",
                 "--out", str(run), "--overwrite"]) == 0  # the command line's --overwrite
    assert not (run / "unlearn").exists()
    assert main(["unlearn", "--quiet", "--run", str(run), *CLI_SCENARIO]) == 0
    rows = json.loads((scenario_dir / "untouched" / "unlearning.json").read_text())["rows"]
    assert_rows_of_the_model_in(run, rows, scenario_dir / "untouched")
    assert_rows_of_the_model_in(run, jobs.unlearn(run, SCENARIO, quiet=True), scenario_dir / "untouched")  # Python: the same
    recorded = json.loads((scenario_dir / fingerprint.MODEL_FILE).read_text())
    assert recorded["fingerprint"] == fingerprint.run_fingerprint(run)["fingerprint"]
    assert recorded["config"]["train"]["epochs"] == 1
    report = write_report(scenario_dir)[0].read_text()
    assert f"Trained model: `{run.resolve()}`, finished at {recorded['finished_at']} " \
           f"(fingerprint {recorded['fingerprint'][:12]})." in report


def test_a_scenario_folder_of_a_replaced_model_is_refused(tmp_path, capsys):
    """A scenario folder outside the run survives --overwrite; resuming or re-evaluating it under
    the new model is refused, naming what changed, and leaves it untouched."""
    run, scenario_dir = tmp_path / "bpr", tmp_path / "elsewhere"
    train_run(bpr_config(3), run, quiet=True)
    jobs.unlearn(run, SCENARIO, out=str(scenario_dir), quiet=True)
    before = snapshot(scenario_dir)

    assert main(["train", "--quiet", *sum((["--set", s] for s in SETTINGS), []), "--set", "train.epochs=1",
                 "--out", str(run), "--overwrite"]) == 0
    capsys.readouterr()
    for extra in ([], ["--eval-only"]):
        assert main(["unlearn", "--quiet", "--run", str(run), *CLI_SCENARIO, "--out", str(scenario_dir), *extra]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"erase-jax: error: {scenario_dir} holds results derived from another model"), error
        assert "train.epochs: 3 -> 1" in error and "Traceback" not in error
    assert main(["retrain", "--quiet", "--run", str(run), *CLI_SCENARIO[2:], "--out", str(scenario_dir)]) == 2
    assert "train.epochs: 3 -> 1" in capsys.readouterr().err
    assert main(["report", str(scenario_dir)]) == 2
    assert "train.epochs: 3 -> 1" in capsys.readouterr().err
    assert snapshot(scenario_dir) == before


def test_a_model_retrained_with_the_same_settings_is_told_apart_by_its_training(tmp_path):
    """Same configuration, different training record (what a non-deterministic retrain gives):
    the message says when the model was retrained."""
    run, scenario_dir = tmp_path / "bpr", tmp_path / "elsewhere"
    train_run(bpr_config(2), run, quiet=True)
    jobs.unlearn(run, SCENARIO, out=str(scenario_dir), quiet=True)
    result = json.loads((run / "result.json").read_text())
    result["epoch_loss"][-1] *= 1.0001
    result["finished_at"] = "2031-01-02T03:04:05+00:00"
    (run / "result.json").write_text(json.dumps(result))
    with pytest.raises(fingerprint.StaleResults, match="retrained at 2031-01-02T03:04:05"):
        jobs.unlearn(run, SCENARIO, out=str(scenario_dir), quiet=True)


def test_unfinished_run_is_not_unlearned(tmp_path):
    """A run without result.json (killed or failed during training) is no model to unlearn."""
    run = tmp_path / "bpr"
    train_run(bpr_config(1), run, quiet=True)
    (run / "result.json").unlink()
    with pytest.raises(FileNotFoundError, match="has not finished training"):
        jobs.unlearn(run, SCENARIO, quiet=True)
    assert not (run / "unlearn").exists()


def test_an_unlearning_run_that_saved_no_request_takes_new_settings(tmp_path):
    """A method folder whose run failed before its first request holds no results to protect."""
    method_dir, run = tmp_path / "scenario" / "untouched", tmp_path / "bpr"
    prepare_out_dir(method_dir, run, SCENARIO)
    changed = UnlearnConfig(**{**SCENARIO.__dict__, "fraction": 0.02})
    prepare_out_dir(method_dir, run, changed)
    (method_dir / STATE_DIR / "1").mkdir(parents=True)  # a saved request
    with pytest.raises(FileExistsError, match=r"holds an unlearning run with other settings \(fraction: 0.02 -> 0.01\)"):
        prepare_out_dir(method_dir, run, SCENARIO)


def test_retrains_run_one_checkpoint_at_a_time_add_up(tmp_path):
    """`retrain --checkpoint-idx k` for k = 0, then 1: retrain/unlearning.csv holds both rows
    (it used to hold only the last call's)."""
    run = tmp_path / "run"
    train_run(bpr_config(1), run, quiet=True)
    scenario = ["--run", str(run), "--scenario", "sensitive:Horror", "--fraction", "0.01", "--evaluators", "utility"]
    for k in ("1", "0"):
        assert main(["retrain", *scenario, "--checkpoint-idx", k, "--quiet"]) == 0
    folder = next((run / "unlearn").iterdir()) / "retrain"
    rows = json.loads((folder / "unlearning.json").read_text())["rows"]
    assert [row["checkpoint_idx"] for row in rows] == [0, 1]
    assert (folder / "unlearning.csv").read_text().count("\n") == 3  # header + two rows


def test_retrains_with_other_seeds_and_the_originals_budget(tmp_path):
    """`retrain --seeds 5`: a second retrain per checkpoint (row retrain@seed5, its own folder,
    another model), added to the reference's rows; the default budget trains the original's
    epochs with early stopping off, `--budget early_stopping` keeps the run's rule."""
    run = tmp_path / "run"
    train_run(bpr_config(3), run, quiet=True)
    scenario = ["--run", str(run), "--scenario", "sensitive:Horror", "--fraction", "0.01", "--evaluators", "utility,agreement"]
    assert main(["retrain", *scenario, "--checkpoint-idx", "3", "--seeds", "5", "--quiet"]) == 0
    folder = next((run / "unlearn").iterdir()) / "retrain"
    rows = json.loads((folder / "unlearning.json").read_text())["rows"]
    assert [(row["method"], row["checkpoint_idx"]) for row in rows] == [("retrain", 3), ("retrain@seed5", 3)]
    assert [row["retrain_epochs"] for row in rows] == [3, 3]
    assert "agree_unlearned_jaccard@20" in rows[1] and "agree_unlearned_jaccard@20" not in rows[0]
    assert rows[0]["test_recall@20"] != rows[1]["test_recall@20"] or rows[0]["test_ndcg@20"] != rows[1]["test_ndcg@20"]
    saved = json.loads((folder / "k3_seed5" / "result.json").read_text())
    assert saved["config"]["seed"] == 5 and saved["config"]["train"]["stopping_step"] == 3
    assert main(["retrain", *scenario, "--checkpoint-idx", "2", "--budget", "early_stopping", "--quiet"]) == 0
    rows = json.loads((folder / "unlearning.json").read_text())["rows"]
    assert [(row["method"], row["checkpoint_idx"]) for row in rows] == [("retrain", 2), ("retrain", 3), ("retrain@seed5", 3)]


def test_method_jobs_of_a_scenario_folder_share_the_trained_rows(tmp_path, monkeypatch):
    """The trained model's rows are computed by the first method job of a folder and reused by
    the next (the same rows), and computed again once a retrain exists (agreement changes)."""
    run = tmp_path / "run"
    train_run(bpr_config(1), run, quiet=True)
    computed = []
    evaluate_trained = jobs._evaluate_trained
    monkeypatch.setattr(jobs, "_evaluate_trained", lambda *a: computed.append(1) or evaluate_trained(*a))
    scenario = UnlearnConfig(**{**SCENARIO.__dict__, "evaluators": ("utility", "agreement")})
    trained = lambda rows: [row for row in rows if row["eval_type"] == "trained"]
    first = trained(jobs.unlearn(run, scenario, quiet=True))
    second = trained(jobs.unlearn(run, UnlearnConfig(**{**scenario.__dict__, "method": "scif"}), quiet=True))
    assert len(computed) == 1 and second == first and len(first) == 5
    jobs.retrain_all(run, scenario, (0,), quiet=True)
    with_retrain = trained(jobs.unlearn(run, scenario, eval_only=True, quiet=True))
    assert len(computed) == 2
    assert "agree_unlearned_jaccard@20" in with_retrain[1] and "agree_unlearned_jaccard@20" not in first[1]
