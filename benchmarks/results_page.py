"""Writes benchmarks/RESULTS.md, the current answer to each question, from the committed result files.

    python benchmarks/results_page.py            # rewrites benchmarks/RESULTS.md
    python benchmarks/results_page.py --check    # exit status 1 if RESULTS.md is not what the files give

Every number on the page is read from a file under `benchmarks/results/` or `experiments/results/`,
or computed from such numbers (a ratio, a median over requests); every row names its config,
command, commit and machine from the `provenance` block of the file it comes from
(`benchmarks/provenance.py`). To change the page, change or add result files (and, for a new
question, a section here); `tests/test_results_page.py` checks that the committed page is what
this script writes. The history behind the numbers is in `docs/notes/`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGE = REPO_ROOT / "benchmarks" / "RESULTS.md"
BENCH = "benchmarks/results/"
EXP = "experiments/results/"
REFERENCES = BENCH + "published_reference_numbers.json"
QUIET_LOAD = 2.0  # a speed ratio is shown only when both runs had a 1-minute load average at most this
PROVENANCE_COLUMNS = ["config", "command", "commit", "machine"]
PUBLISHED = ["n/a (published)"] * 4
METHOD_ORDER = ["original", "retrain", "scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif"]


# ------------------------------------------------------------------------------------------------
# reading result files


@cache
def load(path: str) -> dict:
    return json.loads((REPO_ROOT / path).read_text())


@cache
def rows_of(path: str) -> list[dict]:
    with (REPO_ROOT / path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def references() -> dict:
    return load(REFERENCES)


def paper_recall(model: str, method: str) -> float:
    return references()["receraser_paper_ml-1m_recall@20"][model][method]


# ------------------------------------------------------------------------------------------------
# formatting


def num(value, digits: int = 4) -> str:
    if value is None or value == "":
        return ""
    return f"{float(value):.{digits}f}"


def seconds(value) -> str:
    """Seconds with three significant digits (0.0109, 0.269, 7.17, 53.5, 1471)."""
    value = float(value)
    if value >= 100:
        return f"{value:.0f}"
    for limit, digits in ((10, 1), (1, 2), (0.1, 3), (0.01, 4)):
        if value >= limit:
            return f"{value:.{digits}f}"
    return f"{value:.5f}"


def times(value: float) -> str:
    return f"{value:.1f}x"


def load_cell(start, end) -> str:
    """The 1-minute load average at the start and end of a run (either may be missing)."""
    first = lambda v: v[0] if isinstance(v, list) else v
    parts = [f"{first(v):.1f}" for v in (start, end) if v is not None]
    return " - ".join(parts)


def code(text: str) -> str:
    return f"`{text}`" if text else ""


def config_cell(config) -> str:
    if config is None:
        return ""
    if isinstance(config, str):
        return code(config)
    if isinstance(config, dict):
        if isinstance(config.get("model"), dict):  # the RecBole baselines: the model's settings
            return "RecBole: " + ", ".join(f"{k} {v}" for k, v in config["model"].items())
        main = config.get("config") or config.get("file") or config.get("configs")
        if isinstance(main, list):
            main = ", ".join(main)
        extras = []
        for key, value in config.items():
            if key in ("config", "file", "configs") or value in (None, [], {}) or isinstance(value, dict):
                continue
            if isinstance(value, str) and "this file" in value:  # a pointer to the resolved settings
                continue
            shown = " ".join(map(str, value)) if isinstance(value, list) else value
            extras.append(f"{key} {shown}" if key == "methods" else f"{key}={shown}")
        if main:
            return code(str(main)) + ("; " + ", ".join(extras) if extras else "")
        return ", ".join(extras)
    return str(config)


def commit_cell(provenance: dict, step: str | None = None) -> str:
    commit = provenance.get("commit", "unknown")
    if commit == "mixed" and step is not None:
        commit = provenance.get("commits", {}).get(step, "unknown")
    if commit in ("unknown", "mixed"):
        recorded = provenance.get("recorded_in")
        return f"unknown (recorded in {recorded})" if recorded else "unknown"
    dirty = " (+ local changes)" if provenance.get("dirty") else ""
    return f"{commit}{dirty}"


def machine_cell(provenance: dict) -> str:
    machine = provenance.get("machine") or {}
    return machine.get("description", "unknown") if isinstance(machine, dict) else str(machine)


def source(provenance: dict, step: str | None = None) -> list[str]:
    """The four provenance cells of a row."""
    return [config_cell(provenance.get("config")), code(provenance.get("command", "")),
            commit_cell(provenance, step), machine_cell(provenance)]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table whose provenance cells (the last four columns, when present) are said
    under it: once when every row shares them, else as a `run` column of letters with a legend."""
    n_plain = len(header) - len(PROVENANCE_COLUMNS) if header[-len(PROVENANCE_COLUMNS):] == PROVENANCE_COLUMNS else len(header)
    escape = lambda cells: "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    if n_plain == len(header):
        return [escape(header), "|" + "---|" * len(header), *(escape(row) for row in rows)]
    runs: dict[tuple[str, ...], str] = {}
    for row in rows:
        runs.setdefault(tuple(str(c) for c in row[n_plain:]), chr(ord("A") + len(runs)))
    said = lambda cells: ", ".join(f"{name} {cell}" for name, cell in zip(PROVENANCE_COLUMNS, cells, strict=True) if cell)
    if len(runs) == 1:
        plain = [escape(header[:n_plain]), "|" + "---|" * n_plain, *(escape(row[:n_plain]) for row in rows)]
        return [*plain, "", f"Every row: {said(next(iter(runs)))}."]
    lines = [escape([*header[:n_plain], "run"]), "|" + "---|" * (n_plain + 1)]
    lines += [escape([*row[:n_plain], runs[tuple(str(c) for c in row[n_plain:])]]) for row in rows]
    # a provenance column every run shares is said once, after the legend
    shared_columns = [i for i in range(len(PROVENANCE_COLUMNS)) if len({cells[i] for cells in runs}) == 1]
    own = lambda cells: tuple("" if i in shared_columns else cell for i, cell in enumerate(cells))
    legend = [f"- {letter}: {said(own(cells))}" for cells, letter in runs.items()]
    first = next(iter(runs))
    common = ", ".join(f"{PROVENANCE_COLUMNS[i]} {first[i]}" for i in shared_columns if first[i])
    return [*lines, "", *legend, *([f"- every run: {common}"] if common else [])]


def files_line(*paths: str) -> str:
    return "Files: " + ", ".join(code(p) for p in paths) + "."


# ------------------------------------------------------------------------------------------------
# the questions


def cf_quality_ml100k() -> list[str]:
    jax_file, recbole_file = BENCH + "jax_quality.json", BENCH + "recbole_quality_ml-100k.json"
    rows = []
    for model in ("BPR", "LightGCN", "SGL"):
        run = load(jax_file)[f"{model} ml-100k"]
        test = run["test"]
        rows.append([model, "erase-jax", f"{run['epochs']} ({run['best_epoch']})", num(test["recall@20"]), num(test["ndcg@20"]),
                     num(test["hit@20"]), num(test["mrr@20"]), *source(run["provenance"])])
        base = load(recbole_file)["models"][model]
        test = base["test"]
        rows.append([model, "RecBole 1.2.1", f"{base['epochs_run']} ({base['best_epoch']})", num(test["recall@20"]),
                     num(test["ndcg@20"]), num(test["hit@20"]), num(test["mrr@20"]), *source(base["provenance"])])
    return [
        "## CF quality on ML-100K with the original ERASE protocol, next to RecBole",
        "",
        "5-core, per-user chronological 80/10/10 split, full ranking with history masked, Adam lr 1e-3, batch 2048, "
        "at most 100 epochs, early stopping on valid Recall@20 (patience 10), seed 2; test metrics at the best epoch.",
        "",
        *table(["model", "implementation", "epochs (best)", "test Recall@20", "NDCG@20", "Hit@20", "MRR@20", *PROVENANCE_COLUMNS],
               rows),
        "",
        files_line(jax_file, recbole_file),
    ]


def cf_quality_ml1m() -> list[str]:
    files = [BENCH + f"quality_{m}_ml-1m-receraser{s}.json" for m in ("bpr", "lightgcn") for s in ("", "_rows")]
    wmf_file = EXP + "receraser_wmf_partition_ml-1m_cpu_seed2.json"
    rows = []
    for path in files:
        run = load(path)
        sampler = run["config"]["train"].get("sampler", "rows")
        model = run["model"]
        rows.append([model, sampler, f"{run['epochs']} ({run['best_epoch']})", num(run["valid"]["recall@20"]),
                     num(run["test"]["recall@20"]), num(run["test"]["ndcg@20"]), num(paper_recall(model, "retrain")),
                     *source(run["provenance"])])
    wmf = load(wmf_file)
    rows.append(["WMF (ALS)", "-", f"{wmf['wmf']['sweeps']} sweeps", num(wmf["wmf"]["valid"]["recall@20"]),
                 num(wmf["wmf"]["test"]["recall@20"]), num(wmf["wmf"]["test"]["ndcg@20"]), num(paper_recall("WMF", "retrain")),
                 *source(wmf["provenance"])])
    return [
        "## CF quality on the RecEraser paper's ML-1M split, next to the paper",
        "",
        "train.txt / test.txt with a 2 % validation carve from train (the epoch is chosen on it, never on test), "
        "embedding 64, full ranking over all items with history masked. Sampler `users`: uniform users, then one of "
        "their rows (the paper code's); `rows`: every training row once per epoch (RecBole's). Paper: its Table 3, "
        "retrain row (selected on test by its code).",
        "",
        *table(["model", "sampler", "epochs (best)", "valid Recall@20", "test Recall@20", "test NDCG@20", "paper Recall@20",
                *PROVENANCE_COLUMNS], rows),
        "",
        files_line(*files, wmf_file, REFERENCES),
    ]


def cf_speed() -> list[str]:
    jax_files = {"BPR": BENCH + "jax_speed_ml-1m-receraser.json", "LightGCN": BENCH + "jax_speed_ml-1m-receraser.json",
                 "SGL": BENCH + "jax_speed_sgl_ml-1m-receraser.json"}
    recbole_files = {"BPR": BENCH + "recbole_speed_quiet_ml-1m-receraser.json",
                     "LightGCN": BENCH + "recbole_speed_quiet_ml-1m-receraser.json",
                     "SGL": BENCH + "recbole_speed_ml-1m-receraser.json"}
    rows = []
    for model in ("BPR", "LightGCN", "SGL"):
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
    return [
        "## CF training and evaluation speed on ML-1M (RecEraser split), next to RecBole",
        "",
        "Batch 2048, 317-318 batches per epoch. Epoch = everything one training epoch does (RecBole: "
        "`trainer._train_epoch` with data loading and negative sampling; erase-jax: the host-drawn row order and one "
        "jitted call), median after warm-up; evaluation = full ranking of all items for the 6,034 test users, history "
        "masked; compilation apart. A speed-up is shown where both runs had a 1-minute load average of at most "
        f"{QUIET_LOAD} (2 cores); RecBole's SGL epoch was timed only on a loaded machine.",
        "",
        *table(["model", "implementation", "epoch s", "evaluation s", "compile s", "speed-up epoch / evaluation",
                "load (1 min) start - end", *PROVENANCE_COLUMNS], rows),
        "",
        files_line(*sorted(set(jax_files.values()) | set(recbole_files.values()))),
    ]


SBR_MODELS = ("GRU4Rec", "NARM", "SASRec", "SRGNN")
MIXED_FILES = {"GRU4Rec": BENCH + "jax_sbr_quality3_mixed_ml-100k.json", "SASRec": BENCH + "jax_sbr_quality3_mixed_ml-100k.json",
               "NARM": BENCH + "jax_sbr_quality3_mixed_narm_ml-100k.json", "SRGNN": BENCH + "jax_sbr_quality3_mixed_srgnn_ml-100k.json"}


def sbr_quality() -> list[str]:
    recbole_file, bucketed_file = BENCH + "recbole_sbr_quality3_ml-100k.json", BENCH + "jax_sbr_quality_fixed_budget_ml-100k.json"
    rows = []
    for model in SBR_MODELS:
        base = load(recbole_file)["models"][model]
        rows.append([model, "RecBole 1.2.1", base["best_epoch"], num(base["test"]["ndcg@10"]), num(base["test"]["mrr@10"]),
                     num(base["test"]["recall@20"]), *source(base["provenance"])])
        result = load(MIXED_FILES[model])
        run = result["models"][model]
        rows.append([model, "erase-jax, length-mixed batches (the default)", run["best_epoch"], num(run["test"]["ndcg@10"]),
                     num(run["test"]["mrr@10"]), num(run["test"]["recall@20"]), *source(result["provenance"])])
        bucketed = load(bucketed_file)["runs"].get(f"sbr_q3_{model.lower()}")
        if bucketed is not None:
            rows.append([model, "erase-jax, length-bucketed batches", bucketed["best_epoch"], num(bucketed["test"]["ndcg@10"]),
                         num(bucketed["test"]["mrr@10"]), num(bucketed["test"]["recall@20"]), *source(bucketed["provenance"])])
    return [
        "## Session-based models on ML-100K sequences at a 3-epoch budget, next to RecBole",
        "",
        "One chronological sequence per user, prefix -> next-item rows (prefixes cut to 50 items), per-user 80/10/10 "
        "split of the rows, CE over all items, batch 256, Adam lr 1e-3, seed 2, validation on MRR@10 after every epoch "
        "and the best epoch tested. Neither side could train to early stopping on the shared machine, so both got 3 "
        "epochs. Single runs; the seed-to-seed spread is not measured.",
        "",
        *table(["model", "implementation", "best epoch", "test NDCG@10", "MRR@10", "Recall@20", *PROVENANCE_COLUMNS], rows),
        "",
        files_line(recbole_file, *sorted(set(MIXED_FILES.values())), bucketed_file),
    ]


def sbr_speed() -> list[str]:
    jax_file, recbole_file = BENCH + "jax_sbr_speed_lowload_ml-100k.json", BENCH + "recbole_sbr_batches_lowload_ml-100k.json"
    change_file = BENCH + "jax_sbr_speed_before_after_ml-100k.json"
    rows = []
    for model in SBR_MODELS:
        base = load(recbole_file)["models"][model]
        rows.append([model, "RecBole 1.2.1, 20 batches extrapolated to an epoch", seconds(base["extrapolated_epoch_wall_seconds"]),
                     seconds(base["extrapolated_epoch_cpu_seconds"]), "", load_cell(base["load_average_start"], base["load_average_end"]),
                     *source(base["provenance"])])
        result = load(jax_file)
        run = result["models"][model]
        rows.append([model, "erase-jax, bucketed batches", seconds(run["median_epoch_seconds"]),
                     seconds(run["epoch_cpu_seconds"][0]),
                     times(base["extrapolated_epoch_wall_seconds"] / run["median_epoch_seconds"]),
                     load_cell(result["load_average_start"], result["load_average_end"]), *source(result["provenance"])])
        for when in ("before", "after"):
            timed = load(change_file)["models"][model][when]
            rows.append([model, f"erase-jax, bucketed batches, {when} the step speed-ups", seconds(timed["epoch_seconds"][0]),
                         seconds(timed["epoch_cpu_seconds"][0]), "", load_cell(timed["load_average_start"], timed["load_average_end"]),
                         *source(timed["provenance"])])
    return [
        "## Session-based models: seconds per training epoch, next to RecBole",
        "",
        "Same data and batch size as above (313-315 batches per epoch). The first two rows of each model were taken in "
        "the quietest window available (CPU seconds count both cores); the last two, one after the other on a loaded "
        "machine, measure the code change that made steps cheaper, for which the CPU seconds are the comparable figure. "
        "No epoch has been timed quietly since that change.",
        "",
        *table(["model", "implementation", "epoch wall s", "epoch CPU s", "RecBole wall / erase-jax wall",
                "load (1 min) start - end", *PROVENANCE_COLUMNS], rows),
        "",
        files_line(recbole_file, jax_file, change_file),
    ]


def pick(rows: list[dict], method: str, checkpoint: str = "3") -> dict:
    """The row of a method at a checkpoint in a protocol's combined unlearning.csv rows."""
    eval_type = {"original": "original", "retrain": "retraining"}.get(method, "unlearning")
    for row in rows:
        if row["method"] == method and row["checkpoint_idx"] == checkpoint and row["eval_type"] == eval_type:
            return row
    raise KeyError(f"no {method} row at checkpoint {checkpoint}")


def present_methods(rows: list[dict]) -> list[str]:
    found = {row["method"] for row in rows}
    return [m for m in METHOD_ORDER if m in found]


def request_seconds(row: dict) -> str:
    if row["method"] == "retrain":
        return f"{seconds(row['retrain_seconds'])} per retrain" if row.get("retrain_seconds") else ""
    if row["method"] == "original" or not row.get("request_seconds_median"):
        return ""
    return f"{seconds(row['request_seconds_median'])} / {seconds(row['request_seconds_mean'])}"


def sbr_unlearning(model: str, scenario: str) -> tuple[list[str], list[list[str]], str]:
    path = EXP + f"sbr_unlearning_ml-100k_{model}_{scenario}.json"
    record = load(path)
    rows = record["rows"]
    body = []
    for method in present_methods(rows):
        row = pick(rows, method)
        step = "retrain" if method == "retrain" else method
        if scenario == "sensitive":
            measures = [num(row["pct_users_with_sensitive@20"], 1), num(row["forgotten_hit@20"], 3),
                        num(row["agree_unlearned_jaccard@20"], 3) if method != "retrain" else "1"]
        else:
            measures = [num(row["spam_users_with_target@20"], 3), num(row["spam_mean_target_rank"], 0)]
        body.append([method, num(row["test_ndcg@10"]), num(row["test_recall@20"]), *measures, request_seconds(row),
                     *source(record["provenance"], step)])
    return body, rows, path


def setting(config: dict, key: str):
    """A setting of a run's config block: its own key, or a `key=value` among its overrides."""
    if key in config:
        return config[key]
    return dict(a.split("=", 1) for a in config.get("overrides", []) if "=" in a)[key]


def approximate_methods() -> list[str]:
    lines = [
        "## What each approximate method does, per scenario (last checkpoint: every request done)",
        "",
        "The sequential protocol: one request per user in the original's order, four checkpoints, each method from "
        "the trained model, the retrain trained from scratch without the removed rows (the reference). Utility = test "
        "metrics on the split recomputed without the removed rows. Per-request seconds were measured on a shared "
        "machine: upper bounds.",
        "",
        "**BPR, ML-100K, Horror (98 requests).** No result file: the measurements (in "
        "[docs/notes/2026-11-23-influence-methods-bpr-horror.md](../docs/notes/2026-11-23-influence-methods-bpr-horror.md)) "
        "were read from run folders that were not kept, and no script under `experiments/` reruns all methods on it yet.",
    ]
    sensitive_header = ["method", "test NDCG@10", "Recall@20", "% unlearned users with Horror @20", "forgotten items hit@20",
                        "Jaccard@20 vs retrain", "s/request median / mean", *PROVENANCE_COLUMNS]
    spam_header = ["method", "test NDCG@10", "Recall@20", "share of genuine users with a target @20", "mean target rank",
                   "s/request median / mean", *PROVENANCE_COLUMNS]
    for model, scenario in (("SASRec", "sensitive"), ("GRU4Rec", "sensitive"), ("SASRec", "spam"), ("GRU4Rec", "spam")):
        body, rows, path = sbr_unlearning(model, scenario)
        record = load(path)
        requests = pick(rows, "scif")["n_requests"]
        what = (f"Horror, fraction {record['fraction']}" if scenario == "sensitive"
                else f"fraud sessions, ratio {setting(record['provenance']['config'], 'data.spam_ratio')}")
        lines += ["", f"**{model}, ML-100K sequences, {what} ({requests} requests).**", "",
                  *table(sensitive_header if scenario == "sensitive" else spam_header, body), "", files_line(path)]
    lines += ["", "CEU, IDEA and GIF in these four tables ran their correct modes as they were before commit a0de17e (the "
                  "Newton system of the whole data, Gauss-Newton curvature by default, no retain fine-tuning); they have not "
                  "been rerun since."]
    return lines


def cf_spam_attack() -> list[str]:
    path = EXP + "spam_strength_ml-100k.json"
    record = load(path)
    rows = []
    for row in record["rows"]:
        for model in ("clean", "poisoned"):
            e = row[model]
            rows.append([row["ratio"], row["n_fake_users"], model, num(e["users_with_target@20"]), num(e["mean_target_rank"], 0),
                         num(e["mean_target_probability"], 5), num(e["test_recall@20"]), *source(record["provenance"])])
    return [
        "## Does the CF bandwagon attack reach genuine users? (ML-100K, BPR)",
        "",
        "Clean and poisoned BPR trained for the same 100 epochs; each fake user rates all 10 targets (from the 20 % "
        "least popular items) plus popular fillers; exposure over the genuine users, raw scores. The clean model is "
        "also the retrain without all fake users.",
        "",
        *table(["fake-user ratio", "fake users", "model", "users with a target @20", "mean target rank",
                "summed target probability", "test Recall@20", *PROVENANCE_COLUMNS], rows),
        "",
        files_line(path),
    ]


RECERASER_RUNS = (
    ("seed 2, selected on the validation carve (default)", EXP + "receraser_ml-1m_cpu_users_fastneg.json"),
    ("seed 3, selected on the validation carve", EXP + "receraser_ml-1m_cpu_users_fastneg_seed3.json"),
    ("seed 3, selected on test (the paper code's protocol)", EXP + "receraser_ml-1m_cpu_select_on_test_seed3.json"),
)


def exact_quality() -> list[str]:
    wmf_file = EXP + "receraser_wmf_partition_ml-1m_cpu_seed2.json"
    rows = []
    for label, path in RECERASER_RUNS:
        run = load(path)
        selected_on_test = run.get("selected_on_test")
        valid = lambda m: "" if selected_on_test else num(run[m]["valid"]["recall@20"]) + " / "
        rows.append([label, "BPR", num(run["full_bpr"]["test"]["recall@20"]),
                     valid("receraser") + num(run["receraser"]["test"]["recall@20"]),
                     valid("sisa") + num(run["sisa"]["test"]["recall@20"]), *source(run["provenance"])])
    wmf = load(wmf_file)
    rows.append(["seed 2, InBP on WMF embeddings, selected on the validation carve", "WMF",
                 num(wmf["wmf"]["test"]["recall@20"]),
                 f"{num(wmf['receraser']['valid']['recall@20'])} / {num(wmf['receraser']['test']['recall@20'])}", "",
                 *source(wmf["provenance"])])
    rows.append(["the paper (Table 3)", "BPR", num(paper_recall("BPR", "retrain")), num(paper_recall("BPR", "RecEraser")),
                 num(paper_recall("BPR", "SISA")), *PUBLISHED])
    return [
        "## Exact unlearning on ML-1M: RecEraser and SISA (BPR, K = 10 shards)",
        "",
        "RecEraser: InBP partition on the full model's embeddings, ten submodels trained as one vmap, attention "
        "aggregator; SISA: random shards, mean of scores. Recall@20 on test (valid / test where selected on the "
        "validation carve). Selected on test, every early stopping (full model, shards, aggregator) reads test.txt, "
        "as the public code does.",
        "",
        *table(["run", "full model", "full model test Recall@20", "RecEraser Recall@20", "SISA Recall@20", *PROVENANCE_COLUMNS],
               rows),
        "",
        files_line(*[p for _, p in RECERASER_RUNS], wmf_file, REFERENCES),
    ]


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's and pandas' default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def exact_cost() -> list[str]:
    lines = [
        "## What an exact unlearning request costs",
        "",
        "**ML-1M (RecEraser, BPR, K = 10).** Each request removes one random training row: the shard that held it "
        "retrains from scratch, then the aggregator warm-starts for one epoch. The ratio is to the wall time of the "
        "full BPR training recorded in the same file (compilation included).",
        "",
    ]
    rows = []
    for label, path in RECERASER_RUNS[:2]:
        run = load(path)
        full = run["full_bpr"]["wall_seconds"]
        for request in run["requests"]:
            rows.append([label.split(",")[0], request["request"],
                         f"{request['retrained_shards'][0]} ({request['shard_epochs'][0]})", seconds(request["shard_seconds"]),
                         seconds(request["aggregator_seconds"]), seconds(request["seconds"]),
                         f"{request['seconds'] / full:.3f} of {seconds(full)}", num(request["test_after"]["recall@20"]),
                         load_cell(request["load_before"], request["load_after"]), *source(run["provenance"])])
    lines += table(["run", "request", "shard (epochs)", "shard s", "aggregator s", "total s", "/ full retrain s",
                    "test Recall@20 after", "load start - end", *PROVENANCE_COLUMNS], rows)
    lines += ["", files_line(*[p for _, p in RECERASER_RUNS[:2]])]

    record_path = EXP + "exact_unlearning_ml-100k.json"
    record = load(record_path)
    lines += ["", "**ML-100K, BPR, Horror (98 requests).** A request retrains every shard that held a removed training "
              "row or validated on a removed validation row, then the aggregator (RecEraser).", ""]
    rows = []
    for method in ("sisa", "receraser"):
        requests = rows_of(EXP + record["methods"][method]["requests_csv"])
        for label, subset in (("all", requests), ("removing validation rows", [r for r in requests if int(r["removed_valid_rows"]) > 0]),
                              ("removing no validation row", [r for r in requests if int(r["removed_valid_rows"]) == 0])):
            took = [float(r["seconds"]) for r in subset]
            shards = [int(r["n_retrained_shards"]) for r in subset]
            rows.append([method, label, len(subset),
                         " / ".join(seconds(quantile(took, q)) for q in (0.5, 0.9)) + f" / {seconds(sum(took) / len(took))} / "
                         f"{seconds(max(took))}", num(sum(shards) / len(shards), 2),
                         " / ".join(str(sum(1 for s in shards if cond(s))) for cond in
                                    (lambda s: s == 0, lambda s: s == 1, lambda s: s == 2, lambda s: s >= 3)),
                         *source(record["provenance"])])
    lines += table(["method", "requests", "number", "s/request median / p90 / mean / max", "shards retrained (mean)",
                    "requests retraining 0 / 1 / 2 / >= 3 shards", *PROVENANCE_COLUMNS], rows)
    lines += ["", files_line(record_path, *(EXP + record["methods"][m]["requests_csv"] for m in ("sisa", "receraser")))]

    shard_path = BENCH + "shard_cost.json"
    shard = load(shard_path)
    epoch = shard["one_shard_epoch"]
    validations = shard["validation_per_shard"]
    fewest, most = min(validations, key=lambda v: v["items"]), max(validations, key=lambda v: v["items"])
    lines += ["", "**Where a shard retrain's time goes (ML-1M, seed 2).**", ""]
    lines += table(["what", "ms", *PROVENANCE_COLUMNS], [
        [f"one-shard training epoch, {epoch['rows']:,} rows, {epoch['steps']} steps (median / minimum)",
         f"{epoch['median_ms']:.1f} / {epoch['min_ms']:.1f}", *source(shard["provenance"])],
        [f"one own-items validation, InBP shards of {fewest['items']:,} to {most['items']:,} items",
         f"{min(v['ms'] for v in validations):.1f} - {max(v['ms'] for v in validations):.1f}", *source(shard["provenance"])],
    ])
    lines += ["", files_line(shard_path)]

    quality = rows_of(EXP + record["unlearning_csv"])
    rows = []
    for method in ("original", "retrain", "receraser", "sisa"):
        row = pick(quality, method)
        rows.append([method, num(row["test_recall@20"]), num(row["test_ndcg@20"]), num(row["pct_users_with_sensitive@20"], 1),
                     num(row["forgotten_hit@20"], 3), *source(record["provenance"])])
    lines += ["", "**ML-100K Horror, the same run: quality at the last checkpoint.**", ""]
    lines += table(["model", "test Recall@20", "NDCG@20", "% unlearned users with Horror @20", "forgotten pairs in top 20",
                    *PROVENANCE_COLUMNS], rows)
    lines += ["", files_line(EXP + record["unlearning_csv"])]
    return lines


def approximate_cost() -> list[str]:
    original = references()["original_erase_request_seconds_ml-100k_bpr_horror"]["methods"]
    main_file = BENCH + "unlearning_cost_ml-100k_bpr.json"
    rows = []
    result = load(main_file)
    for method in ("scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif"):
        stats = result["results"]["BPR"][method]
        reference = original[method]
        rows.append(["BPR", method, seconds(stats["median"]), seconds(stats["p90"]), seconds(stats["mean"]), seconds(stats["max"]),
                     f"{seconds(reference['median'])} / {seconds(reference['mean'])}",
                     f"{times(reference['median'] / stats['median'])} / {times(reference['mean'] / stats['mean'])}",
                     load_cell(result["load_average_start"], result["load_average_end"]), *source(result["provenance"])])
    for label, path in (("kookmin, before the selection shortcut", BENCH + "unlearning_cost_kookmin_before_shortcut_ml-100k.json"),
                        ("kookmin, after it", BENCH + "unlearning_cost_kookmin_after_shortcut_ml-100k.json")):
        result = load(path)
        stats, reference = result["results"]["BPR"]["kookmin"], original["kookmin"]
        rows.append(["BPR", label, seconds(stats["median"]), seconds(stats["p90"]), seconds(stats["mean"]), seconds(stats["max"]),
                     f"{seconds(reference['median'])} / {seconds(reference['mean'])}",
                     f"{times(reference['median'] / stats['median'])} / {times(reference['mean'] / stats['mean'])}",
                     load_cell(result["load_average_start"], result["load_average_end"]), *source(result["provenance"])])
    lightgcn_file = BENCH + "unlearning_cost_ml-100k_lightgcn.json"
    result = load(lightgcn_file)
    for method in ("scif", "ceu"):
        stats = result["results"]["LightGCN"][method]
        rows.append(["LightGCN", method, seconds(stats["median"]), seconds(stats["p90"]), seconds(stats["mean"]),
                     seconds(stats["max"]), "", "", load_cell(result["load_average_start"], result["load_average_end"]),
                     *source(result["provenance"])])
    return [
        "## What an approximate unlearning request costs (ML-100K, Horror, 98 requests)",
        "",
        "Wall seconds per request (data preparation, retain sampling, the method, device-synchronised; checkpoint "
        "writing excluded), models trained 30 epochs (LightGCN stopped early). The first request of each new padded "
        "shape also compiles: the median is the steady state, the mean includes compilation. Original = the PyTorch "
        "original on the same kind of machine (its own prints, which include saving). These runs predate the correct "
        "modes' current defaults for CEU, IDEA and GIF (commit a0de17e).",
        "",
        *table(["model", "method", "median s", "p90 s", "mean s", "max s", "original median / mean s",
                "speed-up median / mean", "load start - end", *PROVENANCE_COLUMNS], rows),
        "",
        files_line(main_file, BENCH + "unlearning_cost_kookmin_before_shortcut_ml-100k.json",
                   BENCH + "unlearning_cost_kookmin_after_shortcut_ml-100k.json", lightgcn_file, REFERENCES),
    ]


def influence_core() -> list[str]:
    path = BENCH + "influence_scaling.json"
    record = load(path)
    rows = []
    for case in record["items"]:
        rows.append([f"{case['n_items']:,} items", f"{1e3 * case['gradient_seconds']:.1f}", f"{1e3 * case['hvp_seconds']:.1f}",
                     f"{1e3 * case['scif_request_seconds']:.1f}", *source(record["provenance"])])
    constants = record["provenance"]["config"].get("script constants at d742188", {})
    cost_config = load(BENCH + "unlearning_cost_ml-100k_bpr.json")["provenance"]["config"]
    sizes = "; ".join(f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v}"
                      for k, v in [*constants.items(), *cost_config.get("script constants", {}).items()]) or "none"
    for case in record["devices"]:
        rows.append([f"{case['devices']} forced host device(s), HVP", "", f"{1e3 * case['hvp_seconds_16k_rows']:.1f}", "",
                     *source(record["provenance"])])
    for label, file, model in (("BPR (trained ML-100K model)", BENCH + "unlearning_cost_ml-100k_bpr.json", "BPR"),
                               ("LightGCN (trained ML-100K model)", BENCH + "unlearning_cost_ml-100k_lightgcn.json", "LightGCN")):
        result = load(file)
        entry = result["results"][model]
        rows.append([label, f"{1e3 * entry['gradient_seconds']:.2f}", f"{1e3 * entry['hvp_seconds']:.2f}", "",
                     *source(result["provenance"])])
    return [
        "## What the influence core costs",
        "",
        "A BPR model on synthetic rows, one gradient and one HVP of the loss over all parameters, and one SCIF request, "
        "as the item table grows; then the HVP with its rows split over forced host devices, which share the "
        "machine's two cores. The last two rows time the trained ML-100K models of the cost table above. Sizes, where "
        "the file records them: " + sizes + ".",
        "",
        *table(["case", "gradient ms", "HVP ms", "SCIF request ms", *PROVENANCE_COLUMNS], rows),
        "",
        files_line(path, BENCH + "unlearning_cost_ml-100k_bpr.json", BENCH + "unlearning_cost_ml-100k_lightgcn.json"),
    ]


def nbr_tafeng() -> list[str]:
    path = EXP + "nbr_tafeng.json"
    models = load(path)["models"]
    rows = []
    for name, run in models.items():
        test = run["test"]
        per_epoch = run["train_seconds_per_epoch"]
        epoch = seconds(sorted(per_epoch)[len(per_epoch) // 2]) if per_epoch else "no training"
        epochs = f"{run['epochs']} ({run['best_epoch']})" if per_epoch else "-"
        if "in progress" in str(run.get("stopped")):
            epochs += f", unfinished (of {run['provenance']['config']['resolved']['train']['epochs']})"
        rows.append([name, num(test["recall@10"]), num(test["recall@20"]), num(test["ndcg@10"]), num(test["ndcg@20"]),
                     num(test["hit@10"]), f"{num(test['recall_repeat@10'])} / {num(test['recall_explore@10'])}", epochs, epoch,
                     *source(run["provenance"])])
    return [
        "## Next-basket models on Ta-Feng (the original ERASE split), next to the frequency baselines",
        "",
        "Users with >= 4 baskets (10,061); train predicts basket n-3, valid n-2, test n-1 from all earlier baskets (the "
        "last 48); full ranking over 11,997 items with repeat items allowed; best epoch by valid Recall@10. "
        "Recall@10 split into re-bought (repeat) and new (explore) items. P-TopFreq ranks a user's own items by "
        "frequency (ties by global frequency): the \"Reality Check\" study's baseline, which deep NBR models often fail "
        "to beat. Seconds per epoch: median, CPU, compilation excluded.",
        "",
        *table(["model", "test Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "Hit@10", "Recall@10 repeat / explore",
                "epochs (best)", "s/epoch", *PROVENANCE_COLUMNS], rows),
        "",
        files_line(path),
    ]


def layout_before_after() -> list[str]:
    path = BENCH + "layout_before_after.json"
    report = load(path)
    rows = []
    for case, run in report["training"].items():
        medians = run["median_epoch_seconds"]
        rows.append([f"train {case}", f"{run['epochs']} epochs x {run['repeats']}", seconds(medians["before"]),
                     seconds(medians["after"]), f"{run['after_over_before']:.2f}",
                     "yes" if run["test_equal"] and run["loss_equal"] else "NO"])
    for case, run in report["unlearning"].items():
        medians = run["median_request_seconds"]
        rows.append([f"unlearn {case}", "Horror, f 0.003", seconds(medians["before"]), seconds(medians["after"]),
                     f"{run['after_over_before']:.2f}", "yes" if run["rows_equal"] else "NO"])
    ratios = [row[4] for row in rows]
    geometric = math.exp(sum(math.log(float(r)) for r in ratios) / len(ratios))
    return [
        "## Did the layout change (tasks as plug-ins, Flax sequence models, `unlearn/` split) change results or speed?",
        "",
        f"Two source trees side by side, {report['commits']['before']} (before) and {report['commits']['after']} (after), "
        "each job through its own command line, alternating which tree goes first. Training: per-epoch seconds "
        "(median, compilation excluded) and whether the test metrics and every epoch's loss are bitwise equal. "
        "Unlearning: the Horror scenario (fraction 0.003, 98 requests) from each tree's own trained run, median seconds "
        "per request, and whether every result row is equal (all columns but timing and memory). "
        f"Load average {report['load_average_at_start'][0]:.1f} at the start, {report['load_average_at_end'][0]:.1f} at the "
        "end, other jobs sharing the two cores: single runs of a few seconds vary by tens of per cent either way "
        f"(geometric mean of the after / before ratios: {geometric:.2f}).",
        "",
        *table(["job", "size", "before s", "after s", "after / before", "results equal"], rows),
        "",
        f"Every row: command `{report['provenance']['command']}`, commit {commit_cell(report['provenance'])}, "
        f"machine {machine_cell(report['provenance'])}.",
        "",
        files_line(path),
    ]


SECTIONS = (layout_before_after, cf_quality_ml100k, cf_quality_ml1m, cf_speed, sbr_quality, sbr_speed, nbr_tafeng, approximate_methods, cf_spam_attack,
            exact_quality, exact_cost, approximate_cost, influence_core)


def render() -> str:
    lines = [
        "# Results",
        "",
        "The current answer to each question, generated by `python benchmarks/results_page.py` from the result files "
        "in `benchmarks/results/` and `experiments/results/`; edit those, not this page "
        "(`tests/test_results_page.py` fails when the two disagree). How the numbers came about, what else was tried, "
        "and measurements since superseded: [docs/notes/](../docs/notes/).",
        "",
        "Every row names its config, command, commit and machine from the `provenance` block of its file "
        "(`benchmarks/provenance.py`), said under its table (a `run` letter per row where they differ). \"unknown (recorded in X)\": the run did not record "
        "its commit, and X is the commit that added the result to the repository (the code measured is X or "
        "earlier). The CPU machine's two cores were shared with other jobs during most runs; the load columns give the "
        "1-minute load average where the file records it.",
        "",
        "Questions:",
        "",
    ]
    bodies = [section() for section in SECTIONS]
    for body in bodies:
        title = body[0].removeprefix("## ")
        anchor = "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")
        lines.append(f"- [{title}](#{anchor})")
    for body in bodies:
        lines += ["", *body]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed page instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if PAGE.read_text() != text:
            print(f"{PAGE.relative_to(REPO_ROOT)} is not what the result files give: run python benchmarks/results_page.py",
                  file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
