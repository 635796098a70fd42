"""Training-epoch and full-evaluation speed of the CF models, after compilation.

For each model: the time to compile one epoch, the median wall time of several training
epochs (the host-drawn row order, then one jitted call: negative sampling, forward, backward and optimiser
steps for every batch), and the median time of one full-ranking evaluation of all test users
(scores over all items in user blocks, history masked, top-k, metrics). Compilation is
reported separately and never included in the medians.

    python benchmarks/train_speed.py --dataset ml-1m-receraser --models BPR LightGCN SGL \
        --out benchmarks/results/jax_speed_ml-1m-receraser.json

Compare with `benchmarks/recbole_baseline.py --mode speed`, which measures RecBole 1.2.1 on
the same split, batch size and machine. Run both on a quiet machine: the 2 cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
from provenance import provenance  # benchmarks/ is this script's folder

from erase_jax.batching.cf import CFBatcher
from erase_jax.config import load_config
from erase_jax.run import build_experiment, evaluate_params
from erase_jax.train import init_state, make_optimizer, make_train_epoch


def result_header(config=None, **entries) -> dict:
    """The fields every benchmark result starts with: provenance (command, config, commit, machine,
    date; `provenance.py`) and the load average."""
    return {
        "provenance": provenance(config),
        "load_average_start": os.getloadavg(),
        **entries,
    }


def write_result(result: dict, out: str | None) -> None:
    """Adds the closing load average, then writes the JSON to `out` (or prints it)."""
    result["load_average_end"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    else:
        print(text)


def seconds(fn) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - started


def measure(model_name: str, dataset: str, batch_size: int, epochs: int, evals: int, overrides: list[str]) -> dict:
    config = load_config(None, [f"model={model_name}", f"dataset={dataset}", f"train.batch_size={batch_size}", *overrides])
    build_started = time.perf_counter()
    experiment = build_experiment(config)
    build_seconds = time.perf_counter() - build_started
    batcher = CFBatcher.build(experiment.examples.train, batch_size)
    optimizer = make_optimizer(config.train, batcher.n_batches)
    state = init_state(experiment.model, experiment.context, optimizer, config.seed)
    train_epoch = make_train_epoch(experiment.model, optimizer)

    started = time.perf_counter()
    compiled = train_epoch.lower(state, experiment.context, batcher, batcher.shuffled_order(config.seed, 0)).compile()
    compile_seconds = time.perf_counter() - started
    epoch_seconds = []
    for epoch in range(epochs + 1):  # the first run also pays one-off allocations: not timed
        started = time.perf_counter()
        order = batcher.shuffled_order(config.seed, epoch)
        state, loss = compiled(state, experiment.context, batcher, order)
        float(loss)
        epoch_seconds.append(time.perf_counter() - started)
    epoch_seconds = epoch_seconds[1:]

    params = state.params
    first_eval = seconds(lambda: evaluate_params(experiment, params, "test")["recall@20"])
    eval_seconds = [seconds(lambda: evaluate_params(experiment, params, "test")["recall@20"]) for _ in range(evals)]
    return {
        "model": model_name,
        "dataset": dataset,
        "batch_size": batch_size,
        "batches_per_epoch": batcher.n_batches,
        "n_train": len(experiment.examples.train),
        "n_test_users": len(experiment.examples.test.users),
        "data_build_seconds": build_seconds,
        "compile_seconds": compile_seconds,
        "epoch_seconds": epoch_seconds,
        "median_epoch_seconds": statistics.median(epoch_seconds),
        "first_eval_seconds_with_compile": first_eval,
        "eval_seconds": eval_seconds,
        "median_eval_seconds": statistics.median(eval_seconds),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-receraser")
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN", "SGL"])
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per model (after one untimed)")
    parser.add_argument("--evals", type=int, default=3, help="timed evaluations per model")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)

    result = result_header(config=vars(args), models={})
    for name in args.models:
        result["models"][name] = measure(name, args.dataset, args.batch_size, args.epochs, args.evals, args.overrides)
        m = result["models"][name]
        print(f"{name}: epoch {m['median_epoch_seconds']:.3f} s (compile {m['compile_seconds']:.1f} s), "
              f"full evaluation {m['median_eval_seconds']:.3f} s", file=sys.stderr)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
