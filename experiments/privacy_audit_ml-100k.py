"""The per-pair unlearning membership audit (issue 20) on ML-100K, Horror, BPR or LightGCN shadows.

    python experiments/privacy_audit_ml-100k.py [--model bpr] [--shadows 32] [--audited 300] [--epochs 100] [--seed 2]
        [--population 1000] [--group-size 1] [--devices 0] [--removals untouched retrain scif ...] [--memorised 0 --pilot-shadows 6]

The data and model are those of `experiments/configs/bpr_ml-100k.yaml` (5-core ML-100K,
chronological 80/10/10 split, BPR 64-d, Adam lr 1e-3, batch 2048), or with `--model lightgcn`
of `experiments/configs/lightgcn_ml-100k.yaml` (one graph per shadow, `erase_jax/audit/shadows.py`;
written to `privacy_audit_ml-100k_lightgcn.json`); the audited pairs are the
forgotten pairs of the sensitive scenario (Horror, fraction 0.003, ratings >= 3.5, seed 2, the
protocol's forget set) that lie in the training split: the pairs the last checkpoint (3) has
removed. K shadows train as one vmap (`erase_jax/audit/shadows.py`) for a fixed number of
epochs (the original's run trained 100), each audited pair IN / UNLEARN / OUT in a third of
them, `--group-size` shadows per vmapped call (1 on this CPU: one after another is faster,
`benchmarks/shadow_training_cost.py`); then each removal (`untouched`: nothing, the ceiling;
`retrain`: exact, the floor; every unlearning method with its defaults, run on each shadow with
the protocol's one-user requests, `erase_jax/audit/methods.py`) is applied to every shadow, and both games are scored with each shadow in turn the target
(`erase_jax/audit/game.py`), with global and per-pair variances, and game 2 also with RMIA's
offline score (`erase_jax/audit/rmia.py`; 1, 2 and 4 reference shadows, a population of
test-split pairs, which no shadow trains on); each game's ROC at log-spaced FPRs
(`roc.log_roc`) is kept for the results page's log-scale ROC figure. `--memorised N` adds the N
most memorised of the scenario's forgettable training pairs (Horror, ratings >= 3.5) to the
audited ones, ranked by a pilot of `--pilot-shadows` IN / OUT shadows (`erase_jax/audit/pilot.py`),
and scores game 2 also on the memorised and the random pairs apart. One shadow is also trained
alone, for the cost of one model next to K together. Writes
`experiments/results/privacy_audit_ml-100k.json` with the provenance block
(`benchmarks/provenance.py`) and the 1-minute load average around the training. An existing
`--out` keeps the removals this run does not redo, or has not redone yet when it is stopped (`--replace` starts afresh); the earlier run's
provenance and trained confidences (the same shadows when seeds and settings agree) are kept
under `kept_from_earlier_run`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from erase_jax.audit.job import REMOVALS, AuditConfig, audit_record
from erase_jax.config import load_config
from erase_jax.run import build_experiment
from erase_jax.unlearn.protocol.run import UnlearnConfig, build_forget_set

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

CONFIGS = {"bpr": REPO_ROOT / "experiments" / "configs" / "bpr_ml-100k.yaml",
           "lightgcn": REPO_ROOT / "experiments" / "configs" / "lightgcn_ml-100k.yaml"}
SCENARIO = UnlearnConfig(scenario="sensitive", category="Horror", fraction=0.003, forget_rating_threshold=3.5)
RESULTS = {"bpr": REPO_ROOT / "experiments" / "results" / "privacy_audit_ml-100k.json",
           "lightgcn": REPO_ROOT / "experiments" / "results" / "privacy_audit_ml-100k_lightgcn.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="bpr")
    parser.add_argument("--shadows", type=int, default=32)
    parser.add_argument("--audited", type=int, default=300, help="forgotten training pairs audited (at most all)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--population", type=int, default=1000, help="test-split pairs, RMIA's population")
    parser.add_argument("--group-size", type=int, default=1, help="shadows per vmapped call (0: all at once)")
    parser.add_argument("--removals", nargs="+", default=list(REMOVALS))
    parser.add_argument("--memorised", type=int, default=0, help="most memorised forgettable pairs added (a pilot run)")
    parser.add_argument("--devices", type=int, default=0, help="split each group's shadows over this many devices (0: one)")
    parser.add_argument("--pilot-shadows", type=int, default=6, help="the pilot's shadows (with --memorised)")
    parser.add_argument("--out", default=None, help="default: experiments/results/privacy_audit_ml-100k[_lightgcn].json")
    parser.add_argument("--replace", action="store_true",
                        help="start --out afresh (default: keep its removals that this run does not redo)")
    args = parser.parse_args()
    args.out = args.out or str(RESULTS[args.model])
    config_path = CONFIGS[args.model]
    experiment = build_experiment(load_config(str(config_path), [f"train.epochs={args.epochs}"]))
    forget_set = build_forget_set(experiment, SCENARIO, experiment.config.seed)
    config = AuditConfig(shadows=args.shadows, audited=args.audited, seed=args.seed, population=args.population,
                         group_size=args.group_size, devices=args.devices, memorised=args.memorised,
                         pilot_shadows=args.pilot_shadows, removals=tuple(args.removals))
    previous = {} if args.replace or not Path(args.out).exists() else json.loads(Path(args.out).read_text())
    settings = {"run": os.path.relpath(config_path, REPO_ROOT), "train.epochs": args.epochs,
                "scenario": "sensitive:Horror f0.003 rating>=3.5", "shadows": args.shadows, "audited": args.audited,
                "seed": args.seed, "population": args.population, "model": args.model, "memorised": args.memorised,
                "pilot_shadows": args.pilot_shadows, "group_size": args.group_size, "devices": args.devices,
                "removals": args.removals}

    def write(record: dict) -> None:  # after every removal: an interrupted run keeps what it finished
        Path(args.out).write_text(json.dumps({"provenance": provenance(config=settings), **record}, indent=2) + "\n")

    audit_record(experiment, SCENARIO, forget_set, config, previous, write, log=lambda line: print(line, flush=True))
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
