"""Sets2Sets with dense Adam next to the lazy (row-sparse) Adam of its history layer, on a Ta-Feng user sample.

    nice -n 5 python benchmarks/nbr_lazy_adam.py --users 200 --epochs 3 \\
        [--out benchmarks/results/nbr_lazy_adam_sets2sets.json]

Both variants (`model_params.history_optimizer` "adam" and "lazy_adam", everything else the
Sets2Sets Ta-Feng config, `experiments/configs/sets2sets_tafeng.yaml`: batch 1, Adam lr 1e-3)
train on the train-phase examples of the same seeded user sample (the sample of
`benchmarks/nbr_sample_quality.py`), from the same initial parameters, in one process. Each
variant's epoch is one compiled call (`erase_jax.train.make_train_epoch`), compiled before the
first epoch (its compile seconds recorded apart); the epochs alternate between the variants
(epoch e: dense first when e is even, lazy first when odd), each timed in wall seconds and
process CPU seconds (all threads), with the load average before and after. After every epoch
both are scored on the sample's valid and test rows; the test metrics reported are those of the
epoch with the best valid Recall@10 (the config's metric; ties: the later, as
`erase_jax.train.fit`), so the quality cost of laziness after equal epochs is visible. Each
variant's state is donated to its epoch call and keeps no best parameters (two states of the
dense layer's size in one process). A sample trained a few epochs shows
the difference between the two optimisers, not converged Ta-Feng quality.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nbr_sample_quality import METRICS, sample_examples  # noqa: E402
from provenance import provenance  # noqa: E402

from erase_jax.config import load_config  # noqa: E402
from erase_jax.run import build_experiment  # noqa: E402
from erase_jax.train import init_state, make_optimizer, make_train_epoch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "configs" / "sets2sets_tafeng.yaml"
VARIANTS = ("adam", "lazy_adam")


class Variant:
    """One optimiser's model, state, compiled epoch and record."""

    def __init__(self, choice, experiment, examples, config):
        self.model = dataclasses.replace(experiment.model, history_optimizer=choice)
        self.context = self.model.prepare(examples.train)
        self.batcher = experiment.task.batcher(config, examples.train)
        optimizer = make_optimizer(config.train, self.batcher.n_batches, self.model.row_sparse_params)
        # the state is donated to each epoch and holds no best_params: two dense-size states fit in memory
        self.state = init_state(self.model, self.context, optimizer, config.seed).replace(best_params=None)
        self.epoch_fn = jax.jit(make_train_epoch(self.model, optimizer), donate_argnums=0)
        started = time.perf_counter()
        order = self.batcher.shuffled_order(config.seed, 0)
        self.epoch_fn.lower(self.state, self.context, self.batcher, order).compile()
        self.record = {"compile_seconds": time.perf_counter() - started, "epochs": [], "best_epoch": None}
        self.best = -1.0

    def train_epoch(self, config, epoch: int, evaluate) -> None:
        load = os.getloadavg()
        wall, cpu = time.perf_counter(), time.process_time()
        self.state, loss = self.epoch_fn(self.state, self.context, self.batcher, self.batcher.shuffled_order(config.seed, epoch))
        loss = float(loss)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        valid, test = (evaluate(self.model, self.state.params, self.context, phase) for phase in ("valid", "test"))
        self.record["epochs"].append({"epoch": epoch + 1, "loss": loss, "wall_seconds": wall, "cpu_seconds": cpu,
                                      "load_before": load, "load_after": os.getloadavg(),
                                      "valid": {k: round(float(valid[k]), 6) for k in METRICS},
                                      "test": {k: round(float(test[k]), 6) for k in METRICS}})
        score = float(valid[config.train.valid_metric])
        if score >= self.best:  # the test metrics of the best epoch so far (no copy of its parameters kept)
            self.best = score
            self.record["best_epoch"] = epoch + 1
            self.record["test"] = self.record["epochs"][-1]["test"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "nbr_lazy_adam_sets2sets.json"))
    args = parser.parse_args()
    if args.users < 1 or args.epochs < 1:
        raise SystemExit("--users and --epochs must be at least 1")
    load_start = os.getloadavg()
    config = load_config(str(CONFIG), [f"seed={args.seed}"])
    experiment = build_experiment(config)
    examples = sample_examples(experiment.examples, args.users, args.seed)
    rows = {"valid": examples.valid, "test": examples.test}
    evaluate = lambda model, params, context, phase: experiment.task.evaluate(model, params, context, rows[phase], config.eval)
    variants = {choice: Variant(choice, experiment, examples, config) for choice in VARIANTS}
    same_start = jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), variants["adam"].state.params,
                                           variants["lazy_adam"].state.params))
    for epoch in range(args.epochs):
        for choice in (VARIANTS if epoch % 2 == 0 else VARIANTS[::-1]):
            variants[choice].train_epoch(config, epoch, evaluate)
            print(choice, json.dumps(variants[choice].record["epochs"][-1]), flush=True)
    ratios = [{"epoch": e + 1, **{f"{kind}_dense_over_lazy": variants["adam"].record["epochs"][e][f"{kind}_seconds"]
                                  / variants["lazy_adam"].record["epochs"][e][f"{kind}_seconds"] for kind in ("wall", "cpu")}}
              for e in range(args.epochs)]
    record = {
        "provenance": provenance(config=vars(args)), "config": str(CONFIG.relative_to(ROOT)), "model": "Sets2Sets",
        "dataset": "tafeng", "users": args.users, "seed": args.seed, "epochs": args.epochs,
        "users_per_phase": {p: len(getattr(examples, p)) for p in ("train", "valid", "test")},
        "max_history_items": variants["lazy_adam"].context.max_history_items, "same_initial_params": bool(same_start),
        "dense": variants["adam"].record, "lazy": variants["lazy_adam"].record, "ratios": ratios,
        "load_average_start": load_start, "load_average_end": os.getloadavg(),
        "note": "epochs alternate between the variants in one process; a user sample trained a few epochs",
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"ratios": ratios, "dense_test": variants["adam"].record["test"],
                      "lazy_test": variants["lazy_adam"].record["test"]}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
