"""RecBole's and erase-jax's session-based training epochs, side by side in one run.

For each round and each model, one after the other on the same machine: RecBole 1.2.1's first
`--recbole-batches` training batches (its own virtual environment, `recbole_sbr_baseline.py
--mode batches`, extrapolated to its 313-batch epoch), with the first `--recbole-threads` value
every round and the others in the first round only (torch with 2 threads spin-waits when other
jobs hold the cores, 1 thread does not), then erase-jax's `all_positions` epochs
(`sbr_all_positions.py --objectives all_positions`: one compiled epoch function, one untimed
epoch, then `--jax-epochs` timed ones). Each runs in its own process; the ratio of a round is
RecBole's extrapolated epoch over erase-jax's median epoch of the same round, in wall seconds and
in CPU seconds (both processes count the CPU time of all their threads). Round after round the
two alternate, so a change of the machine's load lands on both; the summary gives each model's
median, minimum and maximum ratio over the rounds. The first round also times erase-jax's
default `prefixes` epochs (`--prefixes-epochs`, for reference; 0 skips them).

Every subprocess records its command, the 1-minute load average before and after, and its own
result (with its provenance block); the run records the machine, commit and command.

    python benchmarks/sbr_side_by_side.py --models GRU4Rec SASRec --rounds 3 \\
        --out benchmarks/results/sbr_side_by_side_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from provenance import provenance

ROOT = Path(__file__).resolve().parents[1]
RECBOLE_PYTHON = Path("/work/recbole-venv/bin/python")


def run_step(command: list[str], out: Path, env: dict | None = None) -> dict:
    """Runs `command` (which writes its JSON result to `out`) and returns that result's entry with
    the command, wall time of the whole process and the load average around it."""
    load_start, started = os.getloadavg(), time.perf_counter()
    completed = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return {"command": shlex.join(command), "process_wall_seconds": time.perf_counter() - started,
            "load_average_start": load_start, "load_average_end": os.getloadavg(),
            "result": json.loads(out.read_text())}


def recbole_step(python: Path, model: str, batches: int, threads: int, work_dir: Path, scratch: Path) -> dict:
    out = scratch / f"recbole_{model}.json"
    out.unlink(missing_ok=True)
    step = run_step([str(python), "benchmarks/recbole_sbr_baseline.py", "--mode", "batches", "--models", model,
                     "--batches", str(batches), "--threads", str(threads), "--work-dir", str(work_dir), "--out", str(out)],
                    out, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    entry = step.pop("result")["models"][model]
    return {**step, "epoch_wall_seconds": entry["extrapolated_epoch_wall_seconds"],
            "epoch_cpu_seconds": entry["extrapolated_epoch_cpu_seconds"], "recbole": entry}


def jax_step(model: str, objective: str, epochs: int, scratch: Path) -> dict:
    out = scratch / f"jax_{model}_{objective}.json"
    out.unlink(missing_ok=True)
    step = run_step([sys.executable, "benchmarks/sbr_all_positions.py", "--models", model, "--objectives", objective,
                     "--epochs", str(epochs), "--out", str(out)], out, {"PYTHONPATH": str(ROOT)})
    result = step.pop("result")
    run = result["models"][model][objective]
    return {**step, "epoch_wall_seconds": run["median_epoch_seconds"],
            "epoch_cpu_seconds": statistics.median(run["epoch_cpu_seconds"]),
            "matmul_peak": result["matmul_peak"], "erase_jax": run}


def summary(rounds: list[dict], models: list[str], threads: list[int]) -> dict:
    """Per model and RecBole thread count: the median, minimum and maximum over the rounds (that
    ran that count) of RecBole's epoch over erase-jax's, in wall and in CPU seconds."""
    out = {}
    for model in models:
        for count in threads:
            entry = {}
            for unit in ("wall", "cpu"):
                ratios = [r["ratios"][f"recbole_threads_{count}"][unit] for r in rounds
                          if r["model"] == model and f"recbole_threads_{count}" in r["ratios"]]
                if ratios:  # models and thread counts not run yet are left out
                    entry[unit] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                                   "rounds": ratios}
            if entry:
                out.setdefault(model, {})[f"recbole_threads_{count}"] = entry
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["GRU4Rec", "SASRec"], choices=("GRU4Rec", "SASRec"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--recbole-batches", type=int, default=30, help="RecBole training batches timed per round")
    parser.add_argument("--recbole-threads", type=int, nargs="+", default=[1, 2],
                        help="torch.set_num_threads for RecBole: the first every round, the others in round 0")
    parser.add_argument("--jax-epochs", type=int, default=3, help="timed all_positions epochs per round")
    parser.add_argument("--prefixes-epochs", type=int, default=1, help="timed prefixes epochs, first round only (0: none)")
    parser.add_argument("--recbole-python", type=Path, default=RECBOLE_PYTHON)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/recbole_sbr_work"), help="RecBole's data and logs")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.recbole_python.is_file():
        raise SystemExit(f"no RecBole interpreter at {args.recbole_python} (see benchmarks/recbole_notes.md)")

    result = {"provenance": provenance(vars(args) | {"recbole_python": str(args.recbole_python),
                                                     "work_dir": str(args.work_dir), "out": str(args.out)}),
              "load_average_start": os.getloadavg(), "rounds": [], "prefixes": {}}

    def write():
        result["load_average_end"] = os.getloadavg()
        text = json.dumps(result, indent=2) + "\n"
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
        else:
            print(text)

    with tempfile.TemporaryDirectory(prefix="sbr_side_by_side_") as scratch:
        for index in range(args.rounds):
            for model in args.models:
                recbole = {f"recbole_threads_{count}": recbole_step(args.recbole_python, model, args.recbole_batches, count,
                                                                    args.work_dir.resolve(), Path(scratch))
                           for count in (args.recbole_threads if index == 0 else args.recbole_threads[:1])}
                ours = jax_step(model, "all_positions", args.jax_epochs, Path(scratch))
                ratios = {name: {unit: step[f"epoch_{unit}_seconds"] / ours[f"epoch_{unit}_seconds"] for unit in ("wall", "cpu")}
                          for name, step in recbole.items()}
                result["rounds"].append({"round": index, "model": model, **recbole, "all_positions": ours, "ratios": ratios})
                print(f"round {index} {model}: " + ", ".join(
                    f"{name} {step['epoch_wall_seconds']:.1f} s ({step['epoch_cpu_seconds']:.1f} CPU s)"
                    for name, step in recbole.items()) + f", all_positions {ours['epoch_wall_seconds']:.2f} s "
                      f"({ours['epoch_cpu_seconds']:.2f} CPU s)", file=sys.stderr, flush=True)
                result["summary"] = summary(result["rounds"], args.models, args.recbole_threads)
                write()
                if index == 0 and args.prefixes_epochs:
                    result["prefixes"][model] = jax_step(model, "prefixes", args.prefixes_epochs, Path(scratch))
                    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
