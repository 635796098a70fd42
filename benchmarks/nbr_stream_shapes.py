"""Next-basket request streams under the "buckets" and "stream" request-shape policies, side by side.

On a trained next-basket run (the Ta-Feng DNNTSP of `experiments/nbr_unlearning_tafeng.py`),
for each method and policy a fresh process serves the scenario's first `--n-requests` requests
as the `unlearn` job does (shapes planned, those of the served requests compiled ahead of time, then
the requests), with JAX's persistent compilation cache in an empty folder of its own (cold), the
policies alternating within each method. Reported per stream: the planned shapes, compilations
(count and seconds, in the ahead-of-time step and inside requests), per-request seconds, and the
whole stream's seconds.

    python benchmarks/nbr_stream_shapes.py --run /work/runs/nbrU/DNNTSP/run --methods scif gif \\
        --n-requests 2 --out benchmarks/results/nbr_stream_shapes_tafeng.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from train_speed import result_header, write_result  # benchmarks/ is this script's folder

from erase_jax.unlearn.protocol.shapes import committed, compile_stream, plan_shapes

SCENARIO = {"scenario": "random:users", "fraction": 0.003}  # the protocol's random scenario on Ta-Feng


def worker(args) -> dict:
    """The first `--n-requests` requests in this process (its persistent cache at `--cache-dir`):
    the stream's plan, its shapes among those requests compiled ahead of time (`compile_stream`
    on the plan cut to them: "buckets" would otherwise compile every width of the whole stream
    first), then the requests as the `unlearn` job serves them."""
    os.environ["ERASE_JAX_COMPILATION_CACHE"] = args.cache_dir
    from erase_jax.cli import enable_compilation_cache

    enable_compilation_cache()
    import erase_jax as ej

    run = ej.load(args.run)
    load_start = os.getloadavg()
    loop = ej.requests(run, SCENARIO["scenario"], args.method, request_shapes=args.policy, fraction=SCENARIO["fraction"])
    started = time.perf_counter()
    loop.params, loop.method_state = committed((loop.params, loop.method_state))
    plan = plan_shapes(loop, args.policy)
    loop.plan = dataclasses.replace(plan, requests=plan.requests[:args.n_requests])
    plan_seconds = time.perf_counter() - started
    aot = compile_stream(loop, loop.plan)
    rows = [row for row in loop.take(args.n_requests) if "seconds" in row]
    seconds = [row["seconds"] for row in rows]
    in_requests = [row["compile_seconds"] for row in rows]
    return {"method": args.method, "policy": args.policy, "n_requests": len(rows), "n_stream_requests": len(plan.requests),
            "served_shapes": aot["shapes"], "n_shapes_whole_stream": len(plan.shapes), "plan_seconds": plan_seconds,
            "aot_seconds": aot["aot_seconds"], "aot_compile_seconds": aot["compile_seconds"], "aot_n_compiles": aot["n_compiles"],
            "compilation_cache": aot["compilation_cache"], "seconds": seconds, "compile_seconds_in_requests": in_requests,
            "n_compiles_in_requests": int(sum(row["n_compiles"] for row in rows)),
            "method_seconds": [row["method_seconds"] for row in rows],
            "served_seconds": plan_seconds + aot["aot_seconds"] + sum(seconds),
            "load_average": [load_start, os.getloadavg()]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a trained next-basket run folder")
    parser.add_argument("--methods", nargs="+", default=["scif", "gif"])
    parser.add_argument("--policies", nargs="+", default=["stream", "buckets"], choices=["stream", "buckets"])
    parser.add_argument("--n-requests", type=int, default=4)
    parser.add_argument("--cache-root", default="runs/benchmarks/nbr_stream_cache")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    result = result_header(config=vars(args), scenario=SCENARIO, streams=[])
    for method in args.methods:
        for policy in args.policies:
            cache_dir = Path(args.cache_root) / f"{method}_{policy}"
            shutil.rmtree(cache_dir, ignore_errors=True)  # cold
            command = [sys.executable, __file__, "--worker", "--run", args.run, "--method", method, "--policy", policy,
                       "--n-requests", str(args.n_requests), "--cache-dir", str(cache_dir)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                result["streams"].append({"method": method, "policy": policy,
                                          "error": done.stderr.strip().splitlines()[-3:]})
            else:
                stream = json.loads(done.stdout.strip().splitlines()[-1])
                result["streams"].append({"phase": "cold", **stream})
                print(f"{method} {policy}: {stream['aot_n_compiles']} compiles ahead ({stream['aot_seconds']:.0f} s), "
                      f"{stream['n_compiles_in_requests']} in requests, requests {stream['seconds']}", file=sys.stderr, flush=True)
            write_result(result, args.out)  # what has finished so far
    return 0


if __name__ == "__main__":
    sys.exit(main())
