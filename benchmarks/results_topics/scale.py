"""Scale: how training, full ranking and unlearning requests grow with the data, from ML-100K to
ML-20M size and to a 1M-item catalogue (`benchmarks/scale_growth.py`, synthetic data)."""

from __future__ import annotations

from results_topics.cells import Section, commit_cell, files_line, load_cell, machine_cell, seconds, table
from results_topics.read import BENCH, REPO_ROOT, load

TITLE = "Scale"
SIZE_ORDER = ("ml-100k", "ml-1m", "ml-20m", "catalogue-1m")


def _pair(entry: dict | None) -> str:
    if not entry:
        return "not run"
    if "failed" in entry:
        return "failed"
    return f"{seconds(entry['cold_seconds'])} / {seconds(entry['warm_seconds'])}"


def _rows(report: dict) -> list[dict]:
    rank = {size: i for i, size in enumerate(SIZE_ORDER)}
    return sorted(report["rows"], key=lambda r: (rank.get(r["size"], 99), r["model"]))


def _cost_row(row: dict) -> list[str]:
    train, evaluation, requests = row.get("train"), row.get("evaluation"), row.get("requests", {})
    epoch = "not run"
    if train:
        epoch = seconds(train["epoch_seconds"])
        if train["epoch_extrapolated"]:
            epoch += f" (from {train['timed_batches']} of {train['batches_per_epoch']} batches)"
    return [
        row["size"], row["model"], f"{row.get('n_users', 0):,}", f"{row.get('n_items', 0):,}",
        f"{row.get('n_interactions', 0):,}", epoch, seconds(train["compile_seconds"]) if train else "not run",
        _pair(evaluation), _pair(requests.get("scif")), _pair(requests.get("gif")),
        f"{row.get('peak_rss_gb', max((v for k, v in row.items() if k.startswith('peak_rss')), default=0)):.2f}",
        row.get("stopped", "") or "; ".join(f"{m}: {r['failed']}" for m, r in requests.items() if "failed" in r),
    ]


def _growth_rows(rows: list[dict]) -> list[list[str]]:
    """Each cost at each size over the same model's cost at ML-100K size."""
    base = {r["model"]: r for r in rows if r["size"] == "ml-100k"}
    out = []
    for row in rows:
        first = base.get(row["model"])
        if first is None or row["size"] == "ml-100k":
            continue

        def ratio(get):
            try:
                value = get(row) / get(first)
                return f"{value:.1f}x" if value < 10 else f"{value:.0f}x"
            except (KeyError, TypeError, ZeroDivisionError):
                return "-"

        out.append([
            row["size"], row["model"], ratio(lambda r: r["n_interactions"]), ratio(lambda r: r["n_items"]),
            ratio(lambda r: r["train"]["epoch_seconds"]), ratio(lambda r: r["evaluation"]["warm_seconds"]),
            ratio(lambda r: r["requests"]["scif"]["warm_seconds"]), ratio(lambda r: r["requests"]["gif"]["warm_seconds"]),
            ratio(lambda r: r["peak_rss_gb"]),
        ])
    return out


def growth() -> Section:
    paths = sorted(BENCH + p.name for p in (REPO_ROOT / BENCH).glob("scale_growth*.json"))  # one file per run
    reports = [load(path) for path in paths]
    rows = _rows({"rows": [row for report in reports for row in report["rows"]]})
    big = [r for r in rows if r["size"] == "ml-20m" and "train" in r]
    answer = "; ".join(
        f"{r['model']} at ML-20M size: epoch {seconds(r['train']['epoch_seconds'])} s"
        + (" (extrapolated)" if r["train"]["epoch_extrapolated"] else "")
        + (f", full ranking of {r['n_test_users']:,} users {seconds(r['evaluation']['warm_seconds'])} s" if "evaluation" in r else "")
        + f", peak {r.get('peak_rss_gb', r['train']['peak_rss_gb']):.1f} GB"
        for r in big
    ) or "not measured at ML-20M size"
    runs = [
        f"`{p}`: command `{r['provenance']['command']}`, commit {commit_cell(r['provenance'])}, machine "
        f"{machine_cell(r['provenance'])}, load average {load_cell(r['load_average_start'], r.get('load_average_end'))}"
        for p, r in zip(paths, reports)
    ]
    return Section(
        "How do epoch time, full ranking, one SCIF / GIF request and memory grow from ML-100K to ML-20M size and a 1M-item catalogue?",
        answer + " (2 shared CPU cores)",
        [
            "Synthetic data (`erase_jax.data.synthetic`) with the users, items and interactions per user of ML-100K, ML-1M "
            "and ML-20M, and a 1M-item catalogue with 1,024 users; chronological 80/10/10 split; batch 2048. Epoch: one "
            "jitted epoch after compilation; where it says \"from n of N batches\" the time of n batches is scaled to the "
            "epoch (LightGCN propagates the whole graph at every step). Evaluation: full ranking of every test user "
            "(history masked, top 20) in user blocks sized to the catalogue (`cf_ranking.block_for`: 32 users a block at 1M "
            "items), cold (compilation included) / warm. Requests: one SCIF and one GIF request (defaults) of the user "
            "with the median row count, a third of its rows removed, cold / warm. Peak: the process's peak resident "
            "memory (data generation included; each size and model in its own process, stopped above 6 GB).",
            "",
            *table(["size", "model", "users", "items", "interactions", "epoch s", "compile s", "evaluation s cold / warm",
                    "SCIF s cold / warm", "GIF s cold / warm", "peak GB", "stopped / failed"], [_cost_row(r) for r in rows]),
            "",
            "Growth over the same model at ML-100K size (warm costs):",
            "",
            *table(["size", "model", "interactions", "items", "epoch", "evaluation", "SCIF", "GIF", "peak memory"],
                   _growth_rows(rows)),
            "",
            "Runs (the rows of each file):",
            "",
            *(f"- {run}" for run in runs),
            "",
            files_line(*paths),
        ],
    )


SECTIONS = (growth,)
