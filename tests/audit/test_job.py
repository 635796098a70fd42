"""`erase-jax audit` as a protocol job: a trained run's scenario audited through the command line,
the file it writes, the report's table, resuming, settings changes and refused models.

Real end to end on the synthetic data (small): BPR trained for a few epochs, 9 shadows. The
untouched removal keeps the audited pairs trained, so game 2 must separate them from never
trained pairs at least as well as the exact retrain does (whose UNLEARN and OUT shadows are the
same kind of model: chance up to noise)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from erase_jax.audit.job import AUDIT_DIR, AUDIT_FILE
from erase_jax.cli import main
from erase_jax.config import load_config
from erase_jax.run import train_run

SYNTHETIC = "data.synthetic={n_users: 200, n_items: 120, avg_interactions: 20}"
SCENARIO = ["--scenario", "sensitive:Horror", "--fraction", "0.02"]
SMALL = ["--shadows", "9", "--audited", "40", "--epochs", "8", "--population", "50"]
SASREC = "model_params={hidden_size: 16, inner_size: 32, n_layers: 1, n_heads: 1}"
SEQUENCE = ["data.min_user_interactions=0", "data.min_item_interactions=0", "train.valid_metric=mrr@10",
            "sequence.objective=all_positions"]


def trained(tmp_path_factory, model: str, epochs: int = 3) -> Path:
    out = tmp_path_factory.mktemp("audit_job") / model.lower()
    sizes = {"BPR": ["model_params.embedding_size=16"], "SASRec": [SASREC, *SEQUENCE], "SKNN": SEQUENCE[:-1]}.get(model, [])
    config = load_config(None, [f"model={model}", "dataset=synthetic", SYNTHETIC, f"train.epochs={epochs}",
                                "train.batch_size=256", *sizes])
    train_run(config, out, quiet=True)
    return out


@pytest.fixture(scope="module")
def bpr_run(tmp_path_factory) -> Path:
    return trained(tmp_path_factory, "BPR")


def audit(run: Path, *extra: str) -> int:
    return main(["audit", "--run", str(run), *SCENARIO, "--quiet", *SMALL, *extra])


def test_audit_writes_its_file_and_the_report_shows_it(bpr_run, capsys):
    assert audit(bpr_run, "--removals", "untouched", "retrain") == 0
    scenario_dir = bpr_run / "unlearn" / "sensitive_Horror_f0.02"
    record = json.loads((scenario_dir / AUDIT_DIR / AUDIT_FILE).read_text())
    assert record["settings"]["audit"]["shadows"] == 9
    assert record["provenance"]["model"]["fingerprint"]
    untouched = record["removals"]["untouched"]["game2_global_variance"]["auc"]
    retrain = record["removals"]["retrain"]["game2_global_variance"]["auc"]
    assert 0.0 <= retrain <= 1.0 and untouched > retrain
    assert record["states_per_pair"] == {"IN": [3], "UNLEARN": [3], "OUT": [3]}

    # the report of the scenario shows the audit next to the unlearning rows
    assert main(["unlearn", "--run", str(bpr_run), *SCENARIO, "--method", "untouched", "--quiet"]) == 0
    assert main(["report", str(scenario_dir)]) == 0
    text = (scenario_dir / "report.md").read_text()
    assert "## Membership audit" in text
    assert f"| retrain | {retrain:.3f} |" in text

    # a rerun asking for removals already done writes nothing (no shadow is trained again)
    written = (scenario_dir / AUDIT_DIR / AUDIT_FILE).stat().st_mtime_ns
    assert audit(bpr_run, "--removals", "retrain") == 0
    assert (scenario_dir / AUDIT_DIR / AUDIT_FILE).stat().st_mtime_ns == written

    # a rerun with the same settings keeps the finished removals (resume) and adds new ones
    before = record["removals"]["retrain"]["wall_seconds"]
    assert audit(bpr_run, "--removals", "untouched", "retrain", "scif") == 0
    again = json.loads((scenario_dir / AUDIT_DIR / AUDIT_FILE).read_text())
    assert again["removals"]["retrain"]["wall_seconds"] == before
    assert 0.0 <= again["removals"]["scif"]["game2_global_variance"]["auc"] <= 1.0
    assert main(["report", str(scenario_dir)]) == 0
    assert f"| scif | {again['removals']['scif']['game2_global_variance']['auc']:.3f} |" in (scenario_dir / "report.md").read_text()


def test_other_settings_are_refused_unless_replaced(bpr_run, capsys):
    assert audit(bpr_run, "--removals", "untouched") == 0
    capsys.readouterr()
    assert main(["audit", "--run", str(bpr_run), *SCENARIO, "--quiet", "--shadows", "12", "--audited", "40",
                 "--epochs", "8", "--population", "50", "--removals", "untouched"]) == 2
    error = capsys.readouterr().err
    assert "audit.shadows: 9 -> 12" in error and "--replace" in error


@pytest.mark.parametrize("arguments, message", [
    (["--shadows", "6"], "--shadows must be at least 9"),
    (["--removals", "nonsense"], "unknown removal 'nonsense'"),
    (["--evaluators", "ranking"], "--evaluators is the unlearn job's option"),
])
def test_bad_settings_get_a_clear_error(bpr_run, capsys, arguments, message):
    code = main(["audit", "--run", str(bpr_run), "--scenario", "sensitive:Horror", "--fraction", "0.02", "--quiet",
                 "--out", str(bpr_run / "elsewhere"), "--epochs", "1", "--audited", "5", "--population", "5",
                 *(["--shadows", "9"] if "--shadows" not in arguments else []), *arguments])
    assert code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("model", ["Pop", "SKNN"])
def test_a_model_without_shadows_is_refused_before_training(tmp_path_factory, capsys, model):
    run = trained(tmp_path_factory, model)
    assert main(["audit", "--run", str(run), *SCENARIO, "--quiet", *SMALL]) == 2
    error = capsys.readouterr().err
    assert "shadows are trained for CF models ['BPR', 'LightGCN'] and sequence models ['SASRec', 'GRU4Rec']" in error
    assert f"this run's model is {model!r}" in error


@pytest.mark.slow  # about a minute on the shared 2-core CPU (a SASRec run trained, then 2 x 9 shadows)
def test_a_sequence_run_is_audited_through_the_command_line(tmp_path_factory, capsys):
    run = trained(tmp_path_factory, "SASRec", epochs=1)
    assert main(["audit", "--run", str(run), *SCENARIO, "--quiet", "--shadows", "9", "--audited", "20", "--epochs", "2",
                 "--population", "50", "--removals", "untouched", "retrain"]) == 0
    record = json.loads((run / "unlearn" / "sensitive_Horror_f0.02" / AUDIT_DIR / AUDIT_FILE).read_text())
    assert record["provenance"]["model"]["config"]["model"] == "SASRec"
    assert record["data"]["audited_pairs"] == 20
    assert record["states_per_pair"] == {"IN": [3], "UNLEARN": [3], "OUT": [3]}
    assert record["shadows_together"]["n_shadows"] == 9 and record["shadows_together"]["epochs"] == 2
    for name in ("untouched", "retrain"):
        assert 0.0 <= record["removals"][name]["game2_global_variance"]["auc"] <= 1.0
        assert 0.0 <= record["removals"][name]["rmia_offline_4_references"]["auc"] <= 1.0
    assert main(["audit", "--run", str(run), *SCENARIO, "--quiet", "--out", str(run / "elsewhere"), *SMALL,
                 "--devices", "2"]) == 2
    assert "sequence shadows train on one device" in capsys.readouterr().err
    # the most memorised forgettable interactions, from a pilot of sequence shadows
    assert main(["audit", "--run", str(run), *SCENARIO, "--quiet", "--out", str(run / "memorised"), "--shadows", "9",
                 "--audited", "10", "--epochs", "1", "--population", "20", "--memorised", "5", "--pilot-shadows", "3",
                 "--removals", "untouched"]) == 0
    record = json.loads((run / "memorised" / AUDIT_DIR / AUDIT_FILE).read_text())
    assert record["data"]["memorised_pairs"] == 5 and record["data"]["audited_pairs"] == 15
    assert record["pilot"]["n_memorised"] == 5 and "game2_global_variance_memorised" in record["removals"]["untouched"]
