"""Session-based recommendation: do GRU4Rec, NARM, SASRec and SR-GNN reach RecBole's quality on ML-100K
sequences at the same epoch budget, and how much shorter is an erase-jax training epoch?"""

from __future__ import annotations

from results_topics.cells import PROVENANCE_COLUMNS, Section, load_cell, num, seconds, section, source, table, times
from results_topics.read import BENCH, load

TITLE = "Session-based models: quality and speed"
SBR_MODELS = ("GRU4Rec", "NARM", "SASRec", "SRGNN")
MIXED_FILES = {"GRU4Rec": BENCH + "jax_sbr_quality3_mixed_ml-100k.json", "SASRec": BENCH + "jax_sbr_quality3_mixed_ml-100k.json",
               "NARM": BENCH + "jax_sbr_quality3_mixed_narm_ml-100k.json", "SRGNN": BENCH + "jax_sbr_quality3_mixed_srgnn_ml-100k.json"}


def quality() -> Section:
    recbole_file, bucketed_file = BENCH + "recbole_sbr_quality3_ml-100k.json", BENCH + "jax_sbr_quality_fixed_budget_ml-100k.json"
    rows, pairs = [], []
    for model in SBR_MODELS:
        base = load(recbole_file)["models"][model]
        rows.append([model, "RecBole 1.2.1", base["best_epoch"], num(base["test"]["ndcg@10"]), num(base["test"]["mrr@10"]),
                     num(base["test"]["recall@20"]), *source(base["provenance"])])
        result = load(MIXED_FILES[model])
        run = result["models"][model]
        rows.append([model, "erase-jax, length-mixed batches (the default)", run["best_epoch"], num(run["test"]["ndcg@10"]),
                     num(run["test"]["mrr@10"]), num(run["test"]["recall@20"]), *source(result["provenance"])])
        pairs.append(f"{model} {num(run['test']['ndcg@10'])} / {num(base['test']['ndcg@10'])}")
        bucketed = load(bucketed_file)["runs"].get(f"sbr_q3_{model.lower()}")
        if bucketed is not None:
            rows.append([model, "erase-jax, length-bucketed batches", bucketed["best_epoch"], num(bucketed["test"]["ndcg@10"]),
                         num(bucketed["test"]["mrr@10"]), num(bucketed["test"]["recall@20"]), *source(bucketed["provenance"])])
    intro = ("One chronological sequence per user, prefix -> next-item rows (prefixes cut to 50 items), per-user 80/10/10 "
             "split of the rows, CE over all items, batch 256, Adam lr 1e-3, seed 2, validation on MRR@10 after every epoch "
             "and the best epoch tested. Neither side could train to early stopping on the shared machine, so both got 3 "
             "epochs. Single runs; the seed-to-seed spread is not measured.")
    header = ["model", "implementation", "best epoch", "test NDCG@10", "MRR@10", "Recall@20", *PROVENANCE_COLUMNS]
    return section("Session-based models on ML-100K sequences at a 3-epoch budget, next to RecBole",
                   "test NDCG@10, erase-jax (default batches) / RecBole: " + ", ".join(pairs), intro, table(header, rows),
                   recbole_file, *sorted(set(MIXED_FILES.values())), bucketed_file)


def speed() -> Section:
    jax_file, recbole_file = BENCH + "jax_sbr_speed_lowload_ml-100k.json", BENCH + "recbole_sbr_batches_lowload_ml-100k.json"
    change_file = BENCH + "jax_sbr_speed_before_after_ml-100k.json"
    rows, ratios = [], []
    for model in SBR_MODELS:
        base = load(recbole_file)["models"][model]
        rows.append([model, "RecBole 1.2.1, 20 batches extrapolated to an epoch", seconds(base["extrapolated_epoch_wall_seconds"]),
                     seconds(base["extrapolated_epoch_cpu_seconds"]), "", load_cell(base["load_average_start"], base["load_average_end"]),
                     *source(base["provenance"])])
        result = load(jax_file)
        run = result["models"][model]
        ratio = times(base["extrapolated_epoch_wall_seconds"] / run["median_epoch_seconds"])
        rows.append([model, "erase-jax, bucketed batches", seconds(run["median_epoch_seconds"]),
                     seconds(run["epoch_cpu_seconds"][0]), ratio,
                     load_cell(result["load_average_start"], result["load_average_end"]), *source(result["provenance"])])
        ratios.append(f"{model} {ratio}")
        for when in ("before", "after"):
            timed = load(change_file)["models"][model][when]
            rows.append([model, f"erase-jax, bucketed batches, {when} the step speed-ups", seconds(timed["epoch_seconds"][0]),
                         seconds(timed["epoch_cpu_seconds"][0]), "", load_cell(timed["load_average_start"], timed["load_average_end"]),
                         *source(timed["provenance"])])
    intro = ("Same data and batch size as above (313-315 batches per epoch). The first two rows of each model were taken in "
             "the quietest window available (CPU seconds count both cores); the last two, one after the other on a loaded "
             "machine, measure the code change that made steps cheaper, for which the CPU seconds are the comparable figure. "
             "No epoch has been timed quietly since that change.")
    header = ["model", "implementation", "epoch wall s", "epoch CPU s", "RecBole wall / erase-jax wall",
              "load (1 min) start - end", *PROVENANCE_COLUMNS]
    return section("Session-based models: seconds per training epoch, next to RecBole",
                   "RecBole's epoch wall time over erase-jax's, quietest window: " + ", ".join(ratios), intro, table(header, rows),
                   recbole_file, jax_file, change_file)


SECTIONS = (quality, speed)
