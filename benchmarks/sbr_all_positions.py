"""Epoch time, FLOPs and quality of `sequence.objective: prefixes` against `all_positions`.

For each causal model on the ml-100k user sequences (`experiments/configs/<model>_ml-100k-seq.yaml`),
in one process on one machine, side by side:

* speed: the batches `erase-jax train` draws for each objective (`SessionBased.batcher`), one
  untimed epoch, then the median wall time of `--epochs` jitted epochs;
* FLOPs: the matmul FLOPs of the timed epochs, counted from the model's shapes and each
  batch's width (`epoch_flops`; XLA's cost analysis counts a `lax.scan` body once, so it
  cannot count an epoch), divided by the epoch time, against the measured peak of a float32
  [n, n] @ [n, n] matmul on the same CPU (`matmul_peak`);
* quality (`--quality-epochs N`): `fit` as `erase-jax train` runs it (validation on MRR@10 every
  epoch, best-validated parameters tested) for at most N epochs with all_positions, at
  `--positions-batch-size` chunk rows per batch (a chunk holds up to 50 prefixes, so RecBole's
  256 rows per batch would give about 8 steps per epoch); its test NDCG@10 and wall time.

RecBole lives in its own environment (`benchmarks/recbole_sbr_baseline.py`); without it, the
ratios in the result use the committed RecBole epoch times and say so.

    python benchmarks/sbr_all_positions.py --models GRU4Rec SASRec --epochs 2 --quality-epochs 20 \
        --out benchmarks/results/jax_sbr_all_positions_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from provenance import provenance
from train_speed import result_header, write_result

from erase_jax.batching.sequences import bucket_widths
from erase_jax.config import load_config
from erase_jax.run import build_experiment, finish_result, validation
from erase_jax.train import fit, init_state, make_optimizer, make_train_epoch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
RECBOLE_RESULTS = ROOT / "benchmarks" / "results"


def matmul_peak(n: int = 1024, repeats: int = 5) -> dict:
    """FLOP/s of a jitted float32 [n, n] @ [n, n] product (2 n^3 FLOPs), best of `repeats`."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        product(a).block_until_ready()
        best = min(best, time.perf_counter() - started)
    return {"n": n, "best_seconds": best, "flops_per_second": 2 * n**3 / best}


def batch_widths(batcher, order) -> np.ndarray:
    """The width each batch of the epoch drawn in `order` runs at (its longest row's bucket)."""
    buckets = np.asarray(batcher.row_bucket)[np.asarray(order)].reshape(batcher.n_batches, batcher.batch_size)
    return np.asarray(bucket_widths(batcher.prefixes.shape[1]))[buckets.max(axis=1)]


def forward_matmul_flops(model, n_items: int, rows: int, width: int, all_positions: bool) -> float:
    """Multiply-add FLOPs (2 per MAC) of the matmuls of one forward pass over `rows` sequences
    of `width` positions; elementwise work (gates, softmax, layer norms, dropout) is not counted.
    Prefix rows score one position per row, all-positions rows every position."""
    positions, scored = rows * width, rows * width if all_positions else rows
    if model.name == "GRU4Rec":
        d, h = model.embedding_size, model.hidden_size
        encoder = positions * 2 * (d * 3 * h + h * 3 * h) + scored * 2 * h * d
        return encoder + scored * 2 * d * n_items
    if model.name == "SASRec":
        h, inner = model.hidden_size, model.inner_size
        every_query = positions * 2 * (4 * h * h + 2 * width * h + 2 * h * inner)  # projections, attention, feed-forward
        final = every_query if all_positions else positions * 2 * 2 * h * h + rows * 2 * (2 * h * h + 2 * width * h + 2 * h * inner)
        return (model.n_layers - 1) * every_query + final + scored * 2 * h * n_items
    raise ValueError(f"no FLOP count for {model.name}")


def epoch_flops(experiment, batcher, order) -> float:
    """Training FLOPs of one epoch: 3x the forward matmuls (the backward pass has two matmuls per
    forward one), summed over the epoch's batches at their widths."""
    model, n_items = experiment.model, experiment.context.n_items
    all_positions = batcher.targets.ndim == 2
    return 3.0 * sum(forward_matmul_flops(model, n_items, batcher.batch_size, int(w), all_positions)
                     for w in batch_widths(batcher, order))


def epoch_speed(model_name: str, objective: str, epochs: int, overrides: list[str]) -> dict:
    config = load_config(CONFIGS / f"{model_name.lower()}_ml-100k-seq.yaml", [*overrides, f"sequence.objective={objective}"])
    experiment = build_experiment(config)
    batcher = experiment.task.batcher(config, experiment.examples.train)
    optimizer = make_optimizer(config.train, batcher.n_batches)
    state = init_state(experiment.model, experiment.context, optimizer, config.seed)
    started = time.perf_counter()
    compiled = make_train_epoch(experiment.model, optimizer).lower(
        state, experiment.context, batcher, batcher.shuffled_order(config.seed, 0)).compile()
    compile_seconds = time.perf_counter() - started
    times, cpu_times, losses = [], [], []
    for epoch in range(epochs + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        state, loss = compiled(state, experiment.context, batcher, batcher.shuffled_order(config.seed, epoch))
        losses.append(float(loss))
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)  # all threads; less sensitive to load
        print(f"[{model_name} {objective}] epoch {epoch} {times[-1]:.2f}s loss {losses[-1]:.4f}", file=sys.stderr, flush=True)
    median = statistics.median(times[1:])
    flops = statistics.mean(epoch_flops(experiment, batcher, batcher.shuffled_order(config.seed, e)) for e in range(1, epochs + 1))
    return {
        "objective": objective,
        "batch_size": config.train.batch_size,
        "batches_per_epoch": batcher.n_batches,
        "rows": batcher.n_rows,
        "pairs": float(jnp.sum(batcher.row_weight)),
        "compile_seconds": compile_seconds,
        "first_epoch_seconds": times[0],
        "epoch_seconds": times[1:],
        "median_epoch_seconds": median,
        "epoch_cpu_seconds": cpu_times[1:],
        "epoch_losses": losses,
        "matmul_flops_per_epoch": flops,
        "flops_per_second": flops / median,
    }


def quality(model_name: str, epochs: int, batch_size: int, overrides: list[str]) -> dict:
    config = load_config(CONFIGS / f"{model_name.lower()}_ml-100k-seq.yaml",
                         [*overrides, "sequence.objective=all_positions", f"train.epochs={epochs}",
                          f"train.batch_size={batch_size}"])
    experiment = build_experiment(config)
    batcher = experiment.task.batcher(config, experiment.examples.train)
    log = lambda info: print(f"[{model_name} quality] epoch {info['epoch']} loss {info['loss']:.4f} best {info['best']:.4f}",
                             file=sys.stderr, flush=True)
    started = time.perf_counter()
    result = fit(experiment.model, experiment.context, batcher, validation(experiment), config.train, config.seed, None, log)
    fit_seconds = time.perf_counter() - started
    record = finish_result(experiment, result)
    return {"objective": "all_positions", "batch_size": batch_size, "batches_per_epoch": batcher.n_batches,
            "max_epochs": epochs, "fit_seconds_with_validation": fit_seconds,
            **{k: v for k, v in record.items() if k not in ("data", "config")}}


def recbole_reference(model_name: str) -> dict:
    """The committed RecBole 1.2.1 numbers (another run, same data and split; not this process)."""
    reference = {}
    for name, fields in (("recbole_sbr_batches_lowload_ml-100k.json", ("extrapolated_epoch_wall_seconds",)),
                         ("recbole_sbr_quality3_ml-100k.json", ("median_epoch_seconds", "fit_seconds", "test"))):
        path = RECBOLE_RESULTS / name
        if path.is_file():
            entry = json.loads(path.read_text()).get("models", {}).get(model_name, {})
            reference[name] = {k: entry[k] for k in fields if k in entry}
    return reference


def add_flops(path: Path, overrides: list[str]) -> int:
    """Adds `epoch_flops` of the timed epochs (same configs, seed and orders) to a result that
    lacks them, with their share of its measured matmul peak, and the provenance of this step."""
    result = json.loads(path.read_text())
    peak = result["matmul_peak"]["flops_per_second"]
    for name, entry in result["models"].items():
        for objective in ("prefixes", "all_positions"):
            run = entry.get(objective)
            if run is None:
                continue
            config = load_config(CONFIGS / f"{name.lower()}_ml-100k-seq.yaml", [*overrides, f"sequence.objective={objective}"])
            experiment = build_experiment(config)
            batcher = experiment.task.batcher(config, experiment.examples.train)
            epochs = range(1, len(run["epoch_seconds"]) + 1)
            run["matmul_flops_per_epoch"] = statistics.mean(
                epoch_flops(experiment, batcher, batcher.shuffled_order(config.seed, e)) for e in epochs)
            run["flops_per_second"] = run["matmul_flops_per_epoch"] / run["median_epoch_seconds"]
            run["share_of_matmul_peak"] = run["flops_per_second"] / peak
            run.pop("xla_flops_per_epoch", None)
    result["flops_added_by"] = provenance(None)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["GRU4Rec", "SASRec"])
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per objective (after one untimed)")
    parser.add_argument("--objectives", nargs="+", choices=("prefixes", "all_positions"),
                        default=["prefixes", "all_positions"], help="which objectives to time")
    parser.add_argument("--quality-epochs", type=int, default=0, help="all_positions fit budget (0: skip)")
    parser.add_argument("--positions-batch-size", type=int, default=32, help="chunk rows per batch for the fit")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None)
    parser.add_argument("--flops-into", default=None, metavar="RESULT",
                        help="only count the epochs' matmul FLOPs and add them to RESULT (a result of this script)")
    args = parser.parse_args(argv)
    if args.flops_into:
        return add_flops(Path(args.flops_into), args.overrides)
    result = result_header(config=vars(args), matmul_peak=matmul_peak(), models={})
    peak = result["matmul_peak"]["flops_per_second"]
    for name in args.models:
        entry = {"recbole_committed": recbole_reference(name)}
        for objective in args.objectives:
            entry[objective] = epoch_speed(name, objective, args.epochs, args.overrides)
            entry[objective]["share_of_matmul_peak"] = entry[objective]["flops_per_second"] / peak
            result["models"][name] = entry
            write_result(dict(result), args.out)
        if {"prefixes", "all_positions"} <= entry.keys():
            entry["speedup_all_positions_over_prefixes"] = (
                entry["prefixes"]["median_epoch_seconds"] / entry["all_positions"]["median_epoch_seconds"])
        if args.quality_epochs:
            entry["quality"] = quality(name, args.quality_epochs, args.positions_batch_size, args.overrides)
        write_result(dict(result), args.out)
        print(f"{name}: " + ", ".join(f"{objective} {entry[objective]['median_epoch_seconds']:.2f} s"
                                      for objective in args.objectives) + " per epoch", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
