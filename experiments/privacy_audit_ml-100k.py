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
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from erase_jax.audit.assignment import OUT, STATE_NAMES, UNLEARN, assign_states, trained_mask
from erase_jax.audit.devices import shadow_mesh
from erase_jax.audit.game import GAMES, game_examples, per_pair_auc, play, play_rmia
from erase_jax.audit.pairs import select_audited_rows
from erase_jax.audit.pilot import pilot_memorisation, with_memorised
from erase_jax.audit.roc import log_roc, summary
from erase_jax.audit.shadows import ShadowSet, apply_removal, observation_mask, shadow_seeds, training_rows
from erase_jax.config import load_config
from erase_jax.data.scenarios.sensitive import sensitive_items
from erase_jax.run import build_experiment
from erase_jax.unlearn.protocol.run import UnlearnConfig, build_forget_set

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

CONFIGS = {"bpr": REPO_ROOT / "experiments" / "configs" / "bpr_ml-100k.yaml",
           "lightgcn": REPO_ROOT / "experiments" / "configs" / "lightgcn_ml-100k.yaml"}
SCENARIO = UnlearnConfig(scenario="sensitive", category="Horror", fraction=0.003, forget_rating_threshold=3.5)
REMOVALS = ("untouched", "retrain", "scif", "kookmin", "fanchuan", "gif", "ceu", "idea", "seif")
RESULTS = {"bpr": REPO_ROOT / "experiments" / "results" / "privacy_audit_ml-100k.json",
           "lightgcn": REPO_ROOT / "experiments" / "results" / "privacy_audit_ml-100k_lightgcn.json"}


def forgettable_rows(inter, rows: np.ndarray) -> np.ndarray:
    """Positions in `rows` of the scenario's candidate pairs: a Horror item rated >= 3.5."""
    _, sensitive = sensitive_items(inter, SCENARIO.category)
    return np.nonzero(np.isin(inter.items[rows], sensitive) & (inter.ratings[rows] >= SCENARIO.forget_rating_threshold))[0]


def carried_over(previous: dict) -> dict:
    """The removals of an earlier result file, each with the provenance of the run that measured
    it (that file's, or the one it had itself kept them from)."""
    earlier = previous.get("kept_from_earlier_run", {})
    return {name: {**found, "provenance": found.get("provenance") or (
                earlier["provenance"] if name in earlier.get("removals", ()) else previous["provenance"])}
            for name, found in previous.get("removals", {}).items()}


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
    rows, users, items = training_rows(experiment)
    forgotten = np.nonzero(forget_set.removal_mask(experiment.data.interactions)[rows])[0]  # positions in `rows`
    audited = select_audited_rows(forgotten, args.audited, args.seed)
    inter = experiment.data.interactions
    shadows = ShadowSet(experiment.model, experiment.context, experiment.config.train, inter.n_users, inter.n_items,
                        users, items, audited, assign_states(args.shadows, len(audited), args.seed),
                        shadow_seeds(args.seed, args.shadows), args.group_size or None,
                        shadow_mesh(args.devices) if args.devices else None)
    pilot, memorised = None, np.zeros(len(audited), bool)
    if args.memorised:
        candidates = forgettable_rows(inter, rows)
        gaps, pilot = pilot_memorisation(shadows, candidates, args.pilot_shadows, args.seed)
        audited, chosen = with_memorised(forgotten, candidates, gaps, args.audited, args.memorised, len(rows), args.seed)
        pilot.update(chosen)
        memorised = ~np.isin(audited, select_audited_rows(forgotten, args.audited, args.seed))
        shadows = dataclasses.replace(shadows, audited=audited, states=assign_states(args.shadows, len(audited), args.seed))
        print(f"pilot: {pilot}", flush=True)
    test_rows = np.random.default_rng(args.seed).choice(experiment.data.split.test, args.population, replace=False)
    population_users, population_items = (np.asarray(a[test_rows], np.int32) for a in (inter.users, inter.items))
    print(f"{len(rows)} training rows, {len(forgotten)} forgotten in train, {len(audited)} audited, K = {args.shadows}", flush=True)

    load = {"before": os.getloadavg()[0]}
    _, one_record = shadows.train(trained_mask(shadows.states), shadows=np.array([0]))
    print(f"one model: {one_record}", flush=True)
    trained, shadow_record = shadows.train_shadows()
    print(f"{args.shadows} shadows: {shadow_record}", flush=True)
    phi_trained = np.asarray(shadows.observe(trained, trained_mask(shadows.states), shadows.audited_users, shadows.audited_items))
    previous = {} if args.replace or not Path(args.out).exists() else json.loads(Path(args.out).read_text())
    removals = carried_over(previous)  # the earlier run's, each until this run redoes it
    redone: set[str] = set()

    def write() -> None:
        load["after"] = os.getloadavg()[0]
        record = {
            "provenance": provenance(config={"run": os.path.relpath(config_path, REPO_ROOT), "train.epochs": args.epochs,
                                             "scenario": "sensitive:Horror f0.003 rating>=3.5", "shadows": args.shadows,
                                             "audited": args.audited, "seed": args.seed,
                                             "population": args.population, "model": args.model,
                                             "memorised": args.memorised, "pilot_shadows": args.pilot_shadows,
                                             "group_size": args.group_size, "devices": args.devices,
                                             "removals": args.removals}),
            "data": {"training_rows": len(rows), "forgotten_training_rows": len(forgotten), "audited_pairs": len(audited),
                     "memorised_pairs": int(memorised.sum()), "users": inter.n_users, "items": inter.n_items},
            **({"pilot": pilot} if pilot else {}),
            "states_per_pair": {STATE_NAMES[s]: [int(c) for c in np.unique((shadows.states == s).sum(0))] for s in range(3)},
            "mean_phi_trained": {STATE_NAMES[s]: float(phi_trained[shadows.states == s].mean()) for s in range(3)},
            "memorisation_gap_trained_minus_out": float(phi_trained[shadows.states != OUT].mean() - phi_trained[shadows.states == OUT].mean()),
            "one_model": one_record,
            "shadows_together": shadow_record,
            "load_average_1min": load,
            "removals": removals,
            **({"kept_from_earlier_run": {"removals": sorted(set(removals) - redone),
                                          "provenance": previous.get("provenance"),
                                          "mean_phi_trained": previous.get("mean_phi_trained")}}
               if set(removals) - redone else {}),
            "notes": "each shadow in turn the target, scored against the other K-1 (leave-one-out); "
                     f"labels: UNLEARN = 1 ({int((shadows.states == UNLEARN).sum())} examples), OUT = 0; IN pairs are not examples. "
                     "Timings on a shared 2-core CPU under load (see load_average_1min).",
        }
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")

    for name in args.removals:
        started = time.perf_counter()
        unlearned, record = apply_removal(name, shadows, trained, seed=args.seed)
        seen = observation_mask(name, shadows.states)
        phi = np.asarray(shadows.observe(unlearned, seen, shadows.audited_users, shadows.audited_items))
        removals[name] = {"removal": record, "wall_seconds": time.perf_counter() - started,
                          "mean_phi_after_removal": {STATE_NAMES[s]: float(phi[shadows.states == s].mean()) for s in range(3)}}
        log_p = np.asarray(shadows.observe(unlearned, seen, shadows.audited_users, shadows.audited_items, "log_p"))
        log_p_population = np.asarray(shadows.observe(unlearned, seen, population_users, population_items, "log_p"))
        for n_references in (1, 2, 4):
            removals[name][f"rmia_offline_{n_references}_references"] = play_rmia(log_p, shadows.states, log_p_population, n_references)
        for game in GAMES:
            for variance in ("global", "pair"):
                removals[name][f"{game}_{variance}_variance"] = play(game, phi_trained, phi, shadows.states, variance)
            scores, labels, used = game_examples(game, phi_trained, phi, shadows.states)
            removals[name][f"{game}_log_roc_global"] = log_roc(scores[used], labels[used])
            if memorised.any():
                for part, columns in (("memorised", memorised), ("random", ~memorised)):
                    subset = used & columns[None]
                    removals[name][f"{game}_global_variance_{part}"] = summary(scores[subset], labels[subset])
            pair_auc = per_pair_auc(scores, labels, used)
            removals[name][f"{game}_per_pair_auc_quantiles_global"] = dict(zip(
                ("p10", "p50", "p90", "max"), np.nanquantile(pair_auc, [0.1, 0.5, 0.9, 1.0]).round(4).tolist()))
        print(name, json.dumps({k: v for k, v in removals[name].items() if k.startswith(("game2", "rmia"))}), flush=True)
        redone.add(name)
        write()  # after every removal: an interrupted run keeps the removals it finished (and the earlier run's others)
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
