"""Test quality of an erase-jax next-basket model and the public PyTorch one, on the same user sample.

    python benchmarks/nbr_sample_quality.py --model Sets2Sets --users 100 --epochs 2 \\
        --torch-result /tmp/s2s_quality/torch_s2s_100.json --ptopfreq-result /tmp/s2s_quality/ptopfreq_100.json \\
        [--out benchmarks/results/nbr_sample_quality_sets2sets.json]

For when neither implementation can be trained to convergence on all of Ta-Feng in the time at
hand (a PyTorch Sets2Sets epoch on the 10,061 training users costs hours on this CPU): both train
on the train-phase examples of the same seeded user sample for the same number of epochs, keep
the epoch with the best valid Recall@10, and are scored on the sample's test examples. The sample
is the one `benchmarks/nbr_pytorch_baseline.py run --users N --seed S` draws
(`default_rng(S).choice` over the exported train users, erase-jax's own examples in the same
order); the item loss weights (Sets2Sets) come from the sample's train histories on both sides.

This script trains erase-jax's model (`erase_jax.train.fit` with the model's Ta-Feng config,
`experiments/configs/<model>_tafeng.yaml`, `train.epochs` set to `--epochs`, validation every
epoch on the sample's valid rows; metrics from `erase_jax.evaluators.basket_ranking`) and merges
the harness's own result files for the PyTorch model and P-TopFreq on the same sample (run
beforehand; their commands are in their provenance), refusing files of another sample or split
size. Metrics on both sides follow next-basket spec 3 (full ranking, repeat items allowed,
Recall@k = hits / |target|, NDCG@k ideal over min(k, |target|)). A small sample trained a few
epochs says whether the two implementations learn alike, not what either reaches on Ta-Feng.
Deviation: erase-jax keeps the later of two epochs tied on valid Recall@10, the harness the
earlier.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

from erase_jax.config import load_config  # noqa: E402
from erase_jax.data.baskets import BasketExamples  # noqa: E402
from erase_jax.run import build_experiment  # noqa: E402
from erase_jax.train import best_params, fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "hit@10", "hit@20")


def sample_examples(examples: BasketExamples, users: int, seed: int) -> BasketExamples:
    """Every phase's rows of the harness's user sample (`nbr_pytorch_baseline.load_split`)."""
    train = examples.train
    if users > len(train):
        raise SystemExit(f"--users {users}: only {len(train)} training users")
    keep = np.random.default_rng(seed).choice([int(u) for u in train.users], size=users, replace=False)
    pick = lambda rows: rows.select(np.flatnonzero(np.isin(rows.users, keep)))
    return BasketExamples(pick(train), pick(examples.valid), pick(examples.test))


def train_erase_jax(args) -> dict:
    config_file = ROOT / "experiments" / "configs" / f"{args.model.lower()}_tafeng.yaml"
    config = load_config(str(config_file), [f"seed={args.seed}", f"train.epochs={args.epochs}"])
    experiment = build_experiment(config)
    examples = sample_examples(experiment.examples, args.users, args.seed)
    model, task = experiment.model, experiment.task
    context = model.prepare(examples.train)
    batcher = task.batcher(config, examples.train)
    evaluate = lambda params, rows: task.evaluate(model, params, context, rows, config.eval)
    started = time.perf_counter()
    result = fit(model, context, batcher, lambda params: evaluate(params, examples.valid), config.train, config.seed)
    wall = time.perf_counter() - started
    record = result.record
    test = evaluate(best_params(result), examples.test)
    return {
        "config": str(config_file.relative_to(ROOT)), "epochs": len(record["epoch_loss"]),
        "best_epoch": int(result.state.best_epoch), "epoch_loss": record["epoch_loss"],
        "epoch_seconds": record["epoch_seconds"], "compile_seconds": record["compile_seconds"], "wall_seconds": wall,
        "valid": [{k: v[k] for k in ("epoch", *METRICS)} for v in record["valid"]],
        "test": {k: round(float(test[k]), 6) for k in METRICS},
        "users_per_phase": {p: len(getattr(examples, p)) for p in ("train", "valid", "test")},
    }


def harness_result(path: str, users: int, seed: int, n_train: int) -> dict:
    """The harness record at `path`, checked to be of this sample; its test metrics and run facts."""
    record = json.loads(Path(path).read_text())
    split = record["split"]
    if split["subsample_users"] != users or split["subsample_seed"] != seed or split["users_per_phase"]["train"] != n_train:
        raise SystemExit(f"{path}: another sample (users {split['subsample_users']}, seed {split['subsample_seed']}, "
                         f"train rows {split['users_per_phase']['train']}); expected {users}, {seed}, {n_train}")
    return {"file": path, "command": record["provenance"]["command"], "implementation": record["implementation"],
            "split_sha256": split["sha256"], "epochs": len(record["epochs"]), "best_epoch": record["best_epoch"],
            "epoch_loss": [e["loss"] for e in record["epochs"]], "train_epoch_wall_s": [e["train_wall_s"] for e in record["epochs"]],
            "valid": [{"epoch": e["epoch"] + 1, **{k: e["valid"][k] for k in METRICS}} for e in record["epochs"]],
            "test": {k: record["test"][k] for k in METRICS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("Sets2Sets", "DNNTSP"), default="Sets2Sets")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--torch-result", required=True, help="nbr_pytorch_baseline.py run --model <model> on this sample")
    parser.add_argument("--ptopfreq-result", required=True, help="nbr_pytorch_baseline.py run --model PTopFreq on this sample")
    parser.add_argument("--erase-jax-result", default=None, help="erase-jax's side: read from this file when it exists "
                        "(a run of this script with the same settings wrote it), else trained and written there")
    parser.add_argument("--out", default=None, help="default benchmarks/results/nbr_sample_quality_<model>.json")
    args = parser.parse_args()
    if args.users < 1 or args.epochs < 1:
        raise SystemExit("--users and --epochs must be at least 1")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"nbr_sample_quality_{args.model.lower()}.json")
    load_start = os.getloadavg()
    saved = Path(args.erase_jax_result) if args.erase_jax_result else None
    if saved is not None and saved.exists():
        jax_side = json.loads(saved.read_text())
        if (jax_side.get("users"), jax_side.get("seed"), jax_side["epochs"]) != (args.users, args.seed, args.epochs):
            raise SystemExit(f"{saved}: erase-jax's side of another sample or epoch count")
    else:
        jax_side = {"users": args.users, "seed": args.seed, **train_erase_jax(args), "load_average_end": os.getloadavg()}
        if saved is not None:
            saved.write_text(json.dumps(jax_side, indent=2) + "\n")
    n_train = jax_side["users_per_phase"]["train"]
    torch_side = harness_result(args.torch_result, args.users, args.seed, n_train)
    if torch_side["epochs"] != args.epochs:
        raise SystemExit(f"{args.torch_result}: {torch_side['epochs']} epochs, not {args.epochs}")
    record = {
        "provenance": provenance(config=vars(args)),
        "model": args.model, "dataset": "tafeng", "users": args.users, "seed": args.seed, "epochs": args.epochs,
        "erase_jax": jax_side, "pytorch": torch_side,
        "ptopfreq": harness_result(args.ptopfreq_result, args.users, args.seed, n_train),
        "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "note": "a user sample trained a few epochs: compares the implementations, not converged Ta-Feng quality",
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({side: record[side]["test"] for side in ("erase_jax", "pytorch", "ptopfreq")}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
