"""The unlearning protocol's acceptance workload on MovieLens-100K, end to end, with BPR.

    python experiments/unlearning_protocol.py [--out DIR] [--seed 2] [--epochs N]

Sensitive scenario (the workload of the original's reference timings, unlearning-algorithms
spec "Reference timings"): genre Horror, rating >= 3.5, fraction 0.003, seed 2 -> 300 forget
rows from 98 users = 98 sequential requests, checkpoints after requests [24, 49, 73, 97].
1. `erase-jax train` BPR on ml-100k with the original CF protocol (5-core, per-user
   chronological 80/10/10, embedding 64, lr 1e-3, batch 2048, early stopping on valid
   Recall@20 with stopping_step 10; `--epochs` caps the epochs, default 100).
2. The forget set is drawn the original's way, from `ml-100k.inter` as read (before the
   5-core filter: T = int(100000 x 0.003) = 300), and written as the original's forget file
   (all its rows survive the 5-core filter). `--generated-forget-set` lets the runner draw it
   from the filtered data instead (T = int(99287 x 0.003) = 297, other users).
3. `erase-jax retrain --checkpoint-idx all`, then `erase-jax unlearn --method untouched`
   (evaluated against the retrains), then the same `unlearn` again into a second folder,
   killed with SIGKILL once its second checkpoint exists and rerun: its rows must equal the
   uninterrupted run's (timing and memory columns aside).

Spam scenario: a poisoned BPR (`data.spam_ratio=0.01`: 10 fake users on ml-100k, each rating
all 10 target items drawn from the 20 % least popular, plus popular fillers) against the clean
BPR of step 1; `retrain --scenario spam` removes the fakes request by request (k = 3: all of
them). Spam exposure is measured over the genuine users with raw scores (nothing masked).

Controls (skip with `--skip-controls`): the clean BPR trained with seed + 1, whose Horror
exposure of the same users shows how much exposure moves without any removal; and the poisoned
BPR trained without early stopping, since the configured early stopping (stopping_step 10)
ends some ml-100k runs at about epoch 24 on a validation plateau and others at epoch 100.

Writes `experiments/results/unlearning_protocol_ml-100k.md` (tables and acceptance checks) and
`.json` beside it (the checks and the numbers they compare, the rows of the sensitive and spam
`unlearning.csv`, and the provenance: command, config, commit, machine, date); the run folders
(with every `unlearning.csv`) stay under `--out`. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from erase_jax.result_labels import current_rows

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from cli_steps import erase_jax  # noqa: E402  (experiments/cli_steps.py)
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

DATASET = "ml-100k"
CATEGORY = "Horror"
FRACTION = 0.003
RATING_THRESHOLD = 3.5
SPAM_RATIO = 0.01
KS = (10, 20)
TIMING_PARTS = ("seconds", "_rss_", "_mib", "n_timeouts")


# ---------------------------------------------------------------------------------------------
# running the CLI


def step(args: list[str], log: Path, timings: dict, name: str) -> None:
    """Runs `erase-jax ARGS --quiet`, output to `log`, its seconds into `timings[name]`; stops the script if it fails."""
    timings[name] = erase_jax(args, log)


def killed_then_resumed(args: list[str], method_dir: Path, log: Path, timings: dict) -> dict:
    """Starts `erase-jax ARGS`, SIGKILLs it once `quarters/1` exists, then runs it again."""
    command = [sys.executable, "-m", "erase_jax.cli", *args, "--quiet"]
    print(f"$ erase-jax {' '.join(args)}   # killed after checkpoint 1, then rerun", flush=True)
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        while process.poll() is None and not (method_dir / "quarters" / "1").is_dir():
            time.sleep(0.05)
        finished_early = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
    from erase_jax.checkpoint import Checkpointer

    state = Checkpointer(method_dir / "state", max_to_keep=1)
    killed_at = state.latest_step()
    state.close()
    step(args, log.with_name(log.stem + "_rerun.log"), timings, "resume_rerun")
    return {"killed_after_requests": killed_at, "finished_before_kill": finished_early}


def read_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if not any(part in k for part in TIMING_PARTS)}


def pick(rows: list[dict], eval_type: str, k: int, method: str | None = None) -> dict:
    for row in current_rows(rows):  # older files' labels too (`erase_jax.result_labels`)
        if row["eval_type"] == eval_type and int(row["checkpoint_idx"]) == k and (method is None or row["method"] == method):
            return row
    raise KeyError(f"no {eval_type} row at checkpoint {k}")


# ---------------------------------------------------------------------------------------------
# the workload


def write_reference_forget_file(folder: Path, seed: int) -> tuple[Path, dict]:
    """The original's forget set: drawn from ml-100k.inter as read, before any filtering."""
    from erase_jax.data.atomic import read_atomic
    from erase_jax.data.forget_files import (
        forget_file_name,
        sensitive_method,
        write_forget_file,
    )
    from erase_jax.data.loading import resolve_data_root
    from erase_jax.data.scenarios import quarter_checkpoints, sensitive_forget_set

    raw = read_atomic(resolve_data_root(None) / DATASET)
    forget_set = sensitive_forget_set(raw, CATEGORY, FRACTION, seed, RATING_THRESHOLD)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / forget_file_name(DATASET, sensitive_method(CATEGORY), seed, FRACTION)
    write_forget_file(path, raw, forget_set)
    summary = {
        "rows": int(forget_set.removal_mask(raw).sum()),
        "users": len(forget_set),
        "checkpoints": quarter_checkpoints(len(forget_set)),
        "raw_rows": len(raw),
    }
    return path, summary


def clean_model_spam_exposure(clean_run: Path, poisoned_run: Path) -> dict:
    """The clean model's exposure of the poisoned run's target items, over the same genuine users."""
    from erase_jax.evaluators import exposure
    from erase_jax.evaluators.scoring import model_scores_fn
    from erase_jax.run import load_run

    poisoned, _ = load_run(poisoned_run)
    clean, params = load_run(clean_run)
    fraud = poisoned.data.fraud
    clean_items, poisoned_items = clean.data.interactions.item_tokens, poisoned.data.interactions.item_tokens
    if not np.array_equal(clean_items, poisoned_items):
        raise SystemExit("the clean and poisoned runs have different item vocabularies")
    genuine = np.setdiff1d(np.arange(poisoned.data.interactions.n_users), fraud.users)
    assert genuine.max() < clean.data.interactions.n_users
    scores = model_scores_fn(clean.model, params, clean.context)
    return exposure.spam_exposure(scores, genuine, fraud.target_items, KS, clean.config.eval.block_size)


def spam_controls(clean_run: Path, poisoned_run: Path, spam_dir: Path, longer_run: Path | None) -> tuple[list[list], dict]:
    """Spam exposure with and without the genuine users' training items masked, and the fake
    users' own exposure: did the model learn the attack at all, and does it reach anyone else?"""
    from erase_jax.evaluators import exposure
    from erase_jax.evaluators.scoring import model_scores_fn
    from erase_jax.run import load_run
    from erase_jax.unlearn.protocol.retrain import load_retrain
    from erase_jax.unlearn.protocol.run import UnlearnConfig, build_protocol

    poisoned, poisoned_params = load_run(poisoned_run)
    fraud = poisoned.data.fraud
    train = poisoned.examples.train
    genuine_rows = ~np.isin(train.users, fraud.users)
    history = (train.users[genuine_rows], train.items[genuine_rows])  # identical in every run here
    genuine = np.setdiff1d(np.arange(poisoned.data.interactions.n_users), fraud.users)
    inter = poisoned.data.interactions
    is_fake_row = np.isin(inter.users, fraud.users)
    support = {
        "fake_train_rows": [int(np.sum(train.items[~genuine_rows] == t)) for t in fraud.target_items],
        "genuine_rows": [int(np.sum(inter.items[~is_fake_row] == t)) for t in fraud.target_items],
    }
    clean, clean_params = load_run(clean_run)
    protocol = build_protocol(poisoned, UnlearnConfig(scenario="spam"))
    retrained, retrained_params, _ = load_retrain(protocol, spam_dir, 3)
    models = [("clean BPR", clean, clean_params, clean_run),
              ("poisoned BPR", poisoned, poisoned_params, poisoned_run),
              ("retrain k=3", retrained, retrained_params, spam_dir / "retrain" / "k3")]
    if longer_run is not None:
        longer, longer_params = load_run(longer_run)
        models.append(("poisoned BPR, no early stopping", longer, longer_params, longer_run))
    rows = []
    for name, experiment, params, folder in models:
        scores = model_scores_fn(experiment.model, params, experiment.context)
        raw = exposure.spam_exposure(scores, genuine, fraud.target_items, KS)
        masked = exposure.spam_exposure(scores, genuine, fraud.target_items, KS, exclude=history)
        fakes = ""
        if experiment.data.fraud is not None and "retrain" not in name:
            own = exposure.spam_exposure(scores, experiment.data.fraud.users, fraud.target_items, KS)
            fakes = f"{own['users_with_target@20']:.2f} ({own['avg_targets_in_top@20']:.1f})"
        result = json.loads((folder / "result.json").read_text())
        rows.append([name, f"{result['epochs']} (best {result['best_epoch']})",
                     f"{raw['users_with_target@20']:.4f}", f"{masked['users_with_target@20']:.4f}",
                     f"{raw['mean_best_target_rank']:.0f}", f"{masked['mean_best_target_rank']:.0f}",
                     f"{raw['mean_target_probability']:.5f}", fakes or "-"])
    return rows, support


def horror_exposure_of(run: Path, users: np.ndarray) -> dict:
    """Horror exposure (raw scores) of the given users under another model of the same data."""
    from erase_jax.evaluators import exposure
    from erase_jax.evaluators.cf_ranking import top_k_items
    from erase_jax.run import load_run

    experiment, params = load_run(run)
    top = top_k_items(experiment.model, params, experiment.context, users, max(KS),
                      block_size=experiment.config.eval.block_size)
    return exposure.sensitive_exposure(top, experiment.data.interactions.category_items(CATEGORY), KS)


# ---------------------------------------------------------------------------------------------
# the report


def horror_cells(values: dict) -> list[str]:
    cells = []
    for k in KS:
        cells += [f"{float(values[f'pct_users_with_sensitive@{k}']):.1f}", f"{float(values[f'avg_sensitive_per_user@{k}']):.3f}"]
    return cells


def fmt(value, digits: int = 4) -> str:
    """A CSV cell for the report: integers as such, other numbers with `digits` decimals."""
    if value in ("", None):
        return ""
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:.{digits}f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def sensitive_section(rows: list[dict], checkpoints: list[int]) -> tuple[str, dict]:
    header = ["checkpoint k", "requests through c_k", "model"]
    for k in KS:
        header += [f"users with Horror in top-{k}", f"% users @{k}", f"avg Horror items @{k}"]
    body = []
    for k_idx in range(4):
        for label, eval_type in (("trained", "trained"), ("retrain", "retraining")):
            row = pick(rows, eval_type, k_idx)
            cells = [k_idx, checkpoints[k_idx] + 1, label]
            for k in KS:
                cells += [
                    f"{fmt(row[f'users_with_sensitive@{k}'])}/{fmt(row['sensitive_total_users'])}",
                    f"{float(row[f'pct_users_with_sensitive@{k}']):.1f}",
                    f"{float(row[f'avg_sensitive_per_user@{k}']):.3f}",
                ]
            body.append(cells)
    k3_trained, k3_retrain = pick(rows, "trained", 3), pick(rows, "retraining", 3)
    checks = {}
    for k in KS:
        for metric in ("avg_sensitive_per_user", "pct_users_with_sensitive"):
            name = f"{metric}@{k}"
            checks[name] = (float(k3_retrain[name]), float(k3_trained[name]))
    return table(header, body), checks


def utility_section(rows: list[dict]) -> str:
    header = ["checkpoint k", "model", "test Recall@20", "test NDCG@20", "test Hit@20",
              "forgotten pairs in top-20", "forgotten mean rank", "top-20 Jaccard with retrain (unlearned users)"]
    body = []
    for k_idx in range(-1, 4):
        pairs = (("trained", "trained"),) if k_idx == -1 else (("trained", "trained"), ("retrain", "retraining"))
        for label, eval_type in pairs:
            row = pick(rows, eval_type, k_idx)
            body.append([
                "all data" if k_idx == -1 else k_idx, label,
                fmt(row["test_recall@20"]), fmt(row["test_ndcg@20"]), fmt(row["test_hit@20"]),
                fmt(row.get("forgotten_hit@20", "")), fmt(row.get("forgotten_mean_rank", ""), 1),
                fmt(row.get("agree_unlearned_jaccard@20", "")),
            ])
    return table(header, body)


def cost_section(rows: list[dict], train_result: dict, timings: dict) -> str:
    unlearning = pick(rows, "unlearning", 3, "untouched")
    header = ["what", "seconds"]
    body = [
        [f"train clean BPR ({train_result['epochs']} epochs, best {train_result['best_epoch']}), sum of epoch times",
         f"{sum(train_result['timing']['train_seconds_per_epoch']):.1f}"],
        ["per request, `untouched` (data preparation + retain sampling + no-op method): median",
         f"{float(unlearning['request_seconds_median']):.4f}"],
        ["per request, `untouched`: mean / p90 / max",
         " / ".join(f"{float(unlearning[f'request_seconds_{s}']):.4f}" for s in ("mean", "p90", "max"))],
        [f"all {unlearning['n_requests']} requests, `untouched` (excluding checkpoint writing)",
         f"{float(unlearning['request_seconds_total']):.2f}"],
    ]
    for k_idx in range(4):
        row = pick(rows, "retraining", k_idx)
        body.append([f"retrain k={k_idx} ({row['retrain_epochs']} epochs), sum of epoch times",
                     f"{float(row['retrain_seconds']):.1f}"])
    body.append(["wall time of each CLI call in this invocation (start-up, data loading, compilation and "
                 "evaluation included; a rerun of the script resumes finished work)",
                 ", ".join(f"{name} {seconds:.0f}" for name, seconds in timings.items())])
    return table(header, body)


SPAM_COLUMNS = [("users_with_target@10", "share of users with a target in top-10", 3),
                ("users_with_target@20", "share of users with a target in top-20", 3),
                ("avg_targets_in_top@20", "targets per user in top-20", 3),
                ("mean_best_target_rank", "mean best target rank", 1),
                ("mean_target_rank", "mean target rank", 1),
                ("mean_target_probability", "summed target softmax prob.", 5)]


def spam_section(clean: dict, clean_result: dict, spam_rows: list[dict], n_fake: list[int]) -> tuple[str, dict]:
    header = ["model", "fake users removed"] + [title for _, title, _ in SPAM_COLUMNS] + ["test Recall@20"]
    poisoned = pick(spam_rows, "trained", -1)
    body = [["clean BPR (never saw fakes)", "-"] + [f"{clean[key]:.{d}f}" for key, _, d in SPAM_COLUMNS]
            + [f"{clean_result['test']['recall@20']:.4f}"]]
    body.append(["poisoned BPR", "0"] + [f"{float(poisoned['spam_' + key]):.{d}f}" for key, _, d in SPAM_COLUMNS]
                + [fmt(poisoned["test_recall@20"])])
    for k_idx in range(4):
        row = pick(spam_rows, "retraining", k_idx)
        body.append([f"retrain k={k_idx}", f"{n_fake[k_idx]}"]
                    + [f"{float(row['spam_' + key]):.{d}f}" for key, _, d in SPAM_COLUMNS] + [fmt(row["test_recall@20"])])
    retrained = pick(spam_rows, "retraining", 3)
    values = {"clean": clean["users_with_target@20"], "poisoned": float(poisoned["spam_users_with_target@20"]),
              "retrain_k3": float(retrained["spam_users_with_target@20"])}
    return table(header, body), values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/experiments/unlearning_protocol_ml-100k", help="run folders")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="maximum training epochs (default: the config's 100, early stopping)")
    parser.add_argument("--generated-forget-set", action="store_true",
                        help="let the runner draw the forget set from the 5-core data instead of the original's file")
    parser.add_argument("--skip-resume-check", action="store_true")
    parser.add_argument("--skip-controls", action="store_true",
                        help="skip the two control trainings (another seed; the poisoned BPR without early stopping)")
    parser.add_argument("--markdown", default=str(REPO_ROOT / "experiments" / "results" / "unlearning_protocol_ml-100k.md"))
    args = parser.parse_args(argv)

    out = Path(args.out).resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    train_settings = ["--set", "model=BPR", "--set", f"dataset={DATASET}", "--set", f"seed={args.seed}"]
    if args.epochs is not None:
        train_settings += ["--set", f"train.epochs={args.epochs}"]
    started = time.perf_counter()

    # --- sensitive scenario ------------------------------------------------------------------
    clean_run = out / "bpr_clean"
    step(["train", *train_settings, "--out", str(clean_run)], logs / "train_clean.log", timings, "train_clean")
    forget_file, forget = write_reference_forget_file(out / "forget_sets", args.seed)
    scenario = ["--scenario", f"sensitive:{CATEGORY}", "--fraction", str(FRACTION),
                "--rating-threshold", str(RATING_THRESHOLD), "--seed", str(args.seed)]
    if not args.generated_forget_set:
        scenario += ["--forget-file", str(forget_file)]
    sensitive_dir = out / "bpr_clean" / "unlearn" / "sensitive"
    common = ["--run", str(clean_run), *scenario, "--out", str(sensitive_dir)]
    step(["retrain", *common, "--checkpoint-idx", "all"], logs / "retrain_sensitive.log", timings, "retrain_sensitive")
    step(["unlearn", *common, "--method", "untouched"], logs / "unlearn_untouched.log", timings, "unlearn_untouched")

    rows = read_rows(sensitive_dir / "unlearning.csv")
    resume = None
    if not args.skip_resume_check:
        resume_dir = out / "bpr_clean" / "unlearn" / "sensitive_resume_check"
        shutil.rmtree(resume_dir / "untouched", ignore_errors=True)  # always a fresh run to kill
        resume_dir.mkdir(parents=True, exist_ok=True)
        if not (resume_dir / "retrain").exists():
            (resume_dir / "retrain").symlink_to(sensitive_dir / "retrain", target_is_directory=True)
        resume_args = ["unlearn", "--run", str(clean_run), *scenario, "--out", str(resume_dir), "--method", "untouched"]
        resume = killed_then_resumed(resume_args, resume_dir / "untouched", logs / "unlearn_killed.log", timings)
        straight_rows = [without_timing(r) for r in read_rows(sensitive_dir / "untouched" / "unlearning.csv")]
        resumed_rows = [without_timing(r) for r in read_rows(resume_dir / "untouched" / "unlearning.csv")]
        resume["identical_rows"] = straight_rows == resumed_rows
        resume["rows_compared"] = len(straight_rows)

    # --- spam scenario -----------------------------------------------------------------------
    poisoned_run = out / "bpr_poisoned"
    step(["train", *train_settings, "--set", f"data.spam_ratio={SPAM_RATIO}", "--out", str(poisoned_run)],
         logs / "train_poisoned.log", timings, "train_poisoned")
    spam_dir = poisoned_run / "unlearn" / "spam"
    spam_common = ["--run", str(poisoned_run), "--scenario", "spam", "--out", str(spam_dir)]
    step(["retrain", *spam_common, "--checkpoint-idx", "all"], logs / "retrain_spam.log", timings, "retrain_spam")
    step(["unlearn", *spam_common, "--method", "untouched"], logs / "unlearn_spam_untouched.log", timings,
              "unlearn_spam_untouched")
    clean_spam = clean_model_spam_exposure(clean_run, poisoned_run)
    spam_rows = read_rows(spam_dir / "unlearning.csv")

    # --- controls: how large is seed noise, and is the spam effect a matter of training length
    other_seed_run = longer_run = None
    if not args.skip_controls:
        other_seed_run = out / f"bpr_clean_seed{args.seed + 1}"
        other_settings = [f"seed={args.seed + 1}" if a == f"seed={args.seed}" else a for a in train_settings]
        step(["train", *other_settings, "--out", str(other_seed_run)], logs / "train_other_seed.log", timings,
                  "train_other_seed")
        longer_run = out / "bpr_poisoned_no_early_stopping"
        step(["train", *train_settings, "--set", f"data.spam_ratio={SPAM_RATIO}", "--set", "train.stopping_step=1000",
              "--out", str(longer_run)], logs / "train_poisoned_long.log", timings, "train_poisoned_long")
    control_rows, support = spam_controls(clean_run, poisoned_run, spam_dir, longer_run)
    total_minutes = (time.perf_counter() - started) / 60

    # --- report ------------------------------------------------------------------------------
    clean_result = json.loads((clean_run / "result.json").read_text())
    poisoned_result = json.loads((poisoned_run / "result.json").read_text())
    spam_json = json.loads((spam_dir / "retrain" / "unlearning.json").read_text())
    n_fake_requests = spam_json["n_requests"]
    n_fake = [c + 1 for c in spam_json["checkpoint_requests"]]
    unlearning_json = json.loads((sensitive_dir / "untouched" / "unlearning.json").read_text())
    checkpoints = unlearning_json["checkpoint_requests"]
    unlearned_k3 = pick(rows, "unlearning", 3, "untouched")
    sensitive_table, sensitive_checks = sensitive_section(rows, checkpoints)
    spam_table, spam_values = spam_section(clean_spam, clean_result, spam_rows, n_fake)

    below = {name: retrain < trained for name, (retrain, trained) in sensitive_checks.items()}
    spam_ratio = spam_values["poisoned"] / spam_values["clean"] if spam_values["clean"] else float("inf")
    spam_effect = spam_values["poisoned"] > 0 and spam_values["poisoned"] >= 3 * spam_values["clean"]
    removed = spam_values["retrain_k3"] <= max(1.5 * spam_values["clean"], spam_values["clean"] + 0.01)
    removed = removed and spam_values["retrain_k3"] * 3 <= spam_values["poisoned"]
    checks = [
        ("retrain's Horror exposure of the unlearned users at checkpoint 3 is below the original's "
         "(avg Horror items per user @20)", below["avg_sensitive_per_user@20"],
         f"{sensitive_checks['avg_sensitive_per_user@20'][0]:.3f} vs {sensitive_checks['avg_sensitive_per_user@20'][1]:.3f}"),
        ("... and @10", below["avg_sensitive_per_user@10"],
         f"{sensitive_checks['avg_sensitive_per_user@10'][0]:.3f} vs {sensitive_checks['avg_sensitive_per_user@10'][1]:.3f}"),
        ("... share of users with a Horror item @20 / @10",
         below["pct_users_with_sensitive@20"] and below["pct_users_with_sensitive@10"],
         f"{sensitive_checks['pct_users_with_sensitive@20'][0]:.1f}% vs {sensitive_checks['pct_users_with_sensitive@20'][1]:.1f}%"
         f" / {sensitive_checks['pct_users_with_sensitive@10'][0]:.1f}% vs {sensitive_checks['pct_users_with_sensitive@10'][1]:.1f}%"),
        ("the poisoned BPR shows the targets in genuine users' top-20 far more than the clean BPR "
         "(share of users with a target in top-20: > 0 and >= 3x)", spam_effect,
         f"{spam_values['poisoned']:.4f} vs {spam_values['clean']:.4f}"
         + (f" ({spam_ratio:.1f}x)" if np.isfinite(spam_ratio) else "")),
        ("retraining without all fakes (k=3) removes the effect (within 1.5x of the clean model, "
         "and below a third of the poisoned)", removed if spam_effect else None,
         f"{spam_values['retrain_k3']:.4f} (clean {spam_values['clean']:.4f}, poisoned {spam_values['poisoned']:.4f})"
         + ("" if spam_effect else "; no effect to remove")),
    ]
    if resume is not None:
        checks.append((
            "`unlearn` killed (SIGKILL) after checkpoint 1 and rerun gives the uninterrupted run's rows",
            resume["identical_rows"] and not resume["finished_before_kill"]
            and resume["killed_after_requests"] < int(unlearned_k3["n_requests"]),
            f"killed after {resume['killed_after_requests']} of {unlearned_k3['n_requests']} requests; "
            f"{resume['rows_compared']} rows compared, timing/memory columns excluded",
        ))
    verdict = {True: "yes", False: "**NO**", None: "n/a"}

    # Horror exposure of all unlearned users: the original, a model of the same data with another
    # seed (how much exposure moves without any removal) and the retrain at k = 3.
    unlearned = np.array([u for request in unlearning_json["requests"] for u in request["users"]], np.int32)
    horror_rows = [["trained (seed %d)" % args.seed, *horror_cells(pick(rows, "trained", 3))],
                   ["retrain k=3 (seed %d)" % args.seed, *horror_cells(pick(rows, "retraining", 3))]]
    if other_seed_run is not None:
        control = horror_exposure_of(other_seed_run, unlearned)
        other_result = json.loads((other_seed_run / "result.json").read_text())
        horror_rows.insert(1, [f"trained with seed {args.seed + 1} ({other_result['epochs']} epochs; control)",
                               *horror_cells(control)])

    # Facts a reader needs to weigh the tables, stated only when they apply.
    notes = []
    retrains = [json.loads((sensitive_dir / "retrain" / f"k{k}" / "result.json").read_text()) for k in range(4)]
    retrain_epochs = [r["epochs"] for r in retrains]
    if max(retrain_epochs + [clean_result["epochs"]]) > 2 * min(retrain_epochs + [clean_result["epochs"]]):
        notes.append(
            f"Training length varies with early stopping (stopping_step 10): the original trained "
            f"{clean_result['epochs']} epochs (best {clean_result['best_epoch']}), the retrains k=0..3 "
            f"{retrain_epochs} (best {[r['best_epoch'] for r in retrains]}). Validation Recall@20 reaches a "
            "plateau early while test Recall@20 keeps rising, so a run that stops on the plateau is less "
            "trained (see the test utility); at checkpoints whose retrain stopped early the comparison "
            "mixes forgetting with training length.")
    if poisoned_result["epochs"] * 2 < clean_result["epochs"]:
        notes.append(
            f"The poisoned BPR stopped after {poisoned_result['epochs']} epochs (best "
            f"{poisoned_result['best_epoch']}), the clean one after {clean_result['epochs']}: the spam "
            "rows compare models of different training length. The controls include the poisoned BPR "
            "trained without early stopping.")
    if not spam_effect:
        notes.append(
            f"No spam effect on genuine users' top-20 at this workload: {n_fake_requests} fake users rate "
            f"every target, giving each target {min(support['fake_train_rows'])} to "
            f"{max(support['fake_train_rows'])} fake training rows next to its {min(support['genuine_rows'])} "
            f"to {max(support['genuine_rows'])} genuine ones (all splits). BPR puts the targets in the fake users' own top-20 once trained long enough, but in "
            "almost no genuine user's top-20 (raw or history-masked), so there is nothing for the "
            "retrain to remove. Target probabilities and ranks move a little; see the controls. "
            "Stronger attacks (5-20 % fake users) do not change that: "
            "`experiments/results/spam_strength_ml-100k.md`.")

    forget_source = ("drawn by the runner from the 5-core data" if args.generated_forget_set else
                     f"the original's rule on `{DATASET}.inter` as read ({forget['raw_rows']} rows, before the "
                     f"5-core filter), written as the forget file `{forget_file.name}`")
    csv_paths = [sensitive_dir / "unlearning.csv", sensitive_dir / "untouched" / "unlearning.csv",
                 sensitive_dir / "retrain" / "unlearning.csv", sensitive_dir / "untouched" / "requests.csv",
                 spam_dir / "unlearning.csv"]
    lines = [
        f"# Unlearning protocol on {DATASET}: BPR, sensitive (Horror) and spam scenarios",
        "",
        f"Generated by `experiments/unlearning_protocol.py --seed {args.seed}"
        + (f" --epochs {args.epochs}" if args.epochs is not None else "") + f"` on "
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} CPU cores, shared with other "
        f"jobs; total {total_minutes:.0f} min). Run folders: `{out}`.",
        "",
        "## Acceptance checks",
        "",
        table(["claim", "holds", "measured"], [[c, verdict[ok], m] for c, ok, m in checks]),
        "",
        "## Sensitive scenario: Horror, rating >= 3.5, fraction 0.003",
        "",
        f"Forget set: {forget_source}: {int(unlearned_k3['n_removed'])} rows removed (all splits) from "
        f"{unlearned_k3['n_requests']} users = {unlearned_k3['n_requests']} requests; checkpoints after requests "
        f"{checkpoints} (0-based). Model: BPR, embedding 64, trained {clean_result['epochs']} epochs "
        f"(best epoch {clean_result['best_epoch']}, stopped: {clean_result['stopped']}).",
        "",
        "### What the unlearned users are shown (raw scores, nothing masked; spec 5.2)",
        "",
        "Users = the requests processed through checkpoint k. `trained` = the trained model, "
        "`retrain` = BPR trained from scratch without the interactions removed through k. Lower is better.",
        "",
        sensitive_table,
        "",
        "### Utility and forgetting",
        "",
        "Test metrics on the split recomputed from the data without the rows removed through k. "
        "`forgotten pairs in top-20` = share of the removed (user, item) pairs the model still ranks in "
        "the user's top 20 (raw scores).",
        "",
        utility_section(rows),
        "",
        "### Cost",
        "",
        "Only the `untouched` reference method exists so far, so the per-request time is the protocol's "
        "own overhead (request data, negatives, context, timing) around a method that does nothing; "
        "the resumable state and the quarter checkpoints are written after the timed section.",
        "",
        cost_section(rows, clean_result, timings),
        "",
        "## Spam scenario: poisoned BPR vs clean BPR, and the retrains",
        "",
        f"Poisoning: `data.spam_ratio={SPAM_RATIO}` -> {n_fake_requests} fake users (each one request), "
        f"10 target items from the 20 % least popular. Poisoned BPR: {poisoned_result['epochs']} epochs. "
        "Exposure over the genuine users, raw scores over all items. Retrain k removes fake users "
        "0..c_k; k = 3 removes all of them.",
        "",
        spam_table,
        "",
        *(["## Notes", "", *[f"- {note}" for note in notes], ""] if notes else []),
        "## Controls",
        "",
        "Horror exposure of all unlearned users (checkpoint 3) under models of the full data with "
        "different seeds, next to the retrain: the gap between trained and retrain should exceed "
        "the seed-to-seed spread.",
        "",
        table(["model", *[f"{m} @{k}" for k in KS for m in ("% users with Horror", "avg Horror items")]], horror_rows),
        "",
        "Spam: exposure of the genuine users with raw scores (as above) and with their training items "
        "masked, mean rank of each user's best-ranked target, and the fake users' own exposure "
        "(share with a target in their top-20, targets per fake user): whether the model learned the "
        "attack at all.",
        "",
        table(["model", "epochs", "users with target @20 (raw)", "users with target @20 (history masked)",
               "best target rank (raw)", "best target rank (masked)", "target prob. (raw)",
               "fake users: with target @20 (targets)"], control_rows),
        "",
        "## Result files",
        "",
        *[f"- `{p}`" for p in csv_paths],
        "",
    ]
    if resume is not None:
        lines[-1:-1] = [f"- `{out / 'bpr_clean' / 'unlearn' / 'sensitive_resume_check' / 'untouched' / 'unlearning.csv'}`"
                        " (the killed-and-rerun run)"]
    text = "\n".join(lines)
    markdown = Path(args.markdown)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(text)
    record = {
        "provenance": provenance(config={"model": "BPR", "dataset": DATASET, "seed": args.seed, "train.epochs": args.epochs,
                                         "category": CATEGORY, "fraction": FRACTION, "rating_threshold": RATING_THRESHOLD,
                                         "spam_ratio": SPAM_RATIO, "generated_forget_set": args.generated_forget_set}),
        "checks": [{"claim": claim, "holds": ok, "measured": measured} for claim, ok, measured in checks],
        "sensitive_k3_retrain_vs_trained": sensitive_checks, "spam_users_with_target@20": spam_values,
        "resume": resume, "timings_seconds": timings, "notes": notes,
        "sensitive_rows": rows, "spam_rows": spam_rows, "run_folders": str(out),
    }
    markdown.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(text)
    print(f"\nwritten: {markdown} and {markdown.with_suffix('.json').name}")
    return 0 if all(ok is not False for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
