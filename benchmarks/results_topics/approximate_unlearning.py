"""Approximate unlearning: what each method (SCIF, GIF, CEU, IDEA, Kookmin, Fanchuan, SEIF) does to a
model's utility and to what it recommends, per scenario; whether the CF fraud attack reaches genuine
users at all; and what a request and the influence core underneath it cost."""

from __future__ import annotations

from erase_jax.result_labels import OLD_NAME, TRAINED, UNTOUCHED, current_rows
from results_topics.cells import PROVENANCE_COLUMNS, Section, files_line, load_cell, num, seconds, section, source, table, times
from results_topics.read import BENCH, EXP, REFERENCES, load, pick, references

TITLE = "Approximate unlearning: effect and cost"
METHOD_ORDER = [TRAINED, "retrain", "scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif"]
SBR_CASES = (("SASRec", "sensitive"), ("GRU4Rec", "sensitive"), ("SASRec", "spam"), ("GRU4Rec", "spam"))
COST_FILES = {"BPR": BENCH + "unlearning_cost_ml-100k_bpr.json", "LightGCN": BENCH + "unlearning_cost_ml-100k_lightgcn.json"}
KOOKMIN_FILES = (("kookmin, before the selection shortcut", BENCH + "unlearning_cost_kookmin_before_shortcut_ml-100k.json"),
                 ("kookmin, after it", BENCH + "unlearning_cost_kookmin_after_shortcut_ml-100k.json"))


def present_methods(rows: list[dict]) -> list[str]:
    found = {row["method"] for row in current_rows(rows)}
    return [m for m in METHOD_ORDER if m in found]


def request_seconds(row: dict) -> str:
    if row["method"] == "retrain":
        return f"{seconds(row['retrain_seconds'])} per retrain" if row.get("retrain_seconds") else ""
    if row["method"] == TRAINED or not row.get("request_seconds_median"):
        return ""
    return f"{seconds(row['request_seconds_median'])} / {seconds(row['request_seconds_mean'])}"


def trained_step(provenance: dict) -> str:
    """The step whose job wrote the trained model's rows: the do-nothing method's (`untouched`;
    `original` in files written before the rename)."""
    return next((step for step in (UNTOUCHED, OLD_NAME) if step in provenance.get("commits", {})), UNTOUCHED)


def setting(config: dict, key: str):
    """A setting of a run's config block: its own key, or a `key=value` among its overrides."""
    if key in config:
        return config[key]
    return dict(a.split("=", 1) for a in config.get("overrides", []) if "=" in a)[key]


def sbr_unlearning(model: str, scenario: str) -> tuple[list[list[str]], list[dict], str]:
    """The table rows of one SBR protocol run at its last checkpoint, its unlearning.csv rows and its file."""
    path = EXP + f"sbr_unlearning_ml-100k_{model}_{scenario}.json"
    record = load(path)
    rows = record["rows"]
    body = []
    for method in present_methods(rows):
        row = pick(rows, method)
        step = trained_step(record["provenance"]) if method == TRAINED else method
        if scenario == "sensitive":
            measures = [num(row["pct_users_with_sensitive@20"], 1), num(row["forgotten_hit@20"], 3),
                        num(row["agree_unlearned_jaccard@20"], 3) if method != "retrain" else "1"]
        else:
            measures = [num(row["spam_users_with_target@20"], 3), num(row["spam_mean_target_rank"], 0)]
        body.append([method, num(row["test_ndcg@10"]), num(row["test_recall@20"]), *measures, request_seconds(row),
                     *source(record["provenance"], step)])
    return body, rows, path


def methods_answer(protocol_rows: dict[tuple[str, str], list[dict]]) -> str:
    """The method closest to the retrain's top 20 on Horror, and the methods that lose most utility everywhere."""
    unlearning = lambda rows: [m for m in present_methods(rows) if m not in (TRAINED, "retrain")]
    closest = []
    for (model, scenario), rows in protocol_rows.items():
        if scenario == "sensitive":
            best = max(unlearning(rows), key=lambda m: float(pick(rows, m)["agree_unlearned_jaccard@20"]))
            closest.append(f"{best} on {model} ({num(pick(rows, best)['agree_unlearned_jaccard@20'], 3)})")
    halved = lambda rows, m: float(pick(rows, m)["test_ndcg@10"]) < 0.5 * float(pick(rows, "retrain")["test_ndcg@10"])
    collapsed = [m for m in METHOD_ORDER if all(m in unlearning(rows) and halved(rows, m) for rows in protocol_rows.values())]
    return (f"closest to the retrain's top 20 on Horror (Jaccard@20): {', '.join(closest)}; below half the retrain's "
            f"test NDCG@10 in all {len(protocol_rows)} SBR runs: {', '.join(collapsed) or 'none'}")


def approximate_methods() -> Section:
    lines = [
        "The sequential protocol: one request per user in the original's order, four checkpoints, each method from "
        "the trained model, the retrain trained from scratch without the removed rows (the reference). Utility = test "
        "metrics on the split recomputed without the removed rows. Per-request seconds were measured on a shared "
        "machine: upper bounds.",
        "",
        "**BPR, ML-100K, Horror, spam and random.** Every method, from the grid `cf_ml-100k` "
        "(`erase-jax grid experiments/grids/cf_ml-100k.yaml`): its gaps to the retrain and costs are on "
        "[the grids' page](grids.md), the whole leaderboard in "
        "[experiments/results/grids/cf_ml-100k/leaderboard.html](../../experiments/results/grids/cf_ml-100k/leaderboard.html). "
        "Earlier measurements of BPR on Horror, from run folders that were not kept: "
        "[docs/notes/2026-11-23-influence-methods-bpr-horror.md](../../docs/notes/2026-11-23-influence-methods-bpr-horror.md).",
    ]
    sensitive_header = ["method", "test NDCG@10", "Recall@20", "% unlearned users with Horror @20", "forgotten items hit@20",
                        "Jaccard@20 vs retrain", "s/request median / mean", *PROVENANCE_COLUMNS]
    spam_header = ["method", "test NDCG@10", "Recall@20", "share of genuine users with a target @20", "mean target rank",
                   "s/request median / mean", *PROVENANCE_COLUMNS]
    protocol_rows = {}
    for model, scenario in SBR_CASES:
        body, rows, path = sbr_unlearning(model, scenario)
        protocol_rows[model, scenario] = rows
        record = load(path)
        requests = pick(rows, "scif")["n_requests"]
        what = (f"Horror, fraction {record['fraction']}" if scenario == "sensitive"
                else f"fraud sessions, ratio {setting(record['provenance']['config'], 'data.spam_ratio')}")
        lines += ["", f"**{model}, ML-100K sequences, {what} ({requests} requests).**", "",
                  *table(sensitive_header if scenario == "sensitive" else spam_header, body), "", files_line(path)]
    lines += ["", "These four runs are of `experiments/sbr_unlearning_ml-100k.py` (6 epochs), since replaced by the grid "
                  "`erase-jax grid experiments/grids/sbr_ml-100k.yaml` (every SBR model and method, 12 epochs); from its "
                  "leaderboard, `python experiments/leaderboard_rows.py experiments/grids/sbr_ml-100k.yaml --model SASRec "
                  "--scenario horror --out experiments/results/sbr_unlearning_ml-100k_SASRec_sensitive.json` writes such a "
                  "file (`--scenario fraud` for the `_spam` ones)."]
    lines += ["", "CEU, IDEA and GIF in these four tables ran their correct modes as they were before commit a0de17e (the "
                  "Newton system of the whole data, Gauss-Newton curvature by default, no retain fine-tuning); they have not "
                  "been rerun since."]
    return Section("What each approximate method does, per scenario (last checkpoint: every request done)",
                   methods_answer(protocol_rows), lines)


SPAM_STRENGTH = (("ERASE's (popular fillers)", EXP + "spam_strength_ml-100k.json"),
                 ("literature's (10 most popular in every fake, random fillers)",
                  EXP + "spam_strength_ml-100k_bandwagon_selected.json"))


def cf_spam_attack() -> Section:
    rows, reached, files = [], [], []
    for profile, path in SPAM_STRENGTH:
        try:
            record = load(path)
        except FileNotFoundError:
            continue
        files.append(path)
        for row in record["rows"]:
            model = row.get("model", "BPR")
            for trained_on in ("clean", "poisoned"):
                e = row[trained_on]
                clean_mass = row["clean"].get("mean_target_mass_masked")
                mass = (e.get("mean_target_mass_masked") / clean_mass) if clean_mass else None
                rows.append([model, profile, row["ratio"], row["n_fake_users"], trained_on,
                             num(e["users_with_target@20_masked"]), num(e.get("target_hit_ratio@20_masked")),
                             num(e.get("target_hit_ratio@50_masked")), num(e["mean_target_rank"], 0),
                             num(mass, 2), num(e["test_recall@20"]), *source(record["provenance"])])
                if trained_on == "poisoned":
                    reached.append(e["users_with_target@20_masked"])
    intro = ("Clean and poisoned models trained for the same fixed budget (BPR 100 epochs; ItemKNN is computed, not "
             "trained); each fake user rates all 10 targets (from the 20 % least popular items) and either ERASE's "
             "fillers (from the popular 20 %) or the shilling literature's bandwagon profile (the 10 most popular items "
             "in every fake plus random fillers; `data.spam_attack: bandwagon_selected`). Over the genuine users, their "
             "training items masked: the share with a target in the top 20, the target hit ratio @20 / @50 (share of "
             "(user, target) pairs in the top k), the mean target rank, and the mean softmax mass per target relative to "
             "the clean model. The clean model is also the retrain without all fake users.")
    header = ["model", "fake profile", "fake-user ratio", "fake users", "trained on", "users with a target @20",
              "hit ratio @20", "hit ratio @50", "mean target rank", "target mass / clean", "test Recall@20",
              *PROVENANCE_COLUMNS]
    return section("Does the CF bandwagon attack reach genuine users? (ML-100K, BPR and ItemKNN)",
                   f"barely: at most {num(max(reached))} of genuine users have a target in their top 20 (history "
                   "masked), for either fake profile and fake-user ratios up to 0.2; the targets' rank and softmax mass "
                   "move (table)", intro, table(header, rows), *files)


def cost_row(model: str, label: str, result: dict, method: str, reference: dict | None) -> list[str]:
    """A row of the request cost table: seconds per request, next to the original's where there is one."""
    stats = result["results"][model][method]
    compared = (["", ""] if reference is None else
                [f"{seconds(reference['median'])} / {seconds(reference['mean'])}",
                 f"{times(reference['median'] / stats['median'])} / {times(reference['mean'] / stats['mean'])}"])
    return [model, label, seconds(stats["median"]), seconds(stats["p90"]), seconds(stats["mean"]), seconds(stats["max"]),
            *compared, load_cell(result["load_average_start"], result["load_average_end"]), *source(result["provenance"])]


def approximate_cost() -> Section:
    original = references()["original_erase_request_seconds_ml-100k_bpr_horror"]["methods"]
    result = load(COST_FILES["BPR"])
    bpr_methods = ("scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif")
    rows = [cost_row("BPR", method, result, method, original[method]) for method in bpr_methods]
    rows += [cost_row("BPR", label, load(path), "kookmin", original["kookmin"]) for label, path in KOOKMIN_FILES]
    rows += [cost_row("LightGCN", method, load(COST_FILES["LightGCN"]), method, None) for method in ("scif", "ceu")]
    medians = {m: result["results"]["BPR"][m]["median"] for m in bpr_methods}
    speed_ups = [original[m]["median"] / medians[m] for m in bpr_methods]
    fastest, slowest = min(medians, key=medians.get), max(medians, key=medians.get)
    intro = ("Wall seconds per request (data preparation, retain sampling, the method, device-synchronised; checkpoint "
             "writing excluded), models trained 30 epochs (LightGCN stopped early). The first request of each new padded "
             "shape also compiles: the median is the steady state, the mean includes compilation. Original = the PyTorch "
             "original on the same kind of machine (its own prints, which include saving). These runs predate the correct "
             "modes' current defaults for CEU, IDEA and GIF (commit a0de17e).")
    header = ["model", "method", "median s", "p90 s", "mean s", "max s", "original median / mean s", "speed-up median / mean",
              "load start - end", *PROVENANCE_COLUMNS]
    answer = (f"BPR, median seconds per request: {seconds(medians[fastest])} ({fastest}) to {seconds(medians[slowest])} "
              f"({slowest}), {times(min(speed_ups))} to {times(max(speed_ups))} faster than the PyTorch original (medians)")
    return section("What an approximate unlearning request costs (ML-100K, Horror, 98 requests)", answer, intro,
                   table(header, rows), COST_FILES["BPR"], *(path for _, path in KOOKMIN_FILES), COST_FILES["LightGCN"],
                   REFERENCES)


def influence_core() -> Section:
    path = BENCH + "influence_scaling.json"
    record = load(path)
    rows = []
    for case in record["items"]:
        rows.append([f"{case['n_items']:,} items", f"{1e3 * case['gradient_seconds']:.1f}", f"{1e3 * case['hvp_seconds']:.1f}",
                     f"{1e3 * case['scif_request_seconds']:.1f}", *source(record["provenance"])])
    constants = record["provenance"]["config"].get("script constants at d742188", {})
    cost_config = load(COST_FILES["BPR"])["provenance"]["config"]
    sizes = "; ".join(f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v}"
                      for k, v in [*constants.items(), *cost_config.get("script constants", {}).items()]) or "none"
    for case in record["devices"]:
        rows.append([f"{case['devices']} forced host device(s), HVP", "", f"{1e3 * case['hvp_seconds_16k_rows']:.1f}", "",
                     *source(record["provenance"])])
    trained = []
    for model, file in COST_FILES.items():
        result = load(file)
        entry = result["results"][model]
        rows.append([f"{model} (trained ML-100K model)", f"{1e3 * entry['gradient_seconds']:.2f}",
                     f"{1e3 * entry['hvp_seconds']:.2f}", "", *source(result["provenance"])])
        trained.append(f"{1e3 * entry['hvp_seconds']:.2f} ms ({model})")
    hvp = [1e3 * case["hvp_seconds"] for case in record["items"]]
    items = [case["n_items"] for case in record["items"]]
    intro = ("A BPR model on synthetic rows, one gradient and one HVP of the loss over all parameters, and one SCIF request, "
             "as the item table grows; then the HVP with its rows split over forced host devices, which share the "
             "machine's two cores. The last two rows time the trained ML-100K models of the cost table above. Sizes, where "
             "the file records them: " + sizes + ".")
    answer = (f"one HVP: {min(hvp):.1f} to {max(hvp):.1f} ms for synthetic BPR models of {min(items):,} to {max(items):,} "
              f"items; {' and '.join(trained)} on the trained ML-100K models")
    return section("What the influence core costs", answer, intro,
                   table(["case", "gradient ms", "HVP ms", "SCIF request ms", *PROVENANCE_COLUMNS], rows), path, *COST_FILES.values())


SECTIONS = (approximate_methods, cf_spam_attack, approximate_cost, influence_core)
