"""Collaborative filtering: does erase-jax train BPR, LightGCN, SGL and WMF to the quality of RecBole
and of the RecEraser paper, and how much faster is an epoch and an evaluation than RecBole's?"""

from __future__ import annotations

from results_topics.cells import PROVENANCE_COLUMNS, Section, load_cell, num, seconds, section, source, table, times
from results_topics.read import BENCH, EXP, REFERENCES, load, paper_recall

TITLE = "Collaborative filtering: quality and speed"
QUIET_LOAD = 2.0  # a speed ratio is shown only when both runs had a 1-minute load average at most this
CF_MODELS = ("BPR", "LightGCN", "SGL")


def quality_ml100k() -> Section:
    jax_file, recbole_file = BENCH + "jax_quality.json", BENCH + "recbole_quality_ml-100k.json"
    rows, pairs = [], []
    for model in CF_MODELS:
        run = load(jax_file)[f"{model} ml-100k"]
        test = run["test"]
        rows.append([model, "erase-jax", f"{run['epochs']} ({run['best_epoch']})", num(test["recall@20"]), num(test["ndcg@20"]),
                     num(test["hit@20"]), num(test["mrr@20"]), *source(run["provenance"])])
        base = load(recbole_file)["models"][model]
        rows.append([model, "RecBole 1.2.1", f"{base['epochs_run']} ({base['best_epoch']})", num(base["test"]["recall@20"]),
                     num(base["test"]["ndcg@20"]), num(base["test"]["hit@20"]), num(base["test"]["mrr@20"]),
                     *source(base["provenance"])])
        pairs.append(f"{model} {num(test['recall@20'])} / {num(base['test']['recall@20'])}")
    intro = ("5-core, per-user chronological 80/10/10 split, full ranking with history masked, Adam lr 1e-3, batch 2048, "
             "at most 100 epochs, early stopping on valid Recall@20 (patience 10), seed 2; test metrics at the best epoch.")
    header = ["model", "implementation", "epochs (best)", "test Recall@20", "NDCG@20", "Hit@20", "MRR@20", *PROVENANCE_COLUMNS]
    return section("CF quality on ML-100K with the original ERASE protocol, next to RecBole",
                   "test Recall@20, erase-jax / RecBole: " + ", ".join(pairs), intro, table(header, rows), jax_file, recbole_file)


def quality_ml1m() -> Section:
    files = [BENCH + f"quality_{m}_ml-1m-receraser{s}.json" for m in ("bpr", "lightgcn") for s in ("", "_rows")]
    wmf_file = EXP + "receraser_wmf_partition_ml-1m_cpu_seed2.json"
    rows, pairs = [], []
    for path in files:
        run = load(path)
        sampler = run["config"]["train"].get("sampler", "rows")
        model = run["model"]
        rows.append([model, sampler, f"{run['epochs']} ({run['best_epoch']})", num(run["valid"]["recall@20"]),
                     num(run["test"]["recall@20"]), num(run["test"]["ndcg@20"]), num(paper_recall(model, "retrain")),
                     *source(run["provenance"])])
        if sampler == "users":
            pairs.append(f"{model} {num(run['test']['recall@20'])} / {num(paper_recall(model, 'retrain'))}")
    wmf = load(wmf_file)
    rows.append(["WMF (ALS)", "-", f"{wmf['wmf']['sweeps']} sweeps", num(wmf["wmf"]["valid"]["recall@20"]),
                 num(wmf["wmf"]["test"]["recall@20"]), num(wmf["wmf"]["test"]["ndcg@20"]), num(paper_recall("WMF", "retrain")),
                 *source(wmf["provenance"])])
    pairs.append(f"WMF {num(wmf['wmf']['test']['recall@20'])} / {num(paper_recall('WMF', 'retrain'))}")
    intro = ("train.txt / test.txt with a 2 % validation carve from train (the epoch is chosen on it, never on test), "
             "embedding 64, full ranking over all items with history masked. Sampler `users`: uniform users, then one of "
             "their rows (the paper code's); `rows`: every training row once per epoch (RecBole's). Paper: its Table 3, "
             "retrain row (selected on test by its code).")
    header = ["model", "sampler", "epochs (best)", "valid Recall@20", "test Recall@20", "test NDCG@20", "paper Recall@20",
              *PROVENANCE_COLUMNS]
    return section("CF quality on the RecEraser paper's ML-1M split, next to the paper",
                   "test Recall@20 with the paper code's sampler, erase-jax / paper: " + ", ".join(pairs), intro,
                   table(header, rows), *files, wmf_file, REFERENCES)


def speed() -> Section:
    jax_files = {"BPR": BENCH + "jax_speed_ml-1m-receraser.json", "LightGCN": BENCH + "jax_speed_ml-1m-receraser.json",
                 "SGL": BENCH + "jax_speed_sgl_ml-1m-receraser.json"}
    recbole_files = {"BPR": BENCH + "recbole_speed_quiet_ml-1m-receraser.json",
                     "LightGCN": BENCH + "recbole_speed_quiet_ml-1m-receraser.json",
                     "SGL": BENCH + "recbole_speed_ml-1m-receraser.json"}
    rows, speed_ups = [], []
    for model in CF_MODELS:
        base = load(recbole_files[model])["models"][model]
        rows.append([model, "RecBole 1.2.1", seconds(base["median_epoch_seconds"]), seconds(base["eval_seconds"]), "", "",
                     load_cell(base["load_average_start"], base["load_average_end"]), *source(base["provenance"])])
        result = load(jax_files[model])
        run = result["models"][model]
        loads = [base["load_average_start"][0], base["load_average_end"][0], result["load_average_start"][0],
                 result["load_average_end"][0]]
        speed_up = (f"{times(base['median_epoch_seconds'] / run['median_epoch_seconds'])} / "
                    f"{times(base['eval_seconds'] / run['median_eval_seconds'])}" if max(loads) <= QUIET_LOAD
                    else f"not comparable (load above {QUIET_LOAD})")
        rows.append([model, "erase-jax", seconds(run["median_epoch_seconds"]), seconds(run["median_eval_seconds"]),
                     seconds(run["compile_seconds"]), speed_up,
                     load_cell(result["load_average_start"], result["load_average_end"]), *source(result["provenance"])])
        speed_ups.append(f"{model} {speed_up}")
    intro = ("Batch 2048, 317-318 batches per epoch. Epoch = everything one training epoch does (RecBole: "
             "`trainer._train_epoch` with data loading and negative sampling; erase-jax: the host-drawn row order and one "
             "jitted call), median after warm-up; evaluation = full ranking of all items for the 6,034 test users, history "
             "masked; compilation apart. A speed-up is shown where both runs had a 1-minute load average of at most "
             f"{QUIET_LOAD} (2 cores); RecBole's SGL epoch was timed only on a loaded machine.")
    header = ["model", "implementation", "epoch s", "evaluation s", "compile s", "speed-up epoch / evaluation",
              "load (1 min) start - end", *PROVENANCE_COLUMNS]
    return section("CF training and evaluation speed on ML-1M (RecEraser split), next to RecBole",
                   "erase-jax's speed-up over RecBole, epoch / evaluation: " + ", ".join(speed_ups), intro, table(header, rows),
                   *sorted(set(jax_files.values()) | set(recbole_files.values())))


SECTIONS = (quality_ml100k, quality_ml1m, speed)
