"""The grid's results in one table: a long CSV of every measure, and a markdown view of it.

`leaderboard.csv` has one row per (cell, method, checkpoint, measure):

    cell, dataset, model, scenario, method, seed, checkpoint, metric, value, commit, machine

`cell` is the key of the task that wrote the row (a method's `unlearn` task; for `retrain`
rows, the cell's `reference` task), dataset / model / scenario / method the grid's labels,
`value` the number as the protocol wrote it, commit and machine where that task ran. Rows are
each method's evaluated checkpoints (`eval_type` unlearning) and the matched retrains
(`retraining`); the untouched model is the
`untouched` method's rows (named `original`, its old name, in the grids).

`leaderboard.md` has a section per scenario, data set and model: at the last checkpoint the
methods side by side (mean +/- std over the seeds), then each measure's gap to the retrain of
the same seed (mean +/- std), the yardstick of the benchmark: an exact method has gap 0. Its
measures are those of `erase-jax report` (`erase_jax.unlearn.protocol.report`). Failed and
blocked tasks are listed in `failures.csv` and at the end of the markdown.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from erase_jax.grid.planner import Plan
from erase_jax.grid.schedule import Summary
from erase_jax.grid.store import Store
from erase_jax.unlearn.protocol import report
from erase_jax.unlearn.protocol.results import CSV_FILE, write_csv
from erase_jax.unlearn.protocol.retrain import RETRAIN_DIR

COLUMNS = ("cell", "dataset", "model", "scenario", "method", "seed", "checkpoint", "metric", "value", "commit", "machine")
# the protocol's row header (`results.row_header`): which row, not what was measured
IDENTITY = {"dataset", "model", "seed", "scenario", "category", "fraction", "method", "checkpoint_idx", "eval_type"}
FAILURE_COLUMNS = ("task", "status", "kind", "dataset", "model", "scenario", "method", "seed", "error", "log")


def long_rows(plan: Plan, store: Store) -> list[dict]:
    """Every measure of every finished method run and retrain of the plan, in plan order."""
    rows, seen = [], set()
    for cell_tasks in plan.cells:
        cell = cell_tasks.cell
        method_dir = cell.unlearn.method.lower()
        sources = (
            (cell_tasks.unlearn, cell.method, "unlearning", Path(method_dir) / CSV_FILE),
            (cell_tasks.reference, report.REFERENCE, "retraining", Path(RETRAIN_DIR) / CSV_FILE),
        )
        for task_id, method, eval_type, relative in sources:
            labels = (cell.dataset, cell.model, cell.scenario, method, cell.seed)
            marker = store.marker(task_id)
            if marker is None or (task_id, labels) in seen:
                continue
            seen.add((task_id, labels))
            header = dict(zip(COLUMNS[:6], (task_id, *labels)))
            provenance = {"commit": marker.get("commit", ""), "machine": marker.get("machine", "")}
            with (store.path(plan.tasks[task_id].spec["folder"]) / relative).open() as handle:
                for row in csv.DictReader(handle):
                    if row["eval_type"] != eval_type or int(row["checkpoint_idx"]) < 0:
                        continue
                    for metric, value in row.items():
                        if metric not in IDENTITY and value not in ("", None):
                            rows.append({**header, "checkpoint": int(row["checkpoint_idx"]), "metric": metric,
                                         "value": value, **provenance})
    return rows


def failure_rows(plan: Plan, summary: Summary) -> list[dict]:
    """Failed tasks with their error, then the tasks they blocked."""
    rows = []
    for task_id, outcome in summary.failed.items():
        task = plan.tasks[task_id]
        rows.append({"task": task_id, "status": "failed", "kind": task.kind, **task.labels,
                     "error": outcome.error, "log": outcome.log})
    for task_id, cause in summary.blocked.items():
        task = plan.tasks[task_id]
        rows.append({"task": task_id, "status": "blocked", "kind": task.kind, **task.labels,
                     "error": f"needs {cause}, which failed", "log": ""})
    return [{column: row.get(column, "") for column in FAILURE_COLUMNS} for row in rows]


def write_leaderboard(plan: Plan, store: Store, summary: Summary, folder: str | Path) -> list[Path]:
    """Writes leaderboard.csv, leaderboard.md and failures.csv into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = long_rows(plan, store)
    failures = failure_rows(plan, summary)
    paths = [folder / "leaderboard.csv", folder / "leaderboard.md", folder / "failures.csv"]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame.to_csv(paths[0], index=False)
    paths[1].write_text(markdown(plan, frame, failures))
    if failures:
        write_csv(paths[2], failures)
    else:
        paths[2].write_text(",".join(FAILURE_COLUMNS) + "\n")
    return paths


def markdown(plan: Plan, frame: pd.DataFrame, failures: list[dict]) -> str:
    """The leaderboard's markdown view (see the module docstring)."""
    lines = [f"# Leaderboard: grid {plan.grid.name}", ""]
    if frame.empty:
        lines += ["No finished cell yet.", ""]
    methods = list(dict.fromkeys(cell.method for cell in plan.grid.cells))
    order = [report.BASELINE] + [m for m in methods if m != report.BASELINE] + [report.REFERENCE]
    values = frame.assign(value=pd.to_numeric(frame["value"], errors="coerce"))
    for (scenario, dataset, model), group in values.groupby(["scenario", "dataset", "model"], sort=False):
        k = int(group["checkpoint"].max())
        at_k = group[group["checkpoint"] == k].pivot_table(index=["method", "seed"], columns="metric", values="value")
        seeds = sorted(set(group["seed"]))
        lines += [f"## {scenario}: {model} on {dataset}", "",
                  f"Checkpoint {k} (all requests); mean +/- std over seeds {seeds}.", ""]
        shown = report.present(at_k, report.UTILITY + report.EXPOSURE + report.AGREEMENT + report.COST)
        lines += _table(at_k, [m for m in order if m in at_k.index.get_level_values(0)], shown)
        if report.REFERENCE in at_k.index.get_level_values(0):
            gaps = at_k - at_k.xs(report.REFERENCE, level="method").reindex(at_k.index, level="seed")
            gap_measures = [(key, f"{title} - retrain") for key, title in report.present(at_k, report.UTILITY + report.EXPOSURE)]
            lines += ["", "Gap to the retrain of the same seed (0 = what exact unlearning gives):", ""]
            lines += _table(gaps, [m for m in order if m in at_k.index.get_level_values(0) and m != report.REFERENCE],
                            gap_measures)
        lines.append("")
    if failures:
        lines += ["## Failures", "", "| task | status | where | error |", "|---|---|---|---|"]
        for row in failures:
            where = " ".join(str(row[c]) for c in ("dataset", "model", "scenario", "method", "seed") if row[c] != "")
            lines.append(f"| {row['task']} | {row['status']} | {where} | {row['error'].replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


def _table(values: pd.DataFrame, methods: list[str], measures: list[tuple[str, str]]) -> list[str]:
    """Methods (rows) x measures (columns), each cell mean +/- std over the seeds."""
    lines = ["| method | " + " | ".join(title for _, title in measures) + " |", "|---" * (len(measures) + 1) + "|"]
    for method in methods:
        per_seed = values.xs(method, level="method")
        cells = [_mean_std(per_seed[key] if key in per_seed else pd.Series(dtype=float), key) for key, _ in measures]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _mean_std(series: pd.Series, key: str) -> str:
    series = series.dropna()
    if series.empty:
        return ""
    mean = report.format_value(series.mean(), key)
    return mean if len(series) == 1 else f"{mean} +/- {report.format_value(series.std(), key)}"
