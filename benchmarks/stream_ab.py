"""One method's request stream under an earlier commit and under this tree, alternated, cold cache.

    python benchmarks/stream_ab.py --before a27ddb8 --run-dir runs/benchmarks/BPR_ml-100k \\
        --method kookmin --repeats 2 --out benchmarks/results/stream_ab_ml-100k_bpr_kookmin.json
    python benchmarks/stream_ab.py --before 587360c --run-dir runs/benchmarks/BPR_ml-100k --method kookmin \
        --repeats 3 --label "kookmin, phases as compiled loops" \
        --out benchmarks/results/stream_ab_ml-100k_bpr_kookmin_phases.json

For a change to one method's compilation or per-request work, measured as a ratio on a loaded
machine: the earlier commit is extracted with `git archive` into a temporary folder, then each
repeat serves the whole stream once with the earlier code and once with this tree's, each in a
fresh process through that tree's own `benchmarks/stream_cost.py` worker, with an empty
persistent compilation cache (cold), so the load falls on both alike. `--run-dir` is a trained
run (e.g. the one `stream_cost.py` trains). Recorded per stream: AOT and compile seconds, XLA
programs, median, mean (compile included) and method median seconds, mean / median, the stream's
total and the per-request diagnostics' means; and, per side, the medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from train_speed import result_header, write_result  # benchmarks/ is this script's folder

HERE = Path(__file__).resolve().parents[1]
KEPT = ("aot_seconds", "stream_compile_seconds", "n_compiles", "n_compiles_in_requests", "median_seconds",
        "mean_seconds", "method_median_seconds", "total_seconds", "stream_seconds", "n_requests", "diagnostics_mean",
        "load_average")


def serve(tree: Path, run_dir: str, method: str, random_users: bool) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        command = [sys.executable, str(tree / "benchmarks" / "stream_cost.py"), "--worker", "--run-dir", run_dir,
                   "--method", method, "--policy", "stream", "--cache-dir", cache] + (["--random-users"] if random_users else [])
        # the earlier tree lies in a temporary folder: both read this tree's data root
        data_root = os.environ.get("ERASE_JAX_DATA") or str(HERE.parent / "shared" / "data")
        env = {**os.environ, "PYTHONPATH": str(tree), "ERASE_JAX_DATA": data_root}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tree)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:]}
    stream = json.loads(done.stdout.strip().splitlines()[-1])
    return {**{key: stream[key] for key in KEPT}, "mean_over_median": stream["mean_seconds"] / stream["median_seconds"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit (any git revision of this repository)")
    parser.add_argument("--run-dir", required=True, help="a trained run (absolute or relative to this tree)")
    parser.add_argument("--method", required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--random-users", action="store_true", help="stream_cost.py's random-users scenario")
    parser.add_argument("--label", default=None, help="what changed, in a few words (the results page's summary)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    run_dir = str(Path(args.run_dir).resolve())
    before_commit = subprocess.run(["git", "rev-parse", "--short", args.before], capture_output=True, text=True,
                                   cwd=HERE, check=True).stdout.strip()
    result = result_header(config=vars(args), before_commit=before_commit, streams=[])
    with tempfile.TemporaryDirectory() as folder:
        before = Path(folder)
        archive = subprocess.run(["git", "archive", before_commit], capture_output=True, cwd=HERE, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        for repeat in range(args.repeats):
            for side, tree in (("before", before), ("after", HERE)):
                row = {"side": side, "repeat": repeat, **serve(tree, run_dir, args.method, args.random_users)}
                result["streams"].append(row)
                if "error" not in row:
                    print(f"{side} {repeat}: AOT {row['aot_seconds']:.1f} s, median {row['median_seconds'] * 1e3:.0f} ms, "
                          f"mean/median {row['mean_over_median']:.2f}", file=sys.stderr, flush=True)
                write_result(result, args.out)
    keys = ("aot_seconds", "median_seconds", "method_median_seconds", "mean_over_median", "total_seconds")
    result["medians"] = {side: {key: statistics.median(r[key] for r in result["streams"] if r["side"] == side and key in r)
                                for key in keys} for side in ("before", "after")}
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
