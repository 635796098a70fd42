"""The per-pair unlearning membership audit (issue 20) on a sequence model: ML-100K SASRec, Horror.

    python experiments/privacy_audit_sasrec_ml-100k.py --run RUN [--out DIR] [--shadows 12] [--audited 300]
        [--epochs N] [--group-size 1] [--removals untouched retrain] [--compare-groups 3 --compare-epochs 1]

RUN is a SASRec run trained as `experiments/method_distance_ml-100k.py --model sasrec` trains it
(`experiments/configs/sasrec_ml-100k-seq.yaml` with `sequence.objective=all_positions`, batch 32,
10 epochs); it is copied into `--out` (the audit writes nothing into RUN). The scenario is the
method-distance one: sensitive, Horror, fraction 0.001, ratings >= 3.5, forget-set seed 2 (the
run's); the audited pairs are its forgotten interactions that are targets of training prefix rows.

1. Group size, measured side by side: `--compare-groups` shadows trained for `--compare-epochs`
   epochs one at a time (group size 1) and all in one vmapped call, alternated twice in this
   process (compilation excluded, `SequenceShadowSet.train`'s record), with the load average.
2. `erase-jax audit` on the copied run (`--group-size`, K shadows of `--epochs`, default the
   run's), whose `audit.json` holds the one-model and the K-shadow training times and per
   removal game 2 / game 1 / RMIA scores.

Writes `experiments/results/privacy_audit_sasrec_ml-100k.json`: the provenance block, the
command, the group-size timings and the audit record.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
sys.path.insert(0, str(REPO_ROOT / "experiments"))
from cli_steps import erase_jax  # noqa: E402  (experiments/cli_steps.py)
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

RESULT = REPO_ROOT / "experiments" / "results" / "privacy_audit_sasrec_ml-100k.json"
SCENARIO = ["--scenario", "sensitive:Horror", "--fraction", "0.001", "--rating-threshold", "3.5"]


def compare_group_sizes(run: Path, n_shadows: int, epochs: int) -> dict:
    """Train seconds of `n_shadows` shadows, one at a time vs in one vmapped call, alternated twice."""
    import dataclasses

    from erase_jax.audit.assignment import assign_states, trained_mask
    from erase_jax.audit.job import AuditConfig, shadow_set
    from erase_jax.run import load_run
    from erase_jax.unlearn.protocol.run import UnlearnConfig, build_forget_set

    experiment, _ = load_run(run)
    config = dataclasses.replace(experiment.config.train, epochs=epochs)
    scenario = UnlearnConfig(scenario="sensitive", category="Horror", fraction=0.001, forget_rating_threshold=3.5)
    forget_set = build_forget_set(experiment, scenario, experiment.config.seed)
    shadows, rows = shadow_set(experiment, config, np.zeros(0, np.int64), AuditConfig(shadows=9), experiment.config.seed)
    audited = np.nonzero(forget_set.removal_mask(experiment.data.interactions)[rows])[0]
    shadows = dataclasses.replace(shadows, audited=audited, states=assign_states(n_shadows, len(audited), 0),
                                  seeds=np.arange(n_shadows))
    kept = trained_mask(shadows.states)
    timings = {"one_at_a_time": [], "vmapped": []}
    loads = [os.getloadavg()[0]]
    for _ in range(2):
        for name, size in (("one_at_a_time", 1), ("vmapped", None)):
            _, record = dataclasses.replace(shadows, group_size=size).train(kept)
            timings[name].append({k: record[k] for k in ("train_seconds", "compile_seconds", "data_seconds")})
            loads.append(os.getloadavg()[0])
    best = {name: min(t["train_seconds"] for t in runs) for name, runs in timings.items()}
    return {"n_shadows": n_shadows, "epochs": epochs, "timings": timings, "load_average_1min": loads,
            "vmapped_over_one_at_a_time_train_seconds": best["vmapped"] / best["one_at_a_time"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained SASRec run folder (copied, never written)")
    parser.add_argument("--out", default=str(REPO_ROOT.parent / "runs" / "privacy_audit_sasrec"))
    parser.add_argument("--shadows", type=int, default=12)
    parser.add_argument("--audited", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=None, help="each shadow's epochs (default: the run's)")
    parser.add_argument("--group-size", type=int, default=1)
    parser.add_argument("--population", type=int, default=1000)
    parser.add_argument("--removals", nargs="+", default=["untouched", "retrain"])
    parser.add_argument("--compare-groups", type=int, default=3, help="shadows of the group-size comparison (0: skip)")
    parser.add_argument("--compare-epochs", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.out)
    run = out / "run"
    if not run.exists():
        shutil.copytree(args.run, run)
    comparison = compare_group_sizes(run, args.compare_groups, args.compare_epochs) if args.compare_groups else None
    if comparison:
        print(json.dumps(comparison), flush=True)
    command = ["audit", "--run", str(run), *SCENARIO, "--out", str(out / "sensitive"), "--shadows", str(args.shadows),
               "--audited", str(args.audited), "--group-size", str(args.group_size), "--population", str(args.population),
               *([] if args.epochs is None else ["--epochs", str(args.epochs)]), "--removals", *args.removals]
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    seconds = erase_jax(command, out / "audit.log")
    record = json.loads((out / "sensitive" / "audit" / "audit.json").read_text())
    settings = {"run": args.run, "command": "erase-jax " + " ".join(command), "shadows": args.shadows,
                "epochs": args.epochs, "group_size": args.group_size, "removals": args.removals}
    RESULT.write_text(json.dumps({"provenance": provenance(config=settings), "command_seconds": seconds,
                                  "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
                                  "group_size_comparison": comparison, "audit": record}, indent=2) + "\n")
    print(f"wrote {RESULT}", flush=True)


if __name__ == "__main__":
    main()
