"""The sequential unlearning protocol on session-based models, MovieLens-100K sequences.

    python experiments/sbr_unlearning_ml-100k.py --model SASRec [--scenario sensitive|spam]
        [--epochs 12] [--fraction 0.001] [--methods scif gif ...] [--out DIR]

1. `erase-jax train` the model with `experiments/configs/<model>_ml-100k-seq.yaml` (one
   chronological sequence per user, prefix rows, per-user 80/10/10; CE over all items) for a
   fixed `--epochs` budget (early stopping on valid MRR@10 stays on). For `--scenario spam`
   the data is poisoned first (`data.spam_ratio=0.01`: fraud sessions, spec 3.3.1).
2. `erase-jax retrain --checkpoint-idx all`: the four matched retrains, same settings.
3. `erase-jax unlearn --method M` for every method, each evaluated against the retrains.

Sensitive scenario: genre Horror, rating >= 3.5 (the movielens forget-set script's threshold),
whole users in shuffled order until `--fraction` of all rows (spec 3.2.2). Each user's query
at evaluation is the user's last test prefix of the data without the removals (forgotten
items removed, for every model alike; the original fed un-cleaned histories to unlearned
models, spec 7 item 10).

Writes `experiments/results/sbr_unlearning_ml-100k_<model>_<scenario>.md` and `.json`: per
method and checkpoint, test NDCG@10 / Recall@20, what the model still shows (share of
unlearned users with a Horror item in their top 20, or genuine users with a spam target in
their top 20), the forgotten items' hit@20 for their users, agreement with the retrain, and
the per-request time (median / mean); the retrains' training time.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from cli_steps import erase_jax  # noqa: E402  (experiments/cli_steps.py)
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

METHODS = ("untouched", "scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif")
COLUMNS = (
    ("test_ndcg@10", "NDCG@10"),
    ("test_recall@20", "Recall@20"),
    ("pct_users_with_sensitive@20", "% unlearned users with Horror @20"),
    ("spam_users_with_target@20", "share of genuine users with a target @20"),
    ("spam_mean_target_rank", "mean target rank"),
    ("forgotten_hit@20", "forgotten hit@20"),
    ("agree_unlearned_jaccard@20", "Jaccard@20 vs retrain"),
    ("request_seconds_median", "s/request median"),
    ("request_seconds_mean", "s/request mean"),
    ("retrain_seconds", "retrain s"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="SASRec", choices=["GRU4Rec", "NARM", "SASRec", "SRGNN"])
    parser.add_argument("--scenario", default="sensitive", choices=["sensitive", "spam"])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--fraction", type=float, default=0.001)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", default="runs/experiments/sbr_unlearning_ml-100k")
    args = parser.parse_args()

    folder = Path(args.out) / args.model
    folder.mkdir(parents=True, exist_ok=True)
    run = folder / ("run" if args.scenario == "sensitive" else "run_spam")
    config = REPO_ROOT / "experiments" / "configs" / f"{args.model.lower()}_ml-100k-seq.yaml"
    train = ["train", "--config", str(config), "--set", f"train.epochs={args.epochs}", "--out", str(run)]
    if args.scenario == "spam":
        train += ["--set", "data.spam_ratio=0.01"]
        scenario = ["--scenario", "spam"]
    else:
        scenario = ["--scenario", "sensitive:Horror", "--fraction", str(args.fraction), "--rating-threshold", "3.5"]
    # A finished step is not repeated (an interrupted protocol is picked up where it stopped; each
    # command also resumes its own half-done work). "done earlier" marks the skipped timings.
    seconds: dict[str, float | str] = {}
    if (run / "result.json").exists():
        seconds["train"] = "done earlier"
    else:
        seconds["train"] = erase_jax(train, folder / f"train_{args.scenario}.log")
    retrain_csv = [p / "retrain" / "unlearning.csv" for p in (run / "unlearn").glob("*")]
    if any(p.exists() for p in retrain_csv):
        seconds["retrain"] = "done earlier"
    else:
        seconds["retrain"] = erase_jax(["retrain", "--run", str(run), *scenario, "--checkpoint-idx", "all"],
                                       folder / f"retrain_{args.scenario}.log")
    for method in args.methods:
        if any((p / method / "unlearning.csv").exists() for p in (run / "unlearn").glob("*")):
            seconds[method] = "done earlier"
            continue
        seconds[method] = erase_jax(["unlearn", "--run", str(run), *scenario, "--method", method],
                                    folder / f"unlearn_{args.scenario}_{method}.log")

    scenario_dirs = [p for p in (run / "unlearn").iterdir() if p.is_dir()]
    rows = list(csv.DictReader((scenario_dirs[0] / "unlearning.csv").open()))
    record = {
        "provenance": provenance(config={"config": str(config.relative_to(REPO_ROOT)),
                                         "overrides": [a for a in train if "=" in a], "scenario": scenario}),
        "model": args.model, "scenario": args.scenario, "epochs": args.epochs, "fraction": args.fraction,
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_end": os.getloadavg(), "wall_seconds": seconds, "rows": rows,
    }
    name = f"sbr_unlearning_ml-100k_{args.model}_{args.scenario}"
    results = REPO_ROOT / "experiments" / "results"
    (results / f"{name}.json").write_text(json.dumps(record, indent=2))
    (results / f"{name}.md").write_text(markdown(record, rows))
    print(f"wrote experiments/results/{name}.md")
    return 0


def markdown(record: dict, rows: list[dict]) -> str:
    present = [(key, title) for key, title in COLUMNS if any(row.get(key) for row in rows)]
    lines = [
        f"# Unlearning on {record['model']}, ML-100K sequences, {record['scenario']} scenario",
        "",
        f"Measured {record['when']} on the 2-core CPU machine (load average at the end "
        f"{', '.join(f'{x:.1f}' for x in record['load_average_at_end'])}; other jobs shared the cores, so "
        f"times are upper bounds). Model trained for at most {record['epochs']} epochs (early stopping on valid "
        f"MRR@10); the retrains use the same settings. "
        + (f"Horror, rating >= 3.5, fraction {record['fraction']}." if record["scenario"] == "sensitive"
           else "Fraud sessions, ratio 0.01, 10 unpopular targets."),
        f"Command: `python experiments/sbr_unlearning_ml-100k.py --model {record['model']} --scenario "
        f"{record['scenario']} --epochs {record['epochs']}"
        + (f" --fraction {record['fraction']}`" if record["scenario"] == "sensitive" else "`"),
        "",
        "| method | k | " + " | ".join(title for _, title in present) + " |",
        "|---|---|" + "---|" * len(present),
    ]
    # the combined csv holds the trained model's rows once per checkpoint and every method's: one row per (method, k)
    unique = {(row["method"], row["checkpoint_idx"]): row for row in rows if row["checkpoint_idx"] != "-1"}
    for row in unique.values():
        cells = [_cell(row.get(key, "")) for key, _ in present]
        lines.append(f"| {row['method']} | {row['checkpoint_idx']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(value: str) -> str:
    if value in ("", None):
        return ""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4f}" if abs(number) < 100 else f"{number:.0f}"


if __name__ == "__main__":
    sys.exit(main())
