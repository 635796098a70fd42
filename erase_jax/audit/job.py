"""The audit as a protocol job: `erase-jax audit --run RUN --scenario ...` audits a trained run's
scenario and writes `<scenario folder>/audit/audit.json`, which `erase-jax report` shows next to
utility and exposure.

What is computed (docs/privacy_audit.md): the scenario's forgotten training pairs (a seeded
sample of `audited`, plus with `memorised` the most memorised of the scenario's forgettable
pairs, ranked by a pilot), K shadows of the run's model trained as one vmap for a fixed number
of epochs (default: the run's own `train.epochs`) with each audited pair IN / UNLEARN / OUT in
a third of them, then each removal (`untouched`: the ceiling; `retrain`: the floor; any
registered method with its defaults) applied to every shadow, both games scored with each
shadow in turn the target (global and per-pair variances), game 2 also with RMIA's offline
score, and each game's ROC at log-spaced FPRs.

The record (`audit_record`) is the one `experiments/privacy_audit_ml-100k.py` writes; the job
adds its settings and the run's model fingerprint. Resumable: the record is written atomically
after every removal; a rerun with the same settings returns at once when every removal asked
for is in the file, and otherwise trains the same shadows again (they are seeded) and skips the
removals already there; other settings are refused unless
`--replace`. Shadows exist for CF models trained by the sharded-ensemble trainer (BPR,
LightGCN; `shadows.ShadowSet`) and for sequence models (SASRec, GRU4Rec;
`sequence_shadows.SequenceShadowSet`: an audited pair is the target interaction of a training
prefix row, removed by the SBR retrain's rule, observed after the prefix that precedes it);
another model is refused before anything trains.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from erase_jax.audit.assignment import OUT, STATE_NAMES, UNLEARN, assign_states, trained_mask
from erase_jax.audit.game import GAMES, game_examples, per_pair_auc, play, play_rmia
from erase_jax.audit.pairs import select_audited_rows
from erase_jax.audit.pilot import pilot_memorisation, with_memorised
from erase_jax.audit.roc import log_roc, summary
from erase_jax.audit.sequence_shadows import SequenceShadowSet
from erase_jax.audit.shadows import ShadowSet, apply_removal, check_removal, observation_mask, shadow_seeds

REMOVALS = ("untouched", "retrain", "scif", "kookmin", "fanchuan", "gif", "ceu", "idea", "seif")
# the models whose shadows are trained, and the shadow set that trains them (tests/audit)
SHADOW_SETS = {"BPR": ShadowSet, "LightGCN": ShadowSet, "SASRec": SequenceShadowSet, "GRU4Rec": SequenceShadowSet}
SHADOW_MODELS = tuple(SHADOW_SETS)
AUDIT_DIR = "audit"
AUDIT_FILE = "audit.json"


@dataclasses.dataclass(frozen=True)
class AuditConfig:
    """The audit's knobs. `epochs` None: the trained run's `train.epochs`; `seed` None: the
    forget set's seed; `group_size` 0: all shadows in one vmapped call; `devices` 0: one device."""

    shadows: int = 32
    audited: int = 300
    epochs: int | None = None
    seed: int | None = None
    population: int = 1000
    group_size: int = 1
    devices: int = 0
    memorised: int = 0
    pilot_shadows: int = 6
    removals: tuple[str, ...] = REMOVALS

    def __post_init__(self):
        if self.shadows < 9:
            raise ValueError("audit: --shadows must be at least 9 (each pair's state in 3 shadows: a target and two "
                             f"others to fit per state), got {self.shadows}")
        for name in ("audited", "population"):
            if getattr(self, name) < 1:
                raise ValueError(f"audit: --{name} must be positive, got {getattr(self, name)}")
        if not self.removals:
            raise ValueError("audit: no removals to audit (--removals)")
        for name in self.removals:
            check_removal(name)


def forgettable_rows(experiment, scenario, rows: np.ndarray) -> np.ndarray:
    """Positions in `rows` of the scenario's candidate pairs for `--memorised`: a sensitive
    scenario's category items rated at or above its threshold (all of them without one)."""
    from erase_jax.data.scenarios.sensitive import sensitive_items

    if scenario.scenario != "sensitive":
        raise ValueError(f"audit: --memorised ranks a sensitive scenario's category pairs; the scenario is {scenario.scenario!r}")
    inter = experiment.data.interactions
    _, sensitive = sensitive_items(inter, scenario.category)
    rated = np.ones(len(rows), bool) if scenario.forget_rating_threshold is None else (
        inter.ratings[rows] >= scenario.forget_rating_threshold)
    return np.nonzero(np.isin(inter.items[rows], sensitive) & rated)[0]


def check_model(experiment, config: AuditConfig | None = None) -> None:
    """Refuses a run whose model the shadows cannot train (before anything trains)."""
    if experiment.config.model not in SHADOW_SETS:
        by_kind = {kind: [m for m, k in SHADOW_SETS.items() if k is kind] for kind in (ShadowSet, SequenceShadowSet)}
        raise ValueError(f"audit: shadows are trained for CF models {by_kind[ShadowSet]} and sequence models "
                         f"{by_kind[SequenceShadowSet]}; this run's model is {experiment.config.model!r} "
                         "(basket shadows are not built yet)")
    if config is not None and config.devices and SHADOW_SETS[experiment.config.model] is not ShadowSet:
        raise ValueError("audit: --devices splits CF shadows only; sequence shadows train on one device")


def shadow_set(experiment, train_config, audited_positions: np.ndarray, config: AuditConfig, seed: int):
    """(the shadow set of the run's model, `SHADOW_SETS`, the interaction row of each training
    position: CF training rows, or SBR training prefix rows whose targets are the audited pairs)."""
    return SHADOW_SETS[experiment.config.model].from_experiment(
        experiment, train_config, audited_positions, assign_states(config.shadows, len(audited_positions), seed),
        shadow_seeds(seed, config.shadows), config.group_size or None, config.devices)


def carried_over(previous: dict) -> dict:
    """The removals of an earlier record, each with the provenance of the run that measured it
    (that record's, or the one it had itself kept them from)."""
    earlier = previous.get("kept_from_earlier_run", {})
    return {name: {**found, "provenance": found.get("provenance") or (
                earlier["provenance"] if name in earlier.get("removals", ()) else previous.get("provenance"))}
            for name, found in previous.get("removals", {}).items()}


def audit_record(experiment, scenario, forget_set, config: AuditConfig, previous: dict | None,
                 write: Callable[[dict], None], skip_done: bool = False, log: Callable[[str], None] = print) -> dict:
    """Trains the shadows, applies every removal of `config.removals` and scores both games;
    calls `write(record)` after every removal (the record so far, without provenance). The
    removals of `previous` are kept until redone, or (`skip_done`) not redone at all."""
    seed = forget_set_seed(experiment, config)
    train_config = experiment.config.train if config.epochs is None else dataclasses.replace(experiment.config.train, epochs=config.epochs)
    inter = experiment.data.interactions
    shadows, rows = shadow_set(experiment, train_config, np.zeros(0, np.int64), config, seed)
    forgotten = np.nonzero(forget_set.removal_mask(inter)[rows])[0]  # training positions (CF rows, SBR prefix rows)
    if len(forgotten) == 0:
        raise ValueError("audit: the scenario removes no training pair, so there is nothing to audit")
    audited = select_audited_rows(forgotten, config.audited, seed)
    shadows = dataclasses.replace(shadows, audited=audited, states=assign_states(config.shadows, len(audited), seed))
    pilot, memorised = None, np.zeros(len(audited), bool)
    if config.memorised:
        candidates = forgettable_rows(experiment, scenario, rows)
        gaps, pilot = pilot_memorisation(shadows, candidates, config.pilot_shadows, seed)
        audited, chosen = with_memorised(forgotten, candidates, gaps, config.audited, config.memorised, len(rows), seed)
        pilot.update(chosen)
        memorised = ~np.isin(audited, select_audited_rows(forgotten, config.audited, seed))
        shadows = dataclasses.replace(shadows, audited=audited, states=assign_states(config.shadows, len(audited), seed))
        log(f"pilot: {pilot}")
    population_users, population_items = shadows.population(experiment, config.population, seed)
    log(f"{len(rows)} training rows, {len(forgotten)} forgotten in train, {len(audited)} audited, K = {config.shadows}")

    load = {"before": os.getloadavg()[0]}
    _, one_record = shadows.train(trained_mask(shadows.states), shadows=np.array([0]))
    trained, shadow_record = shadows.train_shadows()
    log(f"one model: {one_record}; {config.shadows} shadows: {shadow_record}")
    phi_trained = np.asarray(shadows.observe(trained, trained_mask(shadows.states), shadows.audited_queries, shadows.audited_items))
    previous = previous or {}
    removals = carried_over(previous)
    redone: set[str] = set()
    record = {
        "data": {"training_rows": len(rows), "forgotten_training_rows": len(forgotten), "audited_pairs": len(audited),
                 "memorised_pairs": int(memorised.sum()), "users": inter.n_users, "items": inter.n_items},
        **({"pilot": pilot} if pilot else {}),
        "states_per_pair": {STATE_NAMES[s]: [int(c) for c in np.unique((shadows.states == s).sum(0))] for s in range(3)},
        "mean_phi_trained": {STATE_NAMES[s]: float(phi_trained[shadows.states == s].mean()) for s in range(3)},
        "memorisation_gap_trained_minus_out": float(phi_trained[shadows.states != OUT].mean()
                                                    - phi_trained[shadows.states == OUT].mean()),
        "one_model": one_record,
        "shadows_together": shadow_record,
        "load_average_1min": load,
        "removals": removals,
        "notes": "each shadow in turn the target, scored against the other K-1 (leave-one-out); labels: UNLEARN = 1 "
                 f"({int((shadows.states == UNLEARN).sum())} examples), OUT = 0; IN pairs are not examples. "
                 "Timings on the machine named in the provenance, under the load in load_average_1min.",
    }

    def save() -> None:
        load["after"] = os.getloadavg()[0]
        kept = sorted(set(removals) - redone)
        record.pop("kept_from_earlier_run", None)
        if kept and not skip_done:
            record["kept_from_earlier_run"] = {"removals": kept, "provenance": previous.get("provenance"),
                                               "mean_phi_trained": previous.get("mean_phi_trained")}
        write(record)

    for name in config.removals:
        if skip_done and name in removals:
            continue
        removals[name] = score_removal(name, shadows, trained, phi_trained, memorised, population_users,
                                       population_items, seed)
        log(f"{name}: " + json.dumps({k: v for k, v in removals[name].items() if k.startswith("game2_global")}))
        redone.add(name)
        save()  # after every removal: an interrupted run keeps what it finished
    save()
    return record


def forget_set_seed(experiment, config: AuditConfig) -> int:
    return experiment.config.seed if config.seed is None else config.seed


def score_removal(name: str, shadows, trained, phi_trained, memorised, population_users, population_items,
                  seed: int) -> dict:
    """One removal applied to every shadow, and both games (and RMIA's game 2) scored."""
    started = time.perf_counter()
    unlearned, record = apply_removal(name, shadows, trained, seed=seed)
    seen = observation_mask(name, shadows.states)
    phi = np.asarray(shadows.observe(unlearned, seen, shadows.audited_queries, shadows.audited_items))
    result = {"removal": record, "wall_seconds": time.perf_counter() - started,
              "mean_phi_after_removal": {STATE_NAMES[s]: float(phi[shadows.states == s].mean()) for s in range(3)}}
    log_p = np.asarray(shadows.observe(unlearned, seen, shadows.audited_queries, shadows.audited_items, "log_p"))
    log_p_population = np.asarray(shadows.observe(unlearned, seen, population_users, population_items, "log_p"))
    for n_references in (1, 2, 4):
        result[f"rmia_offline_{n_references}_references"] = play_rmia(log_p, shadows.states, log_p_population, n_references)
    for game in GAMES:
        for variance in ("global", "pair"):
            result[f"{game}_{variance}_variance"] = play(game, phi_trained, phi, shadows.states, variance)
        scores, labels, used = game_examples(game, phi_trained, phi, shadows.states)
        result[f"{game}_log_roc_global"] = log_roc(scores[used], labels[used])
        if memorised.any():
            for part, columns in (("memorised", memorised), ("random", ~memorised)):
                subset = used & columns[None]
                result[f"{game}_global_variance_{part}"] = summary(scores[subset], labels[subset])
        pair_auc = per_pair_auc(scores, labels, used)
        result[f"{game}_per_pair_auc_quantiles_global"] = dict(zip(
            ("p10", "p50", "p90", "max"), np.nanquantile(pair_auc, [0.1, 0.5, 0.9, 1.0]).round(4).tolist()))
    return result


SCENARIO_FIELDS = ("scenario", "category", "fraction", "forget_rating_threshold", "selection_rule", "random_unit",
                   "forget_file", "seed")


def job_settings(scenario, config: AuditConfig) -> dict:
    """What an audit file's results depend on (the removals aside: each is kept by name)."""
    audit = {k: v for k, v in dataclasses.asdict(config).items() if k != "removals"}
    return {"scenario": {k: getattr(scenario, k) for k in SCENARIO_FIELDS}, "audit": audit}


def _machine() -> str:
    import platform

    import jax

    return f"{platform.machine()} {os.cpu_count()}-core host, jax {jax.__version__} ({jax.default_backend()})"


def _changes(before, now) -> str:
    from erase_jax.fingerprint import changed_keys

    return "; ".join(f"{key}: {a!r} -> {b!r}" for key, a, b in changed_keys(before or {}, now))


def audit(run_dir, scenario, config: AuditConfig, out: str | None = None, replace: bool = False,
          quiet: bool = False) -> Path:
    """The job behind `erase-jax audit` (module docstring); returns the audit file written."""
    from erase_jax.run import load_run, write_atomically
    from erase_jax.unlearn.protocol.jobs import reading_run, scenario_folder, scenario_job
    from erase_jax.unlearn.protocol.run import build_forget_set

    with reading_run(run_dir, "audit"):
        experiment, _ = load_run(run_dir)
        check_model(experiment, config)
        scenario_dir = scenario_folder(Path(run_dir), scenario, out)
        job_dir = scenario_dir / AUDIT_DIR
        with scenario_job(run_dir, scenario_dir, job_dir, "audit") as model:
            path = job_dir / AUDIT_FILE
            wanted = job_settings(scenario, config)
            previous = json.loads(path.read_text()) if path.exists() and not replace else None
            if previous is not None and previous.get("settings") != wanted:
                raise ValueError(f"{path} was written with other settings ({_changes(previous.get('settings'), wanted)}); "
                                 "rerun with --replace to start it afresh")
            if previous is not None and set(config.removals) <= set(previous.get("removals", {})):
                return path  # every removal asked for is done: nothing to train again
            seed = experiment.config.seed if scenario.seed is None else scenario.seed
            forget_set = build_forget_set(experiment, scenario, seed)
            if config.seed is None:
                config = dataclasses.replace(config, seed=seed)
            provenance = {"settings": wanted, "removals_requested": list(config.removals), "model": model,
                          "run": str(Path(run_dir).resolve()), "machine": _machine(),
                          "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

            def write(record: dict) -> None:
                write_atomically(path, json.dumps({"settings": wanted, "provenance": provenance, **record}, indent=2) + "\n")

            audit_record(experiment, scenario, forget_set, config, previous, write, skip_done=True,
                         log=(lambda _: None) if quiet else (lambda line: print(line, flush=True)))
    return path


def report_lines(scenario_dir: str | Path) -> list[str]:
    """The report's audit section (markdown lines), empty without an audit file: per removal, game 2
    (removed vs never trained, after removal) AUC and TPR at 1 % / 0.1 % FPR, RMIA's offline game 2
    AUC with 4 references, and game 1 (removed vs the never-trained model) AUC."""
    path = Path(scenario_dir) / AUDIT_DIR / AUDIT_FILE
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    audit_settings = record["settings"]["audit"]
    lines = ["", "## Membership audit (U-LiRA game 2, per pair)", "",
             f"{record['data']['audited_pairs']} audited forgotten pairs, K = {audit_settings['shadows']} {record['provenance']['model'].get('model', '')} "
             f"shadows trained {audit_settings['epochs'] or 'the run'} epochs. AUC 0.5: the attack cannot tell a removed pair from "
             "one never trained (`retrain` is that floor, `untouched` the ceiling); what a score can and cannot show: "
             "docs/privacy_audit.md. From `" + str(path) + "`.", "",
             "| removal | game 2 AUC | TPR @ 1 % FPR | TPR @ 0.1 % FPR | RMIA AUC (4 refs) | game 1 AUC |", "|---|---|---|---|---|---|"]
    order = [name for name in REMOVALS if name in record["removals"]] + sorted(set(record["removals"]) - set(REMOVALS))
    for name in order:
        found = record["removals"][name]
        game2, game1 = found.get("game2_global_variance", {}), found.get("game1_global_variance", {})
        rmia = found.get("rmia_offline_4_references", {})
        cells = [game2.get("auc"), game2.get("tpr@0.01fpr"), game2.get("tpr@0.001fpr"), rmia.get("auc"), game1.get("auc")]
        lines.append(f"| {name} | " + " | ".join("" if v is None else f"{v:.3f}" for v in cells) + " |")
    return lines


def add_arguments(parser) -> None:
    """The audit's own options of `erase-jax audit` (the scenario's are the unlearn job's)."""
    defaults = AuditConfig()
    parser.add_argument("--shadows", type=int, default=defaults.shadows, help="K shadow models (default %(default)s)")
    parser.add_argument("--audited", type=int, default=defaults.audited, help="forgotten training pairs audited (default %(default)s)")
    parser.add_argument("--epochs", type=int, help="each shadow's fixed epochs (default: the run's train.epochs)")
    parser.add_argument("--audit-seed", type=int, help="seed of the audited pairs, assignment and shadows (default: the forget set's)")
    parser.add_argument("--population", type=int, default=defaults.population, help="test pairs, RMIA's population")
    parser.add_argument("--group-size", type=int, default=defaults.group_size, help="shadows per vmapped call (0: all at once)")
    parser.add_argument("--devices", type=int, default=defaults.devices, help="split the shadows over this many devices (0: one)")
    parser.add_argument("--memorised", type=int, default=0, help="add the N most memorised forgettable pairs (a pilot run)")
    parser.add_argument("--pilot-shadows", type=int, default=defaults.pilot_shadows, help="the pilot's shadows (with --memorised)")
    parser.add_argument("--removals", nargs="+", default=list(REMOVALS),
                        help="untouched (the ceiling), retrain (the floor) and methods (default: all)")
    parser.add_argument("--replace", action="store_true", help="start the audit file afresh (other settings)")


def config_from_arguments(args) -> AuditConfig:
    if args.evaluators:
        raise ValueError("audit: --evaluators is the unlearn job's option; the audit measures itself")
    return AuditConfig(shadows=args.shadows, audited=args.audited, epochs=args.epochs, seed=args.audit_seed,
                       population=args.population, group_size=args.group_size, devices=args.devices,
                       memorised=args.memorised, pilot_shadows=args.pilot_shadows, removals=tuple(args.removals))
