"""A whole request stream's cost, cold and warm compilation cache, as a multiple of one retrain.

For each model: trains it once (or reuses `--runs-dir/<model>_<dataset>`); one retrain is that
training's measured cost (epoch seconds + its compilation, evaluation excluded), i.e. what the
protocol's matched retrain of the same configuration costs. Then, for each (method, padding
policy, cache phase), a fresh process serves the scenario's stream as the `unlearn` job does
(`ej.time_stream`: shapes planned and compiled ahead of time, `RequestLoop.compile_requests`)
with JAX's persistent compilation cache in its own folder per (model, method, policy): the
"cold" phase starts it empty, the "warm" phase reuses what the cold one wrote. Reported per
stream: ahead-of-time seconds, compile seconds (in the AOT step and inside requests, measured
through jax.monitoring), per-request seconds and compile seconds (columns), median / mean
(compile included) and the stream's total as a multiple of one retrain; the per-request
diagnostics' means (e.g. CG iterations) say where per-request work goes.

    python benchmarks/stream_cost.py --dataset ml-100k --models BPR \\
        --methods scif kookmin fanchuan gif ceu idea seif --policies stream \\
        --phases cold warm --out benchmarks/results/stream_cost_ml-100k_bpr.json
    python benchmarks/stream_cost.py --dataset ml-1m-receraser --models LightGCN --epochs 5 --random-users \\
        --n-requests 2 --out benchmarks/results/stream_cost_ml-1m-receraser_lightgcn.json

`--n-requests N` serves only the first N requests (large data sets): the whole stream's cost is
then extrapolated as plan + AOT + mean request seconds x the stream's requests (marked
`extrapolated`). `benchmarks/unlearning_cost.py` times requests inside the `unlearn` job.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from train_speed import result_header, write_result  # benchmarks/ is this script's folder

SCENARIO = {"scenario": "sensitive:Horror", "fraction": 0.003, "forget_rating_threshold": 3.5}
RANDOM_USERS = {"scenario": "random:users", "fraction": 0.003, "forget_rating_threshold": None}  # data without categories


def worker(args) -> dict:
    """One stream in this process (the persistent cache at `--cache-dir`)."""
    os.environ["ERASE_JAX_COMPILATION_CACHE"] = args.cache_dir
    from erase_jax.cli import enable_compilation_cache

    enable_compilation_cache()
    import erase_jax as ej

    run = ej.load(args.run_dir)
    load_start = os.getloadavg()
    scenario = RANDOM_USERS if args.random_users else SCENARIO
    settings = {"fraction": scenario["fraction"], "forget_rating_threshold": scenario["forget_rating_threshold"]}
    stream = ej.time_stream(run, scenario["scenario"], args.method, n_requests=args.n_requests, request_shapes=args.policy,
                            **settings)
    stream["n_stream_requests"] = len(ej.requests(run, scenario["scenario"], args.method, **settings))
    stream["load_average"] = [load_start, os.getloadavg()]
    return stream


def summarise(stream: dict, retrain_seconds: float) -> dict:
    n, total = stream["n_requests"], stream["n_stream_requests"]
    whole = stream["stream_seconds"]
    if n < total:  # extrapolated from the first n requests
        whole = stream["plan_seconds"] + stream["aot_seconds"] + stream["total_seconds"] / n * total
    return {"whole_stream_seconds": whole, "extrapolated": n < total, "stream_over_retrain": whole / retrain_seconds,
            "mean_over_median": stream["mean_seconds"] / stream["median_seconds"]}


def train(model: str, dataset: str, epochs: int, runs_dir: str) -> tuple[str, dict]:
    import erase_jax as ej

    folder = Path(runs_dir) / f"{model}_{dataset}"
    run = ej.train_model([f"model={model}", f"dataset={dataset}", f"train.epochs={epochs}"], out=folder)
    timing = run.result["timing"]
    epoch_seconds = float(sum(timing["train_seconds_per_epoch"]))
    retrain = {"epochs": run.result["epochs"], "epoch_seconds": epoch_seconds,
               "compile_seconds": float(timing.get("compile_seconds", 0.0)),
               "retrain_seconds": epoch_seconds + float(timing.get("compile_seconds", 0.0))}
    return str(folder), retrain


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", nargs="+", default=["BPR", "LightGCN"])
    parser.add_argument("--methods", nargs="+", default=["scif", "kookmin", "fanchuan", "gif", "ceu", "idea", "seif"])
    parser.add_argument("--policies", nargs="+", default=["stream"], choices=["stream", "buckets"])
    parser.add_argument("--phases", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--epochs", type=int, default=30, help="training epochs of the model (and so of one retrain)")
    parser.add_argument("--random-users", action="store_true",
                        help="the random-users scenario (fraction 0.003) for data without item categories (ML-1M RecEraser)")
    parser.add_argument("--n-requests", type=int, default=None, help="serve only the first N requests (extrapolate)")
    parser.add_argument("--runs-dir", default="runs/benchmarks")
    parser.add_argument("--cache-root", default="runs/benchmarks/jax_cache")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    result = result_header(config=vars(args), scenario=RANDOM_USERS if args.random_users else SCENARIO, results={})
    for model in args.models:
        run_dir, retrain = train(model, args.dataset, args.epochs, args.runs_dir)
        entry = result["results"][model] = {"retrain": retrain, "streams": []}
        for method in args.methods:
            for policy in args.policies:
                cache_dir = Path(args.cache_root) / f"{args.dataset}_{model}_{method}_{policy}"
                for phase in args.phases:
                    if phase == "cold":
                        shutil.rmtree(cache_dir, ignore_errors=True)
                    command = [sys.executable, __file__, "--worker", "--run-dir", run_dir, "--method", method,
                               "--policy", policy, "--cache-dir", str(cache_dir)]
                    if args.random_users:
                        command.append("--random-users")
                    if args.n_requests:
                        command += ["--n-requests", str(args.n_requests)]
                    done = subprocess.run(command, capture_output=True, text=True)
                    if done.returncode != 0:
                        entry["streams"].append({"method": method, "policy": policy, "phase": phase,
                                                 "error": done.stderr.strip().splitlines()[-1:]})
                        continue
                    stream = json.loads(done.stdout.strip().splitlines()[-1])
                    row = {"method": method, "policy": policy, "phase": phase, **summarise(stream, retrain["retrain_seconds"]),
                           **stream}
                    entry["streams"].append(row)
                    print(f"{model} {method} {policy} {phase}: stream {row['whole_stream_seconds']:.1f} s = "
                          f"{row['stream_over_retrain']:.2f} retrains, median {row['median_seconds'] * 1000:.0f} ms, "
                          f"mean/median {row['mean_over_median']:.2f}, compile {row['stream_compile_seconds']:.1f} s "
                          f"({row['compilation_cache']})", file=sys.stderr, flush=True)
                    write_result(result, args.out)  # what has finished so far
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
