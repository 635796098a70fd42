"""The per-pair unlearning audit (issue 20): can an attacker tell a removed pair from one never
trained, per method; what its shadows cost; and the retrain reference's own noise floor, against
which every method's distance to the retrain is judged."""

from __future__ import annotations

from erase_jax.grid.svg import log_log_chart
from results_topics.cells import PROVENANCE_COLUMNS, Section, files_line, load_cell, num, seconds, source, table, times
from results_topics.read import BENCH, EXP, REPO_ROOT, load

TITLE = "Privacy audit and the retrain reference"
AUDIT = EXP + "privacy_audit_ml-100k.json"
AUDIT_LIGHTGCN = EXP + "privacy_audit_ml-100k_lightgcn.json"
AUDIT_SASREC = EXP + "privacy_audit_sasrec_ml-100k.json"
SHADOW_COST = BENCH + "shadow_training_cost.json"
REFERENCE = EXP + "retrain_reference_ml-100k.json"
SEIF_COLLAPSE = EXP + "seif_collapse_ml-100k.json"
METHOD_DISTANCE = EXP + "method_distance_ml-100k.json"
REMOVAL_ORDER = ("original", "untouched", "retrain", "scif", "kookmin", "fanchuan", "gif", "ceu", "idea", "seif")


GAME_TITLES = {"game2": "game 2 (both after removal)", "game1": "game 1 (OUT before removal)"}


def roc_figures(removals: dict, label: str, prefix: str) -> tuple[tuple[str, str], ...]:
    """One log-scale ROC figure per game (TPR against FPR, one curve per removal), from the
    points the experiment keeps (`roc.log_roc`); none for a run that kept no points."""
    figures = []
    for game, title in GAME_TITLES.items():
        curves = {name: (removals[name][f"{game}_log_roc_global"]["fpr"], removals[name][f"{game}_log_roc_global"]["tpr"])
                  for name in REMOVAL_ORDER if f"{game}_log_roc_global" in removals.get(name, {})}
        if curves:
            figures.append((f"{prefix}_roc_{game}.svg", log_log_chart(f"{label}, {title}", curves, "FPR", "TPR")))
    return tuple(figures)


def audit() -> Section:
    return audit_of(AUDIT, "BPR", "privacy_audit", "Can an attacker tell a removed pair from one never trained?")


def audit_lightgcn() -> Section:
    return audit_of(AUDIT_LIGHTGCN, "LightGCN", "privacy_audit_lightgcn", "And on LightGCN shadows?")


def audit_sasrec() -> Section:
    """The audit of a sequence model (`experiments/privacy_audit_sasrec_ml-100k.py`: the job's record,
    and the group sizes side by side)."""
    found = load(AUDIT_SASREC)
    record, provenance = found["audit"], found["provenance"]
    settings = record["settings"]["audit"]
    removals = record["removals"]
    rows = [[name, num(removals[name]["game2_global_variance"]["auc"], 3), num(removals[name]["game2_global_variance"]["tpr@0.01fpr"], 3),
             num(removals[name]["game1_global_variance"]["auc"], 3), num(removals[name]["rmia_offline_4_references"]["auc"], 3),
             num(removals[name]["mean_phi_after_removal"]["UNLEARN"], 3), num(removals[name]["mean_phi_after_removal"]["OUT"], 3),
             seconds(removals[name]["removal"]["seconds"]), *source(provenance)]
            for name in REMOVAL_ORDER if name in removals]
    one, together = record["one_model"], record["shadows_together"]
    auc = {name: removals[name]["game2_global_variance"]["auc"] for name in removals}
    answer = (f"SASRec, game 2 AUC (K = {settings['shadows']}, {together['epochs']} epochs): "
              + ", ".join(f"{name} {num(auc[name], 3)}" for name in REMOVAL_ORDER if name in auc)
              + f"; trained minus never-trained mean phi {num(record['memorisation_gap_trained_minus_out'], 3)} nats"
              + ("; the untouched ceiling is at chance: nothing to detect at this budget, so no method can be judged"
                 if auc.get("untouched", 1.0) < 0.55 else ""))
    intro = (f"ML-100K SASRec (the method-distance run: all-positions objective, batch 32, dropout 0.5), Horror "
             f"(fraction 0.001, ratings >= 3.5): {record['data']['audited_pairs']} forgotten training interactions "
             f"audited, K = {settings['shadows']} shadows of {together['epochs']} epochs; OUT removes the interaction as "
             "the SBR retrain does (sequence rebuilt, split again); the observation is phi of the item after the prefix "
             "before it. Mean phi before removal: "
             + ", ".join(f"{state} {num(value, 3)}" for state, value in record["mean_phi_trained"].items())
             + f". One model {seconds(one['train_seconds'])} s, {together['n_shadows']} shadows "
             f"{seconds(together['train_seconds'])} s in groups of {together['group_size']} "
             f"({times(together['train_seconds'] / one['train_seconds'])} one model; load "
             f"{load_cell(record['load_average_1min']['before'], record['load_average_1min']['after'])}).")
    lines = [intro, "", *table(["removal", "game 2 AUC", "TPR@1% FPR", "game 1 AUC", "RMIA AUC", "mean phi UNLEARN",
                                "mean phi OUT", "removal s (all shadows)", *PROVENANCE_COLUMNS], rows), ""]
    comparison = found.get("group_size_comparison")
    if comparison:
        best = {name: min(t["train_seconds"] for t in runs) for name, runs in comparison["timings"].items()}
        lines += [f"Group size side by side ({comparison['n_shadows']} shadows, {comparison['epochs']} epoch, alternated "
                  f"twice, best of two, load {num(min(comparison['load_average_1min']), 1)}-"
                  f"{num(max(comparison['load_average_1min']), 1)}): one at a time {seconds(best['one_at_a_time'])} s, "
                  f"one vmapped call {seconds(best['vmapped'])} s ({times(comparison['vmapped_over_one_at_a_time_train_seconds'])}).", ""]
    return Section("And on sequence (SASRec) shadows?", answer, [*lines, files_line(AUDIT_SASREC)])


def audit_of(path: str, label: str, prefix: str, title: str) -> Section:
    """The audit's table and ROC figures for one model's result file."""
    record = load(path)
    removals = record["removals"]
    earlier = record.get("kept_from_earlier_run", {})
    rows = []
    for name in [n for n in REMOVAL_ORDER if n in removals]:
        found = removals[name]
        game2, game1 = found["game2_global_variance"], found["game1_global_variance"]
        rmia = found["rmia_offline_4_references"]
        phi = found["mean_phi_after_removal"]
        rows.append([name, num(game2["auc"], 3), num(game2["tpr@0.01fpr"], 3), num(game2["tpr@0.001fpr"], 3),
                     num(game1["auc"], 3), num(rmia["auc"], 3), num(phi["UNLEARN"], 2), num(phi["OUT"], 2),
                     seconds(found["removal"]["seconds"]),
                     *source(found.get("provenance") or (earlier["provenance"] if name in earlier.get("removals", ())
                                                          else record["provenance"]))])
    data = record["data"]
    ceiling = "untouched" if "untouched" in removals else "original"
    auc = {name: removals[name]["game2_global_variance"]["auc"] for name in removals}
    over = [n for n in removals if n not in ("original", "untouched", "retrain") and auc[n] > auc[ceiling]]
    answer = (f"{label}, game 2 AUC (K = {record['provenance']['config']['shadows']}, "
              f"{record['provenance']['config']['train.epochs']} epochs): untouched {num(auc[ceiling], 3)}, "
              f"retrain {num(auc['retrain'], 3)}"
              + "".join(f", {n} {num(auc[n], 3)}" for n in REMOVAL_ORDER[3:] if n in removals)
              + (f"; above the untouched model (the removal itself is visible): {', '.join(over)}" if over else ""))
    memorised = data.get("memorised_pairs", 0)
    pairs = (f"{data['audited_pairs']} training pairs audited ({memorised} of them the most memorised forgettable ones "
             "of a pilot, the rest forgotten pairs of the scenario)" if memorised else
             f"{data['audited_pairs']} forgotten training pairs audited")
    intro = (f"ML-100K {label}, Horror (fraction 0.003, ratings >= 3.5): {pairs}, "
             f"K = {record['provenance']['config']['shadows']} shadows trained "
             f"{record['provenance']['config']['train.epochs']} epochs, each IN / UNLEARN / OUT in a third of the shadows; every removal applied to every shadow (a "
             "method with its defaults, through the protocol's one-user requests built from the shadow's rows); each "
             "shadow in turn the target. Game 2: removed (UNLEARN, after removal) against never trained (OUT, after "
             "removal), LiRA with a pooled variance; game 1: removed against never trained in the model before removal; "
             "RMIA: offline, 4 OUT reference shadows. An AUC near 0.5 means this attack cannot tell the removal from "
             "never training; far ABOVE the untouched model's means the removal leaves its own trace (the pairs pushed below "
             "never-trained ones: compare mean phi of UNLEARN and OUT after removal). What a score cannot show: "
             "`docs/privacy_audit.md`.")
    header = ["removal", "game 2 AUC", "TPR@1% FPR", "TPR@0.1% FPR", "game 1 AUC", "RMIA AUC", "mean phi UNLEARN",
              "mean phi OUT", "removal s (all shadows)", *PROVENANCE_COLUMNS]
    figures = roc_figures(removals, label, prefix)
    n_points = max((len(v["game2_log_roc_global"]["fpr"]) for v in removals.values() if "game2_log_roc_global" in v), default=0)
    shown = ([f"The ROC on log-log axes (LiRA's figure: what matters is the TPR at low FPR; the dotted diagonal is "
              f"chance; a TPR of 0 is drawn on the lowest decade), the TPR at up to {n_points} log-spaced FPRs from "
              "1 / negatives" + (f" (no curve for {', '.join(n for n in removals if 'game2_log_roc_global' not in removals[n])}: "
                                 "measured by a run that kept no ROC points)" if any('game2_log_roc_global' not in v
                                                                                   for v in removals.values()) else "")
              + ":", "",
              *(f"![{name}]({name})" for name, _ in figures), ""] if figures else [])
    return Section(title, answer, [intro, "", *table(header, rows), "", *split(removals, record["provenance"]), *shown, files_line(path)], figures)


def split(removals: dict, provenance: dict) -> list[str]:
    """Game 2 on the memorised and the random audited pairs apart, where the run scored them."""
    rows = [[name, *(cell for part in ("memorised", "random") for cell in (
                num(removals[name][f"game2_global_variance_{part}"]["auc"], 3),
                num(removals[name][f"game2_global_variance_{part}"]["tpr@0.01fpr"], 3))), *source(provenance)]
            for name in REMOVAL_ORDER if "game2_global_variance_memorised" in removals.get(name, {})]
    if not rows:
        return []
    return ["Game 2 on the memorised and the random pairs apart:", "",
            *table(["removal", "memorised AUC", "memorised TPR@1% FPR", "random AUC", "random TPR@1% FPR", *PROVENANCE_COLUMNS],
                   rows), ""]


def shadow_cost() -> Section:
    record = load(AUDIT)
    one, together = record["one_model"], record["shadows_together"]
    cost = load(SHADOW_COST)
    rows = [[str(r["group_size"]), seconds(r["seconds_per_epoch_all_shadows"]),
             times(r["seconds_per_epoch_all_shadows"] / cost["one_model"]["seconds_per_epoch"]),
             load_cell(cost["load_average_1min"]["before"], cost["load_average_1min"]["after"]), *source(cost["provenance"])]
            for r in cost["shadow_training"]]
    pieces = [[str(p["k"]), f"{p['gathered_megabytes']:.0f}", seconds(p["loss_seconds"]), seconds(p["gradient_seconds"]),
               seconds(p["adam_seconds"]), seconds(p["select_seconds"]),
               times(p["gradient_seconds"] / cost["step_pieces"][0]["gradient_seconds"]), *source(cost["provenance"])]
              for p in cost["step_pieces"]]
    ratio = together["train_seconds"] / one["train_seconds"]
    answer = (f"{together['n_shadows']} shadows {seconds(together['train_seconds'])} s (groups of "
              f"{together['group_size']}) against one model's {seconds(one['train_seconds'])} s ({times(ratio)}); as one "
              "vmap on this CPU the step's gathered rows fall out of the cache: see the table")
    intro = (f"The audit's run: one model {seconds(one['train_seconds'])} s, {together['n_shadows']} shadows "
             f"{seconds(together['train_seconds'])} s in vmapped groups of {together['group_size']} ({times(ratio)} one model), "
             f"100 epochs each (load {load_cell(record['load_average_1min']['before'], record['load_average_1min']['after'])}). "
             "Side by side in one process (below), the audit's K shadows trained a few epochs in vmapped groups of K, 8, 4 "
             "and 1 (1 = the unvmapped epoch), per epoch for all K and against one model alone; then the pieces of one "
             "vmapped step of k models on one random batch of 2048 rows: the loss (three embedding gathers of "
             "[k, 2048, 64]), its gradient (with the scatter-adds), the Adam update and the select that keeps padding "
             "steps from moving a shadow.")
    return Section("What do K shadows cost next to one model?", answer, [
        intro, "", *table(["group size", "s per epoch (all shadows)", "x one model", "load", *PROVENANCE_COLUMNS], rows), "",
        *table(["k models", "gathered MB", "loss s", "gradient s", "Adam s", "select s", "gradient x k=1",
                *PROVENANCE_COLUMNS], pieces), "", files_line(AUDIT, SHADOW_COST)])


def retrain_reference() -> Section:
    record = load(REFERENCE)
    spread = record["originals_spread"]["test_recall@20"]
    rows = []
    for k, found in record["retrains"].items():
        for name, values in found["original_budget"].items():
            rows.append([k, name, "original's", str(values["epochs"]), num(values["test_recall@20"]),
                         "yes" if values["within_originals_spread"] else "**no**", *source(record["provenance"])])
        early = found["early_stopping"]
        rows.append([k, "retrain", "early stopping", str(early["epochs"]), num(early["test_recall@20"]), "",
                     *source(record["provenance"])])
    floors = [[k, str(f.get("n_seeds", 0)), *(num(f.get(key), 4) for key in ("gap_test_recall@20", "gap_test_ndcg@10")),
               num(f.get("gap_pct_users_with_sensitive@20"), 1), num(f.get("gap_forgotten_hit@20"), 4),
               num(f.get("agree_unlearned_jaccard@20"), 3), *source(record["provenance"])]
              for k, f in ((k, v["noise_floor"]) for k, v in record["retrains"].items())]
    answer = (f"originals' test Recall@20 over seeds {num(spread[0])}-{num(spread[1])}; retrains with the original's "
              f"budget within it at " + ", ".join(f"k={k}: {sum(v['within_originals_spread'] for v in f['original_budget'].values())}"
                                                  f"/{len(f['original_budget'])}" for k, f in record["retrains"].items())
              + f"; retrain-vs-retrain Jaccard@20 at k=3: {num(record['retrains']['3']['noise_floor'].get('agree_unlearned_jaccard@20'), 3)}")
    seeds = ", ".join(str(s) for s in record["originals"])
    moments = record.get("originals_moments", {}).get("test_recall@20")
    pooled = record.get("retrains_recall@20_moments")
    if moments and pooled:
        answer += (f"; test Recall@20 mean +/- std: originals {num(moments['mean'])} +/- {num(moments['std'])} "
                   f"(n={moments['n']}), retrains {num(pooled['mean'])} +/- {num(pooled['std'])} (n={pooled['n']})")
    intro = (f"ML-100K BPR, Horror (98 requests): the originals trained with seeds {seeds} for 100 epochs (best "
             "validated kept), the retrains of seed 2's run at each checkpoint with the original's budget (100 epochs, "
             "early stopping off) and seeds 2 (the reference), 3 and 4, and with the run's own stopping rule, which "
             "for these runs is patience 100 (so the same 100 epochs: the comparison with patience 10, where the "
             "retrains of checkpoints 0-2 stopped near epoch 25 at test Recall@20 0.166, is in "
             "`experiments/results/unlearning_protocol_ml-100k.md`). The noise floor of a gap is the largest gap of a retrain with another seed to the "
             "reference (Jaccard: the lowest such retrain's Jaccard with the reference).")
    return Section("Is the retrain a reference, and how noisy is it?", answer, [
        intro, "", *table(["k", "model", "budget", "epochs", "test Recall@20", "within the originals' spread", *PROVENANCE_COLUMNS], rows),
        "", "Noise floor per checkpoint:", "",
        *table(["k", "other seeds", "Recall@20", "NDCG@10", "% users with Horror @20", "forgotten hit@20",
                "Jaccard@20 (lowest)", *PROVENANCE_COLUMNS], floors), "", files_line(REFERENCE)])


def methods_by_the_floor() -> Section:
    record = load(METHOD_DISTANCE)
    rows, violating = [], []
    for model, found_model in record["models"].items():
        floor = found_model["noise_floor"]
        carried = found_model.get("carried_from", {})  # rows of methods an earlier run of the same model measured
        earlier = found_model.get("earlier_defaults", {})  # rows measured before a method's default changed
        served = [(method + (f" (earlier default: {earlier[method]})" if method in earlier else ""), found,
                   carried["provenance"] if method in carried.get("methods", ()) else found_model["provenance"])
                  for method, found in found_model["methods_at_checkpoint_3"].items() if method != "trained"]
        served += [(f"{v['method']} ({', '.join(v['options'])}; diagnosis)", v["at_checkpoint_3"], v["provenance"])
                   for v in found_model.get("variants", {}).values()]
        for method, found, provenance_block in served:
            gaps, beyond = found["gaps"], found["beyond_floor"]
            mark = lambda key, digits: num(gaps.get(key), digits) + ("" if beyond.get(key, True) else " ~")
            if not found["passes"] and "diagnosis" not in method and "earlier default" not in method:
                violating.append(f"{model} {method}")
            rows.append([model, method, num(found["jaccard_with_retrain"], 3), num(found["trained_jaccard"], 3),
                         num(floor.get("agree_unlearned_jaccard@20"), 3), num(found["recall@20"], 4),
                         f"{100 * found['recall_loss']:.1f}", mark("pct_users_with_sensitive@20", 1),
                         mark("forgotten_hit@20", 4), "yes" if found["further_than_doing_nothing"] else "no",
                         "**fails**" if not found["passes"] else "passes", *source(provenance_block)])
    answer = ("at checkpoint 3 on ML-100K Horror, failing the acceptance (further than doing nothing beyond the "
              f"retrain-vs-retrain distance, or > 5 % of the retrain's Recall@20 lost): {', '.join(violating) or 'none'}")
    intro = ("Every method with its defaults on seed 2's run of each model (BPR and LightGCN 100 epochs, best validated "
             "kept; SASRec all-positions training for the epochs in its config cell), the reference retrain and "
             "retrains with other seeds (3 and 4; SASRec only 3, for time) at checkpoint 3 (the floor: the lowest "
             "Jaccard@20 of such a retrain with the reference). A method missing for a model did not finish in the time. "
             "Fails: Jaccard@20 with the retrain (on the unlearned users) below the trained model's (doing nothing) by "
             "more than 1 - the floor, or more than 5 % of the retrain's Recall@20 lost. `~` marks a gap within the "
             "noise floor. Rows marked 'diagnosis' serve one method with other options (`--variant`) to locate a "
             "failure; the diagnosis of each: `docs/notes/2026-12-07-privacy-audit-methods.md`. The file was "
             "written by `experiments/method_distance_ml-100k.py`; the grids `experiments/grids/method_distance_ml-100k.yaml` "
             "(BPR, LightGCN) and `method_distance_sasrec_ml-100k.yaml`, then `python experiments/leaderboard_acceptance.py "
             "<grid> --model <model> --out experiments/results/method_distance_ml-100k.json`, write the same entries "
             "(the diagnoses' variants only the script does). A model's rows may come from two runs of the script on the "
             "same trained model and reference (equal to the last digit): each row names its own.")
    header = ["model", "method", "Jaccard@20 with retrain", "doing nothing's (trained)", "retrain vs retrain", "Recall@20",
              "% Recall@20 lost", "% users with Horror @20 gap", "forgotten hit@20 gap", "below doing nothing's Jaccard",
              "acceptance", *PROVENANCE_COLUMNS]
    return Section("Which methods' defaults move further from the retrain than doing nothing?", answer,
                   [intro, "", *table(header, rows), "", files_line(METHOD_DISTANCE)])


def seif_collapse() -> Section:
    record = load(SEIF_COLLAPSE)
    variants = record["variants"]
    counts = [r["requests"] for r in variants["defaults"]["after"]]
    rows = [[name, ", ".join(f"{k}: {v}" for k, v in found["options"].items()) or "the original's",
             *(num(r["test_recall@20"]) for r in found["after"]),
             num(found["after"][-1]["norms"]["params/item_embedding/embedding"], 2), *source(record["provenance"])]
            for name, found in variants.items()]
    trained = record["trained"]
    last = {name: found["after"][-1]["test_recall@20"] for name, found in variants.items()}
    answer = (f"the erase noise, compounding over the requests: test Recall@20 after {counts[-1]} requests "
              f"{num(last['defaults'])} with the defaults, {num(last.get('erase_only'))} with the noise alone, "
              f"{num(last.get('no_erase'))} with the repair alone (trained {num(trained['test_recall@20'])})")
    intro = ("ML-100K BPR (seed 2, 100 epochs, best validated kept), the first requests of the Horror stream (one user "
             "each) served by SEIF with its steps switched off one at a time; test Recall@20 after each number of "
             f"requests and the mean item embedding row norm after the last (trained "
             f"{num(trained['norms']['params/item_embedding/embedding'], 2)}). The mechanism and why it is the "
             "original's defaults: `docs/notes/2026-12-07-privacy-audit-methods.md`.")
    header = ["variant", "options", *(f"Recall@20 after {n}" for n in counts), "item row norm", *PROVENANCE_COLUMNS]
    return Section("What collapses SEIF on BPR?", answer, [intro, "", *table(header, rows), "", files_line(SEIF_COLLAPSE)])


SECTIONS = (audit, *((audit_lightgcn,) if (REPO_ROOT / AUDIT_LIGHTGCN).is_file() else ()),
            *((audit_sasrec,) if (REPO_ROOT / AUDIT_SASREC).is_file() else ()), shadow_cost, retrain_reference, methods_by_the_floor, seif_collapse)
