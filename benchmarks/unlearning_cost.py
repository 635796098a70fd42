"""Per-request cost of unlearning methods over a real request stream, and HVP cost.

For each (model, method): trains the model once (or reuses `--runs-dir/<model>`), runs the
sequential protocol on the given scenario and reports per-request wall seconds (median, p90,
mean, max; the first request of each padded shape includes its compilation, so the median is
the steady-state cost and the mean shows compilation amortised over the stream), and the
per-request cost relative to one full retrain of the same model. It also times one
Hessian-vector product against one gradient of the same loss.

    python benchmarks/unlearning_cost.py --dataset ml-100k --models BPR LightGCN \
        --methods scif --scenario sensitive:Horror --fraction 0.003 --rating-threshold 3.5 \
        --out benchmarks/results/unlearning_cost_ml-100k.json

Whole streams with their compilation apart (ahead of time, cold and warm persistent cache) and
as a multiple of one retrain: `benchmarks/stream_cost.py`.

Compare: the original (PyTorch) needs a median 0.60 s per SCIF request on this workload with
BPR on the same kind of machine (shared/specs/unlearning-algorithms.md, reference timings).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
from train_speed import (  # benchmarks/ is this script's folder
    result_header,
    write_result,
)

from erase_jax.config import load_config
from erase_jax.run import load_run, train_run
from erase_jax.unlearn.influence.hvp import hvp
from erase_jax.unlearn.protocol.jobs import unlearn
from erase_jax.unlearn.protocol.run import UnlearnConfig


def hvp_versus_gradient(run_dir: Path, repeats: int = 20) -> dict:
    """Seconds of one gradient and one HVP of the model's loss on a 2048-row training batch."""
    experiment, params = load_run(run_dir)
    train = experiment.examples.train
    rng = np.random.default_rng(0)
    rows = rng.integers(0, len(train), 2048)
    batch = {
        "users": jax.numpy.asarray(train.users[rows]),
        "pos": jax.numpy.asarray(train.items[rows]),
        "neg": jax.numpy.asarray(rng.integers(0, train.n_items, 2048).astype(np.int32)),
        "weight": jax.numpy.ones(2048),
    }
    key = jax.random.PRNGKey(0)

    def loss(p):
        return experiment.model.loss(p, experiment.context, batch, key)

    gradient = jax.jit(jax.grad(loss))
    product = jax.jit(lambda p, v: hvp(loss, p, v))
    vector = jax.tree.map(lambda x: jax.numpy.ones_like(x) * 1e-3, params)

    def timed(fn):
        jax.block_until_ready(fn())
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            jax.block_until_ready(fn())
            samples.append(time.perf_counter() - started)
        return statistics.median(samples)

    grad_seconds = timed(lambda: gradient(params))
    hvp_seconds = timed(lambda: product(params, vector))
    return {"gradient_seconds": grad_seconds, "hvp_seconds": hvp_seconds, "hvp_over_gradient": hvp_seconds / grad_seconds}


def request_stats(rows: list[dict]) -> dict:
    seconds = np.array([r["seconds"] for r in rows if "seconds" in r])
    method = np.array([r["method_seconds"] for r in rows if "method_seconds" in r])
    return {
        "n_requests": int(len(seconds)),
        "median": float(np.median(seconds)),
        "p90": float(np.percentile(seconds, 90)),
        "mean": float(seconds.mean()),
        "max": float(seconds.max()),
        "method_median": float(np.median(method)),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN"])
    parser.add_argument("--methods", nargs="+", default=["scif"])
    parser.add_argument("--scenario", default="sensitive:Horror")
    parser.add_argument("--fraction", type=float, default=0.003)
    parser.add_argument("--rating-threshold", type=float, default=3.5)
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of the model to unlearn from")
    parser.add_argument("--runs-dir", default="runs/benchmarks")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    name, _, category = args.scenario.partition(":")
    result = result_header(config=vars(args), results={})
    for model in args.models:
        run_dir = Path(args.runs_dir) / f"{model}_{args.dataset}"
        config = load_config(None, [f"model={model}", f"dataset={args.dataset}", f"train.epochs={args.epochs}"])
        trained = train_run(config, run_dir, quiet=True)
        train_seconds = float(sum(trained["timing"]["train_seconds_per_epoch"]))
        entry = {"train_seconds": train_seconds, "epochs": trained["epochs"], **hvp_versus_gradient(run_dir)}
        for method in args.methods:
            unlearn_config = UnlearnConfig(
                method=method, scenario=name, category=category or None,
                fraction=args.fraction, forget_rating_threshold=args.rating_threshold,
            )
            out = run_dir / "unlearn" / f"bench_{method}"
            unlearn(run_dir, unlearn_config, str(out), quiet=True)
            requests = json.loads((out / method / "unlearning.json").read_text())["requests"]
            stats = request_stats(requests)
            stats["median_over_train_seconds"] = stats["median"] / train_seconds
            entry[method] = stats
            print(f"{model} {method}: median {stats['median'] * 1000:.1f} ms, mean {stats['mean'] * 1000:.1f} ms "
                  f"over {stats['n_requests']} requests", file=sys.stderr)
        result["results"][model] = entry
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
