"""What one exact-unlearning shard retrain is made of: its training epoch and its validation.

    python benchmarks/shard_cost.py [--run runs/shard_cost/bpr_ml-1m] [--epochs 40]
        [--out benchmarks/results/shard_cost.json]

On the RecEraser paper's ML-1M split with the ML-1M RecEraser settings
(`experiments/configs/bpr_ml-1m-receraser-shards*.yaml`, seed 2):
- the one-shard training epoch (the one an unlearning request runs, host row orders
  included) on a random tenth of the training rows: median and minimum wall time of
  `--epochs` epochs, compiled beforehand;
- one own-items validation (`validation.own_validator`) of each InBP shard, at the submodels'
  initial parameters (the ranking's cost does not depend on their values): mean of 10, with
  the shard's number of items.

InBP needs the full BPR's embeddings: they are read from the run folder `--run` (an
`erase-jax train --config experiments/configs/bpr_ml-1m-receraser-shards.yaml` run, such as the
trained model of the grid `receraser_ml-1m`), or trained there first (about 100 s on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import yaml
from provenance import provenance  # benchmarks/ is this script's folder

from erase_jax.config import load_config
from erase_jax.run import build_experiment, load_run, train_run
from erase_jax.unlearn.exact import partition, shards, training
from erase_jax.unlearn.exact.rows import shard_data
from erase_jax.unlearn.methods.base import build_method

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / "experiments" / "configs" / "bpr_ml-1m-receraser-shards.yaml"
METHODS = REPO_ROOT / "experiments" / "configs" / "bpr_ml-1m-receraser-shards-methods.yaml"


def one_shard_epoch_ms(experiment, method, n_epochs: int) -> dict:
    """`train_shards` on one shard without validation, as a request's retrain runs it (host
    row orders included); one epoch first, so the timed run compiles nothing."""
    n_rows = len(experiment.data.interactions)
    shard_of_row = np.full(n_rows, -1, np.int32)
    shard_of_row[experiment.data.split.train] = partition.random_partition(experiment.examples.train.users, method.n_shards, 0).shard_of_row
    config = method.shard_train_config(experiment)
    data, _ = shard_data(experiment, shard_of_row, np.zeros(n_rows, bool), np.array([3]))
    seeds = method.shard_seeds(experiment.config.seed)[3:4]

    def train(epochs: int):
        return training.train_shards(experiment.model, experiment.context, data, seeds, dataclasses.replace(config, epochs=epochs),
                                   None, experiment.examples.train.n_items, negatives=method.shard_negatives)

    train(1)
    seconds = train(n_epochs).record["epoch_seconds"]
    return {"rows": int(data.n_rows[0]), "steps": shards.n_batches(data, config.batch_size),
            "median_ms": 1e3 * float(np.median(seconds)), "min_ms": 1e3 * float(np.min(seconds))}


def validation_ms(experiment, method, pretrained) -> list[dict]:
    n_rows = len(experiment.data.interactions)
    shard_of_row = np.full(n_rows, -1, np.int32)
    shard_of_row[experiment.data.split.train] = method.make_partition(experiment.model, pretrained, experiment).shard_of_row
    removed = np.zeros(n_rows, bool)
    config = method.shard_train_config(experiment)
    stacked, _ = shards.init_shards(experiment.model, experiment.context, config, method.shard_seeds(experiment.config.seed), 1)
    out = []
    for s in range(method.n_shards):
        validate = method.shard_validators(experiment.model, experiment, shard_of_row, removed, np.array([s]), config)[0]
        params = shards.shard_slice(stacked, s)
        validate(params)  # compile
        started = time.perf_counter()
        for _ in range(10):
            validate(params)
        items = int(len(np.unique(experiment.data.interactions.items[shard_of_row == s])))
        out.append({"shard": s, "items": items, "ms": 1e3 * (time.perf_counter() - started) / 10})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(REPO_ROOT / "runs" / "shard_cost" / "bpr_ml-1m"),
                        help="the full BPR's run folder (trained there when it has not finished)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "shard_cost.json"))
    args = parser.parse_args()
    config = load_config(CONFIG)
    experiment = build_experiment(config)
    method = build_method("receraser", **yaml.safe_load(METHODS.read_text())["receraser"])
    load_before = os.getloadavg()[0]
    epoch = one_shard_epoch_ms(experiment, method, args.epochs)
    print("one-shard epoch:", epoch, flush=True)
    if not (Path(args.run) / "result.json").exists():
        train_run(config, args.run, quiet=True)
    validations = validation_ms(experiment, method, load_run(args.run)[1])
    for v in validations:
        print(v, flush=True)
    result = {
        "provenance": provenance(config={"config": str(CONFIG.relative_to(REPO_ROOT)),
                                         "methods": str(METHODS.relative_to(REPO_ROOT)),
                                         "epochs": args.epochs}),
        "load_before": load_before, "load_after": os.getloadavg()[0],
        "one_shard_epoch": epoch, "validation_per_shard": validations,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
