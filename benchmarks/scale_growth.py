"""How the costs grow from ML-100K to ML-1M to ML-20M size, and with a 1M-item catalogue.

For each size the synthetic generator (`erase_jax.data.synthetic`, chronological 80/10/10
split) makes a data set with that many users, items and interactions; then, for BPR and
LightGCN: the compile time and wall time of one training epoch, one full-ranking evaluation of
every test user (cold, then warm), one SCIF and one GIF request (cold, then warm), and the
process's peak resident memory after each phase (`ru_maxrss`, cumulative: data first).

Where a full epoch would take too long (LightGCN propagates the whole graph at every step),
`--max-batches` times that many batches of the epoch and extrapolates to the whole epoch
(`epoch_extrapolated: true`, `timed_batches` says how many). Each size runs in its own process,
so the peak memory of one size does not hide another's.

    python benchmarks/scale_growth.py --sizes ml-100k ml-1m ml-20m catalogue-1m \
        --out benchmarks/results/scale_growth.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from train_speed import result_header, write_result  # benchmarks/ is this script's folder

from erase_jax.batching.cf import CFBatcher
from erase_jax.config import load_config
from erase_jax.run import build_experiment, evaluate_params
from erase_jax.train import init_state, make_optimizer, make_train_epoch
from erase_jax.unlearn.methods.base import RequestData, build_method

# users, items, interactions per user (the real data sets' counts; the catalogue: 1M items)
SIZES = {
    "ml-100k": (943, 1682, 100_000 / 943),
    "ml-1m": (6040, 3706, 1_000_209 / 6040),
    "ml-20m": (138_493, 26_744, 20_000_263 / 138_493),
    "catalogue-1m": (1024, 1_000_000, 100.0),
}
MODELS = ("BPR", "LightGCN")
METHODS = ("scif", "gif")


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def timed(fn):
    started = time.perf_counter()
    value = jax.block_until_ready(fn())
    return value, time.perf_counter() - started


def train_epoch_cost(experiment, batch_size: int, max_batches: int | None) -> tuple[dict, object]:
    """Compile and run one epoch (or its first `max_batches` batches, extrapolated)."""
    config, model = experiment.config, experiment.model
    batcher = CFBatcher.build(experiment.examples.train, batch_size)
    full_batches = batcher.n_batches
    if max_batches is not None and max_batches < full_batches:
        rows = max_batches * batch_size  # the negatives still avoid every training positive
        pick = np.random.default_rng(config.seed).permutation(batcher.users.shape[0])[:rows]
        batcher = dataclasses.replace(
            batcher, users=batcher.users[pick], items=batcher.items[pick], row_weight=batcher.row_weight[pick]
        )
    optimizer = make_optimizer(config.train, full_batches)
    state = init_state(model, experiment.context, optimizer, config.seed)
    train_epoch = make_train_epoch(model, optimizer)
    order = batcher.shuffled_order(config.seed, 0)
    compiled, compile_seconds = timed(lambda: train_epoch.lower(state, experiment.context, batcher, order).compile())
    (state, loss), seconds = timed(lambda: compiled(state, experiment.context, batcher, order))
    return {
        "batches_per_epoch": full_batches,
        "timed_batches": batcher.n_batches,
        "epoch_extrapolated": batcher.n_batches < full_batches,
        "compile_seconds": compile_seconds,
        "epoch_seconds": seconds * full_batches / batcher.n_batches,
        "loss": float(loss),
        "peak_rss_gb": peak_rss_gb(),
    }, state.params


def request_cost(experiment, params, method_name: str) -> dict:
    """One request of the user with the median training-row count: a third of its rows removed;
    the same request twice (cold: compilation included; warm)."""
    task, model = experiment.task, experiment.model
    request_rows = task.request_rows(experiment)
    inter, train_rows = experiment.data.interactions, experiment.data.split.train
    counts = np.bincount(inter.users[train_rows], minlength=inter.n_users)
    user = int(np.argsort(counts)[len(counts) // 2])
    user_rows = request_rows.user_rows.gather(np.array([user]))
    removed = np.zeros(len(inter.users), bool)
    removed[user_rows[::3]] = True
    method = build_method(method_name)
    rng = np.random.default_rng(0)
    retain_rows = rng.choice(train_rows, method.retain_budget(len(user_rows)), replace=False)
    before = request_rows.context(np.zeros(len(inter.users), bool))
    after = request_rows.context(removed)
    forget, clean, retain = request_rows.request_batches(
        np.array([user]), removed, retain_rows, jax.random.PRNGKey(0), with_clean=True
    )
    request = RequestData(
        0, np.array([user]), forget, clean, retain, len(user_rows), int(removed.sum()), before, after,
        removed_rows=np.flatnonzero(removed), experiment=experiment, n_train_rows=len(train_rows) - int(removed.sum()),
    )
    state = method.init(model, params)
    seconds = [timed(lambda: method.unlearn(model, params, state, request, jax.random.PRNGKey(i))[0])[1] for i in range(2)]
    return {"user_rows": len(user_rows), "removed": int(removed.sum()), "cold_seconds": seconds[0],
            "warm_seconds": seconds[1], "peak_rss_gb": peak_rss_gb()}


def report(result: dict) -> None:
    """Prints the result so far as one JSON line: what the parent keeps if this process dies."""
    print(json.dumps(result), flush=True)


def measure_size(size: str, model_name: str, batch_size: int, max_batches: int | None, methods, cache: Path):
    """Measures one (size, model), reporting the result after every phase (`report`)."""
    n_users, n_items, per_user = SIZES[size]
    config = load_config(None, [
        f"model={model_name}", "dataset=synthetic", f"train.batch_size={batch_size}",
        f"data.synthetic={{n_users: {n_users}, n_items: {n_items}, avg_interactions: {per_user}}}",
    ])
    cached = cache / f"{size}.pickle"  # the same generated data for every model of a size
    data = pickle.loads(cached.read_bytes()) if cached.exists() else None
    experiment, build_seconds = timed(lambda: build_experiment(config, data))
    if data is None:
        cache.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(pickle.dumps(experiment.data, protocol=pickle.HIGHEST_PROTOCOL))
    inter = experiment.data.interactions
    result = {
        "model": model_name, "size": size, "n_users": inter.n_users, "n_items": inter.n_items,
        "n_interactions": len(inter.users), "n_train": len(experiment.examples.train),
        "n_test_users": len(experiment.examples.test.users), "data_build_seconds": build_seconds,
        "data_generated": data is None,
        "peak_rss_gb_after_data": peak_rss_gb(),
    }
    report(result)
    result["train"], params = train_epoch_cost(experiment, batch_size, max_batches)
    report(result)
    evaluation = [timed(lambda: evaluate_params(experiment, params, "test")["recall@20"]) for _ in range(2)]
    result["evaluation"] = {"cold_seconds": evaluation[0][1], "warm_seconds": evaluation[1][1],
                            "recall@20": float(evaluation[1][0]), "peak_rss_gb": peak_rss_gb()}
    result["requests"] = {}
    for name in methods:
        report(result)
        try:
            result["requests"][name] = request_cost(experiment, params, name)
        except Exception as error:  # recorded, not hidden: what did not fit and why
            result["requests"][name] = {"failed": f"{type(error).__name__}: {str(error)[:300]}"}
    result["peak_rss_gb"] = peak_rss_gb()
    report(result)


def run_capped(command: list[str], cap_gb: float, row: dict) -> dict:
    """Runs one child; stops it when its resident memory passes `cap_gb`. Returns its last
    reported result (what it finished), with `stopped` saying why it ended early, if it did."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        while child.poll() is None:
            if resident_gb(child.pid) > cap_gb:
                child.kill()
                row["stopped"] = f"resident memory passed {cap_gb} GB"
            time.sleep(0.5)
        out.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
        if lines:
            row = {**json.loads(lines[-1]), **row}
        if child.returncode != 0 and "stopped" not in row:
            err.seek(0)
            row["stopped"] = (err.read().strip().splitlines() or ["exit status %d" % child.returncode])[-1][:400]
    return row


def resident_gb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return kib / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--max-batches", type=int, default=None, help="LightGCN: batches timed per epoch")
    parser.add_argument("--memory-cap-gb", type=float, default=6.0, help="a child above it is stopped")
    parser.add_argument("--cache", default="/tmp/erase_jax_scale_growth", help="folder for the generated data")
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "MODEL"), help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)
    if args.one:
        size, model = args.one
        max_batches = args.max_batches if model != "BPR" else None
        measure_size(size, model, args.batch_size, max_batches, args.methods, Path(args.cache))
        return 0

    result = result_header(config=vars(args), rows=[])
    for size in args.sizes:
        for model in args.models:
            command = [sys.executable, __file__, "--one", size, model, "--batch-size", str(args.batch_size),
                       "--cache", args.cache, "--methods", *args.methods]
            if args.max_batches is not None:
                command += ["--max-batches", str(args.max_batches)]
            result["rows"].append(run_capped(command, args.memory_cap_gb, {"model": model, "size": size}))
            row = result["rows"][-1]
            print(json.dumps(row)[:400], file=sys.stderr)
            if args.out:  # partial results survive a later size that does not finish
                write_result(dict(result), args.out)
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
