"""Every unlearning method's distance to the retrain, against the retrain-vs-retrain noise floor:
ML-100K, Horror, BPR / LightGCN / SASRec (issue 20, part 3).

Superseded by the grids `experiments/grids/method_distance_ml-100k.yaml` (BPR, LightGCN) and
`method_distance_sasrec_ml-100k.yaml`, whose `retrain_seeds` give the noise floor, and
`experiments/leaderboard_acceptance.py`, which writes this file's `models.<model>` entries from
their leaderboards. To be removed once the runs going with it now have their results in.

    python experiments/method_distance_ml-100k.py --model lightgcn [--methods untouched scif ...] [--out DIR]

Per model, through the command line as a user runs it:

1. `erase-jax train` the model with its ML-100K config and seed 2 (budgets in `MODELS`: BPR and
   LightGCN their 100 epochs with the best validated parameters kept and no early stop; SASRec
   `sequence.objective=all_positions` at 32 chunk rows per batch (65 steps an epoch) for
   `SASREC_EPOCHS` epochs, best validated kept: a budget that trains in minutes on a 2-core CPU).
2. `erase-jax retrain --seeds 3 4`, sensitive scenario (Horror, ratings >= 3.5, forget-set seed 2;
   fraction 0.003 for the CF models: 98 requests; 0.001 for SASRec, one request per user), with
   the original's budget: the four matched retrains and two more per checkpoint, the noise floor
   (SASRec: checkpoint 3 only, where the acceptance is judged, and one more seed: its trainings
   cost the most, about 7 minutes each on the shared CPU).
3. `erase-jax unlearn` with every method's defaults, then `erase-jax report`.

A diagnosis: `--variant NAME --methods M --option KEY=VALUE ...` serves method M with those
options in `<out>/variants/NAME` (a copy of the scenario folder's retrains and untouched rows)
and records its acceptance row under the model's `variants` (e.g. Kookmin's re-initialisation
rate, SEIF's noise), next to the defaults'.

Writes (merging models into) `experiments/results/method_distance_ml-100k.json`: per model and
method at checkpoint 3 the acceptance checks of `report.acceptance` (Jaccard@20 with the retrain,
the trained model's (doing nothing), the floor, Recall@20 and its loss against the retrain, exposure; pass or
fail of both criteria), the noise floor, the retrain's utility, command seconds and the load; and
the scenario's report as `experiments/results/method_distance_ml-100k_<model>_report.md`. A finished
step is not repeated (run folders stay under `--out`). `--run` / `--scenario-dir` read an existing
run folder and scenario folder instead (BPR: those of `retrain_reference_ml-100k.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from cli_steps import erase_jax  # noqa: E402  (experiments/cli_steps.py)
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

from erase_jax.unlearn.protocol import report  # noqa: E402

SASREC_EPOCHS = 10
MODELS = {
    "bpr": {"config": "experiments/configs/bpr_ml-100k.yaml", "sets": ["train.stopping_step=100"], "fraction": 0.003},
    "lightgcn": {"config": "experiments/configs/lightgcn_ml-100k.yaml", "sets": ["train.stopping_step=100"],
                 "fraction": 0.003},
    "sasrec": {"config": "experiments/configs/sasrec_ml-100k-seq.yaml",
               "sets": ["sequence.objective=all_positions", "train.batch_size=32", f"train.epochs={SASREC_EPOCHS}",
                        f"train.stopping_step={SASREC_EPOCHS}"], "fraction": 0.001, "retrain_checkpoints": "3",
               "retrain_seeds": ("3",)},
}
METHODS = ("untouched", "scif", "kookmin", "fanchuan", "seif", "gif", "ceu", "idea")
RETRAIN_SEEDS = ("3", "4")
RESULTS = REPO_ROOT / "experiments" / "results"
RESULT_FILE = RESULTS / "method_distance_ml-100k.json"


def _done(scenario_dir: Path, methods: list[str]) -> bool:
    """Whether every one of `methods` has a row at checkpoint 3 in the scenario folder."""
    try:
        rows = report.load(scenario_dir)
    except (FileNotFoundError, ValueError):
        return False
    return set(methods) <= set(rows.loc[rows["checkpoint_idx"] == 3, "method"])


def _carried_methods(earlier: dict, trained: dict, methods: dict) -> dict:
    """The earlier record's rows of methods not in `methods`, when the earlier record's trained
    model and reference are this run's (every test metric of the trained model equal, and the
    untouched row's retrain Recall@20, Jaccard and floor equal): a run that adds methods to a model
    keeps the rows of the methods it did not rerun. Otherwise none (rows of another model or
    another reference are never mixed in)."""
    if not earlier or earlier.get("original", {}).get("test") != trained.get("test"):
        return {}
    same = ("retrain_recall@20", "trained_jaccard", "floor_jaccard")
    before, now = earlier.get("methods_at_checkpoint_3", {}).get("untouched"), methods.get("untouched")
    if before is None or now is None or any(before.get(k) != now.get(k) for k in same):
        return {}
    return {name: row for name, row in earlier.get("methods_at_checkpoint_3", {}).items() if name not in methods}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, choices=sorted(MODELS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", help="run folders (default runs/experiments/method_distance_ml-100k/<model>)")
    parser.add_argument("--run", help="an existing trained run folder to use")
    parser.add_argument("--scenario-dir", help="an existing scenario folder to use (with --run)")
    parser.add_argument("--variant", help="a diagnosis: serve the one method of --methods with --option values")
    parser.add_argument("--option", action="append", default=[], help="KEY=VALUE for --variant's method")
    args = parser.parse_args()
    if args.variant and len(args.methods) != 1:
        parser.error("--variant serves exactly one method (--methods M)")
    spec = MODELS[args.model]
    out = Path(args.out or REPO_ROOT / "runs" / "experiments" / "method_distance_ml-100k" / args.model).resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = Path(args.run).resolve() if args.run else out / "run"
    scenario_dir = Path(args.scenario_dir).resolve() if args.scenario_dir else out / "sensitive"
    scenario = ["--scenario", "sensitive:Horror", "--fraction", str(spec["fraction"]), "--rating-threshold", "3.5",
                "--seed", "2"]
    seconds: dict[str, float | str] = {}
    sets = [arg for value in spec["sets"] for arg in ("--set", value)]
    if not (run / "result.json").exists():
        seconds["train"] = erase_jax(["train", "--config", spec["config"], *sets, "--out", str(run)], logs / "train.log")
    retrain_seeds = spec.get("retrain_seeds", RETRAIN_SEEDS)
    retrains = [report.REFERENCE, *(f"{report.SEED_REFERENCE}{s}" for s in retrain_seeds)]
    if not _done(scenario_dir, retrains):
        seconds["retrain"] = erase_jax(["retrain", "--run", str(run), *scenario, "--out", str(scenario_dir),
                                        "--checkpoint-idx", spec.get("retrain_checkpoints", "all"),
                                        "--seeds", *retrain_seeds], logs / "retrain.log")
    if args.variant:
        return variant(args, spec, run, scenario_dir, scenario, logs)
    for method in args.methods:
        if not _done(scenario_dir, [method]):
            seconds[f"unlearn_{method}"] = erase_jax(["unlearn", "--run", str(run), *scenario, "--out",
                                                      str(scenario_dir), "--method", method], logs / f"unlearn_{method}.log")
    erase_jax(["report", str(scenario_dir)], logs / "report.log")
    shutil.copyfile(scenario_dir / report.REPORT_FILE, RESULTS / f"method_distance_ml-100k_{args.model}_report.md")

    rows = report.load(scenario_dir)
    trained = json.loads((run / "result.json").read_text())
    at_3 = report.at_checkpoint(rows, 3)
    record = json.loads(RESULT_FILE.read_text()) if RESULT_FILE.exists() else {"models": {}}
    earlier = record["models"].get(args.model, {})
    kept = earlier.get("variants")
    methods = report.acceptance(rows, 3)
    carried = _carried_methods(earlier, trained, methods)
    record["models"][args.model] = {
        "provenance": provenance(config={"config": spec["config"], "overrides": spec["sets"], "scenario": scenario,
                                         "retrain_seeds": list(retrain_seeds), "methods": args.methods,
                                         "run": str(run), "scenario_dir": str(scenario_dir)}),
        "original": {"epochs": trained.get("epochs"), "best_epoch": trained.get("best_epoch"),
                     "test": trained.get("test")},
        "n_unlearned_users": int(at_3.iloc[0]["n_unlearned_users"]),
        "n_removed": int(at_3.iloc[0]["n_removed"]),
        "noise_floor": report.noise_floor(rows, 3),
        "methods_at_checkpoint_3": {**carried, **methods},
        "command_seconds": seconds,
        "load_average_at_end": os.getloadavg(),
    }
    if kept:
        record["models"][args.model]["variants"] = kept
    if carried:
        record["models"][args.model]["carried_from"] = {
            "methods": sorted(carried), "provenance": earlier["provenance"],
            "earlier": earlier.get("carried_from"),
            "why": "the same training reproduced to the last digit of every test metric (same config, seed "
                   "and code), so the earlier run's rows of methods not rerun here belong to this model"}
    record["notes"] = report.ACCEPTANCE_NOTE + " Timings on a shared 2-core CPU."
    RESULT_FILE.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(json.dumps(record["models"][args.model]["methods_at_checkpoint_3"], indent=1, default=float)[:6000])


def variant(args, spec: dict, run: Path, scenario_dir: Path, scenario: list[str], logs: Path) -> None:
    """Serves one method with non-default options in a copy of the scenario folder (module doc)."""
    method = args.methods[0]
    folder = scenario_dir.parent / "variants" / args.variant
    if not folder.exists():
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(scenario_dir, partial, ignore=lambda d, names: [
            n for n in names if Path(d) == scenario_dir and n not in (report.REFERENCE, "untouched", "model.json")])
        partial.rename(folder)
    seconds = None
    if not _done(folder, [method]):
        options = [arg for value in args.option for arg in ("--option", value)]
        seconds = erase_jax(["unlearn", "--run", str(run), *scenario, "--out", str(folder), "--method", method,
                             *options], logs / f"variant_{args.variant}.log")
    erase_jax(["report", str(folder)], logs / f"variant_{args.variant}_report.log")
    rows = report.load(folder)
    record = json.loads(RESULT_FILE.read_text())
    model = record["models"][args.model]
    model.setdefault("variants", {})[args.variant] = {
        "method": method,
        "options": args.option,
        "command": f"python experiments/method_distance_ml-100k.py --model {args.model} --variant {args.variant} "
                   f"--methods {method} " + " ".join(f"--option {o}" for o in args.option),
        "provenance": provenance(config={"method": method, "options": args.option, "scenario_dir": str(folder)}),
        "at_checkpoint_3": report.acceptance(rows, 3)[method],
        "seconds": seconds,
    }
    RESULT_FILE.write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(json.dumps(model["variants"][args.variant], indent=1, default=float)[:3000])


if __name__ == "__main__":
    main()
