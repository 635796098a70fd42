"""Training-epoch and evaluation speed of the session-based models, after compilation.

For each model, on the configuration's data (default: the ml-100k user sequences of
`experiments/configs/<model>_ml-100k-seq.yaml`): the time to compile one epoch, the wall
time of several training epochs (host-drawn order, then one jitted call: gather the bucketed
batches, forward, backward and Adam for every batch) and of full-ranking evaluations of all
test prefixes (scores over all items per bucket block, top-k, metrics). The first epoch and
the first evaluation also pay one-off costs and are reported apart from the timed ones.

    python benchmarks/sbr_speed.py --models GRU4Rec NARM SASRec SRGNN \
        --out benchmarks/results/jax_sbr_speed_ml-100k.json

Compare with `benchmarks/recbole_sbr_baseline.py --mode speed` (RecBole 1.2.1, same data,
split, batch size and machine). The CPU is shared: the result records the load average.

`--quality N` instead trains each model for at most N epochs as `erase-jax train` does
(`fit`: validation every epoch, the best-validated parameters tested), optionally with
RecBole's length-mixed batches (`--mix-lengths`), which `erase-jax train` does not draw yet:

    python benchmarks/sbr_speed.py --models GRU4Rec SASRec --quality 3 --mix-lengths \
        --out benchmarks/results/jax_sbr_quality3_mixed_ml-100k.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from train_speed import result_header, seconds, write_result

from erase_jax.batching.sequences import SequenceBatcher
from erase_jax.config import load_config
from erase_jax.run import build_experiment, evaluate_params, finish_result, validation
from erase_jax.train import fit, init_state, make_optimizer, make_train_epoch

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def measure(model_name: str, epochs: int, evals: int, overrides: list[str]) -> dict:
    config = load_config(CONFIGS / f"{model_name.lower()}_ml-100k-seq.yaml", overrides)
    started = time.perf_counter()
    experiment = build_experiment(config)
    build_seconds = time.perf_counter() - started
    batcher = SequenceBatcher.build(experiment.examples.train, config.train.batch_size)
    optimizer = make_optimizer(config.train, batcher.n_batches)
    state = init_state(experiment.model, experiment.context, optimizer, config.seed)
    train_epoch = make_train_epoch(experiment.model, optimizer)

    started = time.perf_counter()
    compiled = train_epoch.lower(state, experiment.context, batcher, batcher.shuffled_order(config.seed, 0)).compile()
    compile_seconds = time.perf_counter() - started
    epoch_seconds, epoch_cpu_seconds, losses = [], [], []
    for epoch in range(epochs + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        state, loss = compiled(state, experiment.context, batcher, batcher.shuffled_order(config.seed, epoch))
        losses.append(float(loss))  # waits for the epoch
        epoch_seconds.append(time.perf_counter() - started)
        epoch_cpu_seconds.append(time.process_time() - cpu_started)  # all threads; less sensitive to load
        print(f"[{model_name}] epoch {epoch} {epoch_seconds[-1]:.2f}s loss {losses[-1]:.4f}", file=sys.stderr, flush=True)

    params = state.params
    first_eval = seconds(lambda: evaluate_params(experiment, params, "test")["ndcg@10"])
    eval_seconds = [seconds(lambda: evaluate_params(experiment, params, "test")["ndcg@10"]) for _ in range(evals)]
    return {
        "model": model_name,
        "config": f"experiments/configs/{model_name.lower()}_ml-100k-seq.yaml",
        "batch_size": config.train.batch_size,
        "batches_per_epoch": batcher.n_batches,
        "rows_per_bucket": dict(zip(map(str, (8, 16, 32, 50)), batcher.bucket_sizes)),
        "n_train_rows": len(experiment.examples.train),
        "n_test_rows": len(experiment.examples.test),
        "data_build_seconds": build_seconds,
        "compile_seconds": compile_seconds,
        "first_epoch_seconds": epoch_seconds[0],
        "epoch_seconds": epoch_seconds[1:],
        "median_epoch_seconds": statistics.median(epoch_seconds[1:]),
        "epoch_cpu_seconds": epoch_cpu_seconds[1:],
        "epoch_losses": losses,
        "first_eval_seconds_with_compile": first_eval,
        "eval_seconds": eval_seconds,
        "median_eval_seconds": statistics.median(eval_seconds),
        "test_after_timed_epochs": evaluate_params(experiment, params, "test"),
    }


def train_quality(model_name: str, epochs: int, mix_lengths: bool, overrides: list[str]) -> dict:
    """`erase-jax train` for at most `epochs` epochs (no checkpoints), with the batches chosen."""
    config = load_config(CONFIGS / f"{model_name.lower()}_ml-100k-seq.yaml", [*overrides, f"train.epochs={epochs}"])
    experiment = build_experiment(config)
    batcher = SequenceBatcher.build(experiment.examples.train, config.train.batch_size, mix_lengths=mix_lengths)
    log = lambda info: print(f"[{model_name}] epoch {info['epoch']} loss {info['loss']:.4f} best {info['best']:.4f}",
                             file=sys.stderr, flush=True)
    result = fit(experiment.model, experiment.context, batcher, validation(experiment), config.train, config.seed,
                 None, log)
    record = finish_result(experiment, result)
    return {"mix_lengths": mix_lengths, "batches_per_epoch": batcher.n_batches,
            **{k: v for k, v in record.items() if k not in ("data", "config")}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["GRU4Rec", "NARM", "SASRec", "SRGNN"])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per model (after one untimed)")
    parser.add_argument("--evals", type=int, default=3, help="timed evaluations per model")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    parser.add_argument("--quality", type=int, default=None, metavar="EPOCHS",
                        help="train to at most EPOCHS epochs and test the best-validated parameters instead")
    parser.add_argument("--mix-lengths", action="store_true", help="with --quality: RecBole's length-mixed batches")
    args = parser.parse_args(argv)

    result = result_header(config=vars(args), models={})
    if args.quality:
        for name in args.models:
            result["models"][name] = train_quality(name, args.quality, args.mix_lengths, args.overrides)
            test = result["models"][name]["test"]
            print(f"{name}: test ndcg@10 {test['ndcg@10']:.4f} mrr@10 {test['mrr@10']:.4f} "
                  f"recall@20 {test['recall@20']:.4f}", file=sys.stderr)
            write_result(dict(result), args.out)
        return 0
    for name in args.models:
        result["models"][name] = measure(name, args.epochs, args.evals, args.overrides)
        m = result["models"][name]
        print(f"{name}: epoch {m['median_epoch_seconds']:.3f} s (compile {m['compile_seconds']:.1f} s), "
              f"test evaluation {m['median_eval_seconds']:.3f} s", file=sys.stderr)
        write_result(dict(result), args.out)  # after every model, so a long run keeps what it measured
    return 0


if __name__ == "__main__":
    sys.exit(main())
