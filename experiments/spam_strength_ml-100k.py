"""How strong must the CF bandwagon attack be before a model shows its targets to genuine users?

    python experiments/spam_strength_ml-100k.py [--ratios 0.01 0.05 0.1 0.2] [--epochs 100]
        [--models bpr itemknn ...] [--attack bandwagon_users|bandwagon_selected]

The spam scenario's claim (the poisoned model shows the target items in genuine users' top-20
far more than the clean model) did not hold at the default poisoning ratio 0.01
(`experiments/results/unlearning_protocol_ml-100k.md`). This sweep trains the clean BPR and one poisoned BPR per ratio on
ml-100k with the original CF protocol, all for the same fixed number of epochs (no early
stopping, so that training length does not differ between them), and measures over the
genuine users: the share with a target in their top-20 (raw scores, and with their own
training items masked), the mean rank of each user's best-ranked target, the mean rank of all
targets, and the summed softmax probability of the targets; with the history masked also the
poisoning literature's measures: target hit ratio @20 / @50 (the share of (user, target) pairs
in the top k) and the target mass ratio (mean softmax mass per target, poisoned over clean).
Every poisoned model is compared with the clean one, which is also what a retrain without all
fake users (k = 3) is: the same data, configuration and seed.

`--models` picks from `MODEL_CONFIGS` (BPR, ItemKNN: item-neighbourhood CF, where co-occurrence
with the fillers is what the attack exploits; the other non-learned baselines). `--attack` picks
the fake profiles (`DataConfig.spam_attack`): ERASE's adaptation (targets plus fillers from the
popular 20 %) or the literature's bandwagon (targets, the 10 most popular items in every fake,
random fillers from the whole catalogue).

Writes `experiments/results/spam_strength_ml-100k[_<attack>].md` and `.json` (no suffix for
`bandwagon_users`, the first run's file).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

MODEL_CONFIGS = {name: f"experiments/configs/{name}_ml-100k.yaml" for name in ("bpr", "itemknn", "ease", "pop")}
ATTACKS = ("bandwagon_users", "bandwagon_selected")


def train(config_path: str, overrides: list[str]):
    from erase_jax import config as config_lib
    from erase_jax.batching.cf import CFBatcher
    from erase_jax.run import build_experiment
    from erase_jax.train import best_params, fit

    config = config_lib.load_config(REPO_ROOT / config_path, overrides)
    experiment = build_experiment(config)
    batcher = CFBatcher.build(experiment.examples.train, config.train.batch_size, sampler=config.train.sampler)
    result = fit(experiment.model, experiment.context, batcher, None, config.train, config.seed)
    return experiment, best_params(result)


def exposure_of(experiment, params, genuine, targets, history) -> dict:
    from erase_jax.evaluators import exposure
    from erase_jax.evaluators.scoring import model_scores_fn
    from erase_jax.run import evaluate_params

    scores = model_scores_fn(experiment.model, params, experiment.context)
    raw = exposure.spam_exposure(scores, genuine, targets, (10, 20))
    masked = exposure.spam_exposure(scores, genuine, targets, (20, 50), exclude=history)
    return {
        "target_hit_ratio@20_masked": masked["target_hit_ratio@20"],
        "target_hit_ratio@50_masked": masked["target_hit_ratio@50"],
        "mean_target_mass_masked": masked["mean_target_mass"],
        "users_with_target@20": raw["users_with_target@20"],
        "users_with_target@20_masked": masked["users_with_target@20"],
        "mean_best_target_rank": raw["mean_best_target_rank"],
        "mean_best_target_rank_masked": masked["mean_best_target_rank"],
        "mean_target_rank": raw["mean_target_rank"],
        "mean_target_probability": raw["mean_target_probability"],
        "test_recall@20": evaluate_params(experiment, params, "test")["recall@20"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.2])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--models", nargs="+", default=["bpr"], choices=sorted(MODEL_CONFIGS))
    parser.add_argument("--attack", default="bandwagon_users", choices=ATTACKS)
    parser.add_argument("--out", default=None, help="output path without suffix (default: by attack)")
    args = parser.parse_args()
    suffix = "" if args.attack == "bandwagon_users" else f"_{args.attack}"
    out = Path(args.out or REPO_ROOT / f"experiments/results/spam_strength_ml-100k{suffix}")
    started = time.time()
    fixed = [f"train.epochs={args.epochs}"]
    rows = []
    for model in args.models:
        rows += model_rows(model, args, fixed)
    clean, _ = train(MODEL_CONFIGS[args.models[0]], fixed)
    item_counts = np.bincount(clean.examples.train.items, minlength=clean.data.interactions.n_items)
    record = {
        "provenance": provenance(config={"configs": {m: MODEL_CONFIGS[m] for m in args.models},
                                         "train.epochs": args.epochs, "data.spam_ratio": args.ratios,
                                         "data.spam_attack": args.attack}),
        "command": "python experiments/spam_strength_ml-100k.py " + " ".join(
            [f"--ratios {' '.join(map(str, args.ratios))}", f"--epochs {args.epochs}",
             f"--models {' '.join(args.models)}", f"--attack {args.attack}"]),
        "attack": args.attack,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
        "load_average_end": os.getloadavg(),
        "seconds": time.time() - started,
        "item_train_rows_percentiles": {p: float(np.percentile(item_counts, p)) for p in (50, 80, 95, 99)},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    out.with_suffix(".md").write_text(markdown(record))


def model_rows(model: str, args, fixed: list[str]) -> list[dict]:
    """One row per poisoning ratio: the clean and the poisoned model's exposure of the targets."""
    config_path = MODEL_CONFIGS[model]
    clean, clean_params = train(config_path, fixed)
    rows = []
    for ratio in args.ratios:
        poisoned, poisoned_params = train(config_path, fixed + [f"data.spam_ratio={ratio}", f"data.spam_attack={args.attack}"])
        fraud = poisoned.data.fraud
        if not np.array_equal(clean.data.interactions.item_tokens, poisoned.data.interactions.item_tokens):
            raise SystemExit("clean and poisoned data have different item vocabularies")
        genuine = np.setdiff1d(np.arange(poisoned.data.interactions.n_users), fraud.users)
        train_rows = poisoned.examples.train
        genuine_rows = ~np.isin(train_rows.users, fraud.users)
        history = (train_rows.users[genuine_rows], train_rows.items[genuine_rows])
        fake_rows = np.isin(train_rows.users, fraud.users)
        target_rows = [int(np.sum(train_rows.items == t)) for t in fraud.target_items]
        target_fake_rows = [int(np.sum(train_rows.items[fake_rows] == t)) for t in fraud.target_items]
        row = {
            "model": clean.config.model,
            "ratio": ratio,
            "n_fake_users": int(len(fraud.users)),
            "target_train_rows_mean": float(np.mean(target_rows)),
            "target_train_rows_from_fakes_mean": float(np.mean(target_fake_rows)),
            "clean": exposure_of(clean, clean_params, genuine, fraud.target_items, history),
            "poisoned": exposure_of(poisoned, poisoned_params, genuine, fraud.target_items, history),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def mass_ratio(row: dict) -> float | None:
    """The poisoned model's mean target mass (history masked) over the clean model's."""
    poisoned, clean = row["poisoned"].get("mean_target_mass_masked"), row["clean"].get("mean_target_mass_masked")
    return None if poisoned is None or not clean else poisoned / clean


def markdown(record: dict) -> str:
    models = sorted({row.get("model", "BPR") for row in record["rows"]})
    profile = ("the 10 targets, the 10 most popular items and random fillers from the whole catalogue (the "
               "literature's bandwagon)" if record.get("attack") == "bandwagon_selected" else
               "all 10 targets (from the 20 % least popular items) plus popular fillers (ERASE's profile, adapted)")
    lines = [
        f"# Bandwagon attack strength on ml-100k, {', '.join(models)}",
        "",
        f"Generated by `{record['command']}` on {record['date']} UTC (2 shared CPU cores; "
        f"{record['seconds'] / 60:.0f} min). Clean and poisoned models trained for the same fixed number of "
        f"epochs with the original CF protocol (seed 2); each fake user rates {profile}; exposure over the "
        "genuine users, raw scores unless 'masked' (the user's training items excluded). Hit ratio @k: the "
        "share of (genuine user, target) pairs ranked in the top k, history masked; mass ratio: the mean "
        "softmax mass per target (masked), poisoned over clean. The clean model is also the retrain without "
        "all fake users (same data, configuration and seed).",
        "",
        "| model | ratio | fake users | target train rows (from fakes) | trained on | users with target @20 | masked | "
        "hit ratio @20 | hit ratio @50 | mean best target rank | mean target rank | target prob. | mass ratio | "
        "test Recall@20 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in record["rows"]:
        for name in ("clean", "poisoned"):
            e = row[name]
            ratio = mass_ratio(row) if name == "poisoned" else (1.0 if mass_ratio(row) is not None else None)
            extra = [f"{e[k]:.4f}" if k in e else "" for k in ("target_hit_ratio@20_masked", "target_hit_ratio@50_masked")]
            lines.append(
                f"| {row.get('model', 'BPR')} | {row['ratio']} | {row['n_fake_users']} | {row['target_train_rows_mean']:.0f} "
                f"({row['target_train_rows_from_fakes_mean']:.0f}) | {name} | {e['users_with_target@20']:.4f} | "
                f"{e['users_with_target@20_masked']:.4f} | {' | '.join(extra)} | {e['mean_best_target_rank']:.0f} | "
                f"{e['mean_target_rank']:.0f} | {e['mean_target_probability']:.5f} | "
                f"{'' if ratio is None else f'{ratio:.2f}'} | {e['test_recall@20']:.4f} |"
            )
    pct = {int(k): v for k, v in record["item_train_rows_percentiles"].items()}  # JSON keys are strings
    lines += ["", f"Training rows per item in the clean data: median {pct[50]:.0f}, 80th percentile {pct[80]:.0f}, "
                  f"95th {pct[95]:.0f}, 99th {pct[99]:.0f}.", ""]
    for model in models:
        mine = [row for row in record["rows"] if row.get("model", "BPR") == model]
        top = max(mine, key=lambda row: row["ratio"])
        reached = max(row["poisoned"]["users_with_target@20_masked"] for row in mine)
        ratio = mass_ratio(top)
        mass = "" if ratio is None else f", mean target mass x{ratio:.1f}"
        lines.append(
            f"- {model}: at most {reached:.4f} of genuine users have a target in their masked top 20 "
            f"(clean {top['clean']['users_with_target@20_masked']:.4f}); at ratio {top['ratio']} the mean target rank "
            f"moves {top['clean']['mean_target_rank']:.0f} -> {top['poisoned']['mean_target_rank']:.0f}{mass}.")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    main()
