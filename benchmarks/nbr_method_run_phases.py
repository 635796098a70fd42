"""One next-basket method run (`erase-jax unlearn`) split into its phases, two code trees side by side.

What does one method run on a trained DNNTSP cost, and where do the seconds go? Each method run
is a fresh process, as `erase-jax unlearn` is, with JAX's persistent compilation cache off
(every compilation cold) and these phases timed by wrapping the job's own functions:

    load          the trained run and the protocol (forget set, request stream, request rows)
    plan          the padded request shapes of the stream (`protocol.shapes.plan_shapes`)
    compile       compiling those shapes ahead of the first request (`compile_stream`)
    requests      the requests themselves (the method's updates, their data)
    trained       the trained model's rows (all data and each checkpoint)
    evaluation_k  the method's model at checkpoint k (per evaluator as well)
    writing       requests.csv, unlearning.csv / .json, the scenario's combined CSV

with the compilations inside each phase (`compile_counter`). The methods are run one after the
other in one scenario folder per code tree (the first method of a folder pays what a folder
shares), and the code trees alternate method by method (`--trees NAME=PATH ...`: each a checkout
of the repository, put first on the worker's path), so every ratio compares runs made side by
side on the same shared machine; the load average is recorded with each run. Rows: the
method's `unlearning.csv` rows of each tree are compared (the largest absolute difference of
every measured column, cost and time columns aside).

    python benchmarks/nbr_method_run_phases.py --run /tmp/nbrfast/run_small --methods untouched scif gif \\
        --trees before=/tmp/nbrfast/before after=. --scenario random:users --fraction 0.01 \\
        --work /tmp/nbrfast/phases --out benchmarks/results/nbr_method_run_phases_tafeng.json
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COST_COLUMNS = ("seconds", "compile", "n_compiles", "peak_", "cache", "n_timeouts", "aot")


def worker(args) -> dict:
    """One method run in this process (module doc); returns its phases."""
    os.environ["ERASE_JAX_COMPILATION_CACHE"] = "off"
    from erase_jax.evaluators import base as evaluators_base
    from erase_jax.unlearn.protocol import jobs, loop, results, run
    from erase_jax.unlearn.protocol.shapes import compile_counter

    phases: dict = {}
    evaluators: dict = {}
    state = {"trained": False}

    @contextlib.contextmanager
    def phase(name: str):
        started = time.perf_counter()
        with compile_counter() as compiled:
            yield
        entry = phases.setdefault(name, {"seconds": 0.0, "n_compiles": 0, "compile_seconds": 0.0})
        entry["seconds"] += time.perf_counter() - started
        entry["n_compiles"] += compiled["n_compiles"]
        entry["compile_seconds"] += compiled["compile_seconds"]

    def timed(module, name: str, label):
        inner = getattr(module, name)

        def wrapper(*a, **kw):
            with phase(label(*a, **kw) if callable(label) else label):
                return inner(*a, **kw)

        setattr(module, name, wrapper)

    timed(jobs, "load_run", "load")
    timed(jobs, "build_protocol", "load")
    timed(loop, "plan_shapes", "plan")
    timed(loop, "compile_stream", "compile")
    timed(jobs, "_write_requests_csv", "writing")
    timed(results, "write_results", "writing")
    timed(jobs, "combine", "writing")
    inner_trained = jobs.trained_rows

    def trained_rows(*a, **kw):
        state["trained"] = True
        try:
            with phase("trained"):
                return inner_trained(*a, **kw)
        finally:
            state["trained"] = False

    jobs.trained_rows = trained_rows

    def evaluate_model(protocol, k, evaluated, reference=None):
        label = "trained" if state["trained"] else f"evaluation_k{k}"
        context = contextlib.nullcontext() if state["trained"] else phase(label)
        with context:
            return inner_evaluate(protocol, k, evaluated, reference)

    inner_evaluate = results.evaluate_model
    results.evaluate_model = evaluate_model

    def evaluate(checkpoint, names):  # evaluators.base.evaluate, each evaluator timed
        row = {}
        for name in names:
            started = time.perf_counter()
            row.update(evaluators_base.EVALUATORS.get(name)().evaluate(checkpoint))
            label = "trained" if state["trained"] else "method"
            key = f"{label}/{name}"
            evaluators[key] = evaluators.get(key, 0.0) + time.perf_counter() - started
        return row

    results.evaluate = evaluate
    inner_loop = jobs.run_requests

    def run_requests(protocol, params, out_dir, quiet=False):
        started = time.perf_counter()
        record = inner_loop(protocol, params, out_dir, quiet)
        wall = time.perf_counter() - started
        served = sum(row.get("seconds", 0.0) for row in record["requests"])
        phases["requests"] = {"seconds": served, "n_compiles": int(sum(r.get("n_compiles", 0) for r in record["requests"])),
                              "compile_seconds": float(sum(r.get("compile_seconds", 0.0) for r in record["requests"])),
                              "n_requests": len(record["requests"])}
        # what run_requests spent besides planning, compiling and the requests' own seconds: checkpoints
        inside = served + sum(phases.get(name, {}).get("seconds", 0.0) for name in ("plan", "compile"))
        phases["checkpointing"] = {"seconds": wall - inside, "n_compiles": 0, "compile_seconds": 0.0}
        return record

    jobs.run_requests = run_requests
    config = run.UnlearnConfig(method=args.method, scenario=args.scenario, fraction=args.fraction)
    load_start = os.getloadavg()
    started = time.perf_counter()
    jobs.unlearn(args.run, config, out=args.scenario_dir, quiet=True)
    total = time.perf_counter() - started
    return {"method": args.method, "tree": args.tree_name, "total_seconds": total, "phases": phases,
            "evaluator_seconds": evaluators, "load_average": [load_start, os.getloadavg()],
            "code": str(Path(__import__("erase_jax").__file__).resolve().parent.parent)}


def method_rows(scenario_dir: Path, method: str) -> list[dict]:
    with (scenario_dir / method / "unlearning.csv").open() as handle:
        return list(csv.DictReader(handle))


def rows_difference(rows_a: list[dict], rows_b: list[dict]) -> dict:
    """The largest absolute difference per measured column (rows matched by method, checkpoint)."""
    keyed = lambda rows: {(r["method"], r["checkpoint_idx"]): r for r in rows}
    a, b = keyed(rows_a), keyed(rows_b)
    if set(a) != set(b):
        return {"error": f"different rows: {sorted(set(a) ^ set(b))}"}
    worst: dict = {}
    for key in a:
        for column in set(a[key]) | set(b[key]):
            if any(part in column for part in COST_COLUMNS):
                continue
            x, y = a[key].get(column, ""), b[key].get(column, "")
            try:
                diff = abs(float(x) - float(y)) if (x or y) else 0.0
            except ValueError:
                diff = 0.0 if x == y else float("inf")
            if diff != diff:  # NaN on both sides
                diff = 0.0 if (x.lower() == "nan" and y.lower() == "nan") else float("inf")
            worst[column] = max(worst.get(column, 0.0), diff)
    return {"max_abs_difference": max(worst.values(), default=0.0),
            "columns_differing": {c: d for c, d in sorted(worst.items()) if d > 0}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a trained next-basket run folder")
    parser.add_argument("--methods", nargs="+", default=["scif"])
    parser.add_argument("--trees", nargs="+", default=[f"this={Path(__file__).resolve().parent.parent}"],
                        help="NAME=PATH checkouts to compare (alternating method by method)")
    parser.add_argument("--scenario", default="random:users")
    parser.add_argument("--fraction", type=float, default=0.003)
    parser.add_argument("--retrains", default=None,
                        help="a scenario folder whose retrain/ is copied into every tree's folder (the references)")
    parser.add_argument("--work", default="/tmp/nbr_method_run_phases", help="scenario folders, one per tree")
    parser.add_argument("--out", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--tree-name", help=argparse.SUPPRESS)
    parser.add_argument("--scenario-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_speed import result_header, write_result

    trees = dict(tree.split("=", 1) for tree in args.trees)
    folders = {}
    for name in trees:
        folders[name] = Path(args.work) / name
        shutil.rmtree(folders[name], ignore_errors=True)
        folders[name].mkdir(parents=True)
        if args.retrains:
            shutil.copytree(Path(args.retrains) / "retrain", folders[name] / "retrain")
            shutil.copy(Path(args.retrains) / "model.json", folders[name] / "model.json")
    result = result_header(config=vars(args), runs=[], rows=[])
    for method in args.methods:
        for name, path in trees.items():
            env = dict(os.environ, PYTHONPATH=str(Path(path).resolve()), ERASE_JAX_COMPILATION_CACHE="off")
            command = [sys.executable, __file__, "--worker", "--run", args.run, "--method", method, "--tree-name", name,
                       "--scenario", args.scenario, "--fraction", str(args.fraction), "--scenario-dir", str(folders[name])]
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                result["runs"].append({"method": method, "tree": name, "error": done.stderr.strip().splitlines()[-5:]})
            else:
                entry = json.loads(done.stdout.strip().splitlines()[-1])
                result["runs"].append(entry)
                shown = ", ".join(f"{k} {v['seconds']:.0f}" for k, v in entry["phases"].items())
                print(f"{method} [{name}]: {entry['total_seconds']:.0f} s ({shown})", file=sys.stderr, flush=True)
            write_result(result, args.out)
        names = list(trees)
        for other in names[1:]:
            try:
                compared = rows_difference(method_rows(folders[names[0]], method), method_rows(folders[other], method))
            except FileNotFoundError as error:
                compared = {"error": str(error)}
            result["rows"].append({"method": method, "trees": [names[0], other], **compared})
        write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
