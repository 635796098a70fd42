"""Two source trees side by side: epoch and request times, and whether their results are equal.

    python benchmarks/layout_before_after.py --before ../old-checkout --after . \
        --out benchmarks/results/layout_before_after.json

Meant for a change that should alter structure, not behaviour (a refactor): each tree runs the
same jobs through its own command line (`python -m erase_jax.cli`, which both trees have), in
alternation, so that the load of a shared machine falls on both alike.

* Training: each case trains a fixed number of epochs (early stopping off) under each tree in
  turn, `--repeats` times; the time is the median of the per-epoch seconds the run records
  (compilation excluded). The two trees' test metrics must be bitwise equal (same seed, same
  CPU program).
* Unlearning: each method processes the request stream of one scenario from the same trained
  run under each tree in turn; the time is the median request seconds, and the rows written
  (every column but timing and memory) must be equal.

The JSON holds the machine, both commits, every measurement and the equality checks.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance  # benchmarks/ is on sys.path when run as a script

TRAIN_CASES = {  # name: (config, epochs)
    "BPR ml-100k": ("experiments/configs/bpr_ml-100k.yaml", 10),
    "LightGCN ml-100k": ("experiments/configs/lightgcn_ml-100k.yaml", 4),
    "GRU4Rec ml-100k sequences": ("experiments/configs/gru4rec_ml-100k-seq.yaml", 2),
    "SASRec ml-100k sequences": ("experiments/configs/sasrec_ml-100k-seq.yaml", 2),
}
UNLEARN_CASES = {  # trained case: methods
    "BPR ml-100k": ("scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif"),
    "SASRec ml-100k sequences": ("scif", "gif"),
}
SCENARIO = ("--scenario", "sensitive:Horror", "--fraction", "0.003")  # 98 requests on ML-100K
VOLATILE = ("second", "memory", "rss", "time", "date")  # result columns that measure the run, not the model


def run_cli(tree: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    command = [sys.executable, "-m", "erase_jax.cli", *args]
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} under {tree} failed:\n{result.stderr[-3000:]}")
    return result


def commit_of(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--", "erase_jax"], capture_output=True, text=True)
    return out.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def train(tree: Path, config: Path, epochs: int, out: Path, cwd: Path) -> dict:
    overrides = [f"train.epochs={epochs}", f"train.stopping_step={epochs + 1}"]
    args = ["train", "--config", str(config), "--out", str(out), "--overwrite", "--quiet"]
    run_cli(tree, args + [a for o in overrides for a in ("--set", o)], cwd)
    return json.loads((out / "result.json").read_text())


def unlearn(tree: Path, run_dir: Path, method: str, out: Path, cwd: Path) -> list[dict]:
    run_cli(tree, ["unlearn", "--run", str(run_dir), "--method", method, *SCENARIO, "--out", str(out), "--quiet"], cwd)
    with open(out / method / "unlearning.csv") as handle:
        return list(csv.DictReader(handle))


def stable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not any(word in k for word in VOLATILE)} for row in rows]


def request_seconds(rows: list[dict]) -> float:
    values = [float(r["request_seconds_median"]) for r in rows if r.get("request_seconds_median")]
    return statistics.median(values) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path)
    parser.add_argument("--after", default=Path("."), type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/layout_before_after.json"))
    parser.add_argument("--skip-unlearning", action="store_true")
    parser.add_argument("--training-from", type=Path, default=None,
                        help="a finished report whose training part (and trained runs, kept in its scratch folder) to reuse")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    cwd = trees["after"]
    report = {
        "provenance": provenance(config={"train": {k: v for k, v in TRAIN_CASES.items()},
                                         "unlearn": {"scenario": " ".join(SCENARIO), "cases": UNLEARN_CASES},
                                         "repeats": args.repeats}),
        "command": " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "commits": {name: commit_of(tree) for name, tree in trees.items()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_at_start": os.getloadavg(),
        "training": {},
        "unlearning": {},
    }
    previous = json.loads(args.training_from.read_text()) if args.training_from else None
    scratch = Path(previous["scratch"]) if previous else Path(tempfile.mkdtemp(prefix="layout_before_after_"))
    report["scratch"] = str(scratch)
    trained = {}
    for case, (config, epochs) in TRAIN_CASES.items():
        if previous:  # the trained runs of the earlier report, its numbers carried over
            report["training"][case] = previous["training"][case]
            trained.update({(case, name): scratch / f"{case.replace(' ', '_')}_{name}" for name in trees})
            continue
        epoch_seconds = {name: [] for name in trees}
        results = {}
        for repeat in range(args.repeats):
            order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
            for name in order:
                out = scratch / f"{case.replace(' ', '_')}_{name}"
                result = train(trees[name], cwd / config, epochs, out, cwd)
                epoch_seconds[name].extend(result["timing"]["train_seconds_per_epoch"])
                results[name] = result
                trained[(case, name)] = out
        medians = {name: statistics.median(values) for name, values in epoch_seconds.items()}
        report["training"][case] = {
            "config": config, "epochs": epochs, "repeats": args.repeats,
            "median_epoch_seconds": medians, "after_over_before": medians["after"] / medians["before"],
            "epoch_seconds": epoch_seconds,
            "test_equal": results["before"]["test"] == results["after"]["test"],
            "loss_equal": results["before"]["epoch_loss"] == results["after"]["epoch_loss"],
            "test": results["after"]["test"],
        }
        print(case, json.dumps({k: report["training"][case][k] for k in ("median_epoch_seconds", "test_equal", "loss_equal")}),
              flush=True)
        write(args.out, report)
    if not args.skip_unlearning:
        for case, methods in UNLEARN_CASES.items():
            for method in methods:
                rows, seconds = {}, {}
                for name in (["before", "after"] if len(report["unlearning"]) % 2 == 0 else ["after", "before"]):
                    out = scratch / f"unlearn_{case.replace(' ', '_')}_{method}_{name}"
                    # each tree unlearns from its own trained run (bitwise equal, checked above): a
                    # checkpoint's parameter layout belongs to the tree that wrote it
                    rows[name] = unlearn(trees[name], trained[(case, name)], method, out, cwd)
                    seconds[name] = request_seconds(rows[name])
                report["unlearning"][f"{case} {method}"] = {
                    "scenario": " ".join(SCENARIO), "median_request_seconds": seconds,
                    "after_over_before": seconds["after"] / seconds["before"],
                    "rows_equal": stable(rows["before"]) == stable(rows["after"]),
                    "rows": stable(rows["after"]),
                }
                print(case, method, json.dumps({"seconds": seconds, "rows_equal": report["unlearning"][f"{case} {method}"]["rows_equal"]}),
                      flush=True)
                write(args.out, report)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["load_average_at_end"] = os.getloadavg()
    write(args.out, report)
    return 0


def write(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2))
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
