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


def all_positions() -> Section:
    result_file = BENCH + "jax_sbr_all_positions_ml-100k.json"
    recbole_speed, recbole_quality = BENCH + "recbole_sbr_batches_lowload_ml-100k.json", BENCH + "recbole_sbr_quality3_ml-100k.json"
    result = load(result_file)
    load_range = load_cell(result["load_average_start"], result["load_average_end"])
    peak = result["matmul_peak"]["flops_per_second"]
    rows, answers = [], []
    for model, entry in result["models"].items():
        recbole = load(recbole_speed)["models"][model]
        cpu = lambda run: sum(run["epoch_cpu_seconds"]) / len(run["epoch_cpu_seconds"])
        for objective in ("prefixes", "all_positions"):
            run = entry[objective]
            rows.append([model, objective, run["batches_per_epoch"], seconds(run["median_epoch_seconds"]), seconds(cpu(run)),
                         seconds(run["matmul_flops_per_epoch"] / 1e9), f"{100 * run['flops_per_second'] / peak:.1f} %",
                         times(recbole["extrapolated_epoch_wall_seconds"] / run["median_epoch_seconds"]),
                         times(recbole["extrapolated_epoch_cpu_seconds"] / cpu(run)), "", "", load_range, *source(result["provenance"])])
        fit = entry.get("quality")
        base = load(recbole_quality)["models"][model]
        if fit is not None:
            rows.append([model, f"all_positions, fit: {fit['batch_size']} chunks per batch, at most {fit['max_epochs']} epochs "
                         f"(best {fit['best_epoch']})", fit["batches_per_epoch"], "", "", "", "", "", "",
                         f"{num(fit['test']['ndcg@10'])} in {seconds(fit['fit_seconds_with_validation'])} s",
                         f"{num(base['test']['ndcg@10'])} in {seconds(base['fit_seconds'])} s", load_range,
                         *source(result["provenance"])])
        fast = entry["all_positions"]
        answers.append(f"{model} {times(entry['speedup_all_positions_over_prefixes'])} over prefixes, "
                       f"{times(recbole['extrapolated_epoch_wall_seconds'] / fast['median_epoch_seconds'])} (wall) and "
                       f"{times(recbole['extrapolated_epoch_cpu_seconds'] / cpu(fast))} (CPU) over RecBole"
                       + (f", test NDCG@10 {num(fit['test']['ndcg@10'])} (RecBole, 3 epochs: {num(base['test']['ndcg@10'])})"
                          if fit is not None else ""))
    intro = ("`sequence.objective: all_positions` against the default prefix rows, GRU4Rec and SASRec on the ML-100K user "
             "sequences (batch 256 rows for the timed epochs: prefix rows or chunks of up to 50 targets), timed in one "
             "process on the loaded shared machine. GFLOP per epoch counts the matmuls of the timed epochs from the model's "
             "shapes and each batch's width (3x the forward pass; elementwise work not counted); the share is that rate "
             "over a jitted float32 1024 x 1024 matmul measured in the same run "
             f"({seconds(peak / 1e9)} GFLOP/s). RecBole was not installed in this run: its columns are the committed "
             "low-load extrapolated epoch (wall and CPU seconds of both cores) and its 3-epoch fit (another run, same data "
             "and split); the CPU ratio is the fairer one under this load. The quality row trains "
             "`fit` with validation every epoch and tests the best-validated epoch.")
    header = ["model", "objective", "batches per epoch", "epoch wall s", "epoch CPU s", "matmul GFLOP per epoch",
              "share of matmul peak", "RecBole wall / this wall", "RecBole CPU / this CPU", "test NDCG@10 in fit wall", "RecBole 3 epochs: NDCG@10 in",
              "load (1 min) start - end", *PROVENANCE_COLUMNS]
    return section("Session-based training on all positions against prefix rows",
                   "epoch time under load, " + "; ".join(answers), intro, table(header, rows), result_file, recbole_speed, recbole_quality)


def side_by_side() -> Section:
    result_file = BENCH + "sbr_side_by_side_ml-100k.json"
    result = load(result_file)
    rows = []

    def row(model, index, what, step, ours, flops=None):
        ratio = lambda unit: times(step[f"epoch_{unit}_seconds"] / ours[f"epoch_{unit}_seconds"]) if step is not ours else ""
        share = (f"{seconds(flops['matmul_flops_per_epoch'] / 1e9)} GFLOP, "
                 f"{100 * flops['share_of_matmul_peak']:.0f} % of {seconds(flops['flops_per_second'] / flops['share_of_matmul_peak'] / 1e9)}"
                 if flops else "")
        rows.append([model, index, what, seconds(step["epoch_wall_seconds"]), seconds(step["epoch_cpu_seconds"]), ratio("wall"),
                     ratio("cpu"), share, load_cell(step["load_average_start"], step["load_average_end"]), *source(result["provenance"])])

    for entry in result["rounds"]:
        model, index, ours = entry["model"], entry["round"], entry["all_positions"]
        for name in sorted(k for k in entry if k.startswith("recbole_threads_")):
            batches = entry[name]["recbole"]["timed_batches"]
            row(model, index, f"RecBole 1.2.1, {name.rsplit('_', 1)[1]} torch thread(s), {batches} batches extrapolated", entry[name], ours)
        row(model, index, "erase-jax all_positions (median of its timed epochs)", ours, ours, ours["erase_jax"])
        prefixes = result["prefixes"].get(model)
        if index == 0 and prefixes is not None:
            row(model, index, "erase-jax prefixes (the default objective), for reference", prefixes, prefixes, prefixes["erase_jax"])
    answers = []
    for model, entry in result["summary"].items():
        ratios = entry["recbole_threads_1"]
        answers.append(f"{model} {times(ratios['wall']['median'])} (wall, {times(ratios['wall']['min'])} - "
                       f"{times(ratios['wall']['max'])}) and {times(ratios['cpu']['median'])} (CPU)")
    rounds = 1 + max(r["round"] for r in result["rounds"])
    intro = ("RecBole 1.2.1 (PyTorch, its own environment) and erase-jax's `sequence.objective: all_positions`, GRU4Rec and "
             "SASRec on the ML-100K user sequences, batch 256 (RecBole: 313 prefix rows; erase-jax: 9 batches of up to 50 "
             "targets per row), measured in one run by `benchmarks/sbr_side_by_side.py`: per round and model, RecBole's first "
             "training batches (data loading, forward, backward, Adam; extrapolated to its epoch) and then erase-jax's epochs, "
             f"each in its own process, {rounds} rounds alternating. The ratio of a row is RecBole's epoch over the erase-jax "
             "epoch of the same round (and, for the prefixes row, over that row). CPU seconds count every thread of a "
             "process. RecBole with 2 torch threads spin-waits when other jobs hold the cores (its CPU seconds grow with "
             "the load), so the 1-thread run is the ratio given. Matmul GFLOP per epoch: 3x the forward matmuls from the "
             "shapes (`benchmarks/sbr_all_positions.py`), as a share of a float32 1024 x 1024 matmul's GFLOP/s measured in "
             "the same process.")
    header = ["model", "round", "implementation", "epoch wall s", "epoch CPU s", "RecBole / this, wall", "RecBole / this, CPU",
              "matmul work per epoch, share of matmul peak (GFLOP/s)", "load (1 min) start - end", *PROVENANCE_COLUMNS]
    return section("Session-based training epochs next to RecBole, side by side in one run",
                   "RecBole's epoch over erase-jax all_positions', median of the rounds: " + "; ".join(answers),
                   intro, table(header, rows), result_file)


SECTIONS = (quality, speed, all_positions, side_by_side)
