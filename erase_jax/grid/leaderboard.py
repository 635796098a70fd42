"""The grid's results in one table: a long CSV of every measure, and its markdown and HTML views.

`leaderboard.csv` has one row per (cell, method, checkpoint, measure):

    cell, dataset, model, scenario, method, seed, checkpoint, metric, value, commit, machine

`cell` is the key of the task that wrote the row (a method's `unlearn` task; for `retrain`
rows, the cell's `reference` task), dataset / model / scenario / method the grid's labels,
`value` the number as the protocol wrote it, commit and machine where that task ran. Rows are
each method's evaluated checkpoints (`eval_type` unlearning) and the matched retrains
(`retraining`; `retrain@seed<s>` for those of the grid's `retrain_seeds`); the untouched model is the
`untouched` method's rows (named `original`, its old name, in the grids). A grid with an `audit`
section adds, per audited removal, the membership audit's game 2 AUC and TPR at 1 % FPR
(`AUDIT_MEASURES`) at the last checkpoint, `cell` the audit task's key.

`leaderboard.md` and `leaderboard.html` are generated from the CSV alone (`views`, `page`): per
scenario, data set and model, at the last checkpoint the methods side by side (mean +/- std over
the seeds), each measure's gap to the retrain of the same seed (the benchmark's yardstick: an
exact method has gap 0) and the cost, also as a share of one retrain; the page adds each
measure's trajectory over the four checkpoints as a figure. Failed and blocked tasks are listed
in `failures.csv` and at the end of both.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd

from erase_jax.grid import page, views
from erase_jax.grid.archive import Results, result_files
from erase_jax.grid.planner import Plan
from erase_jax.grid.schedule import Summary
from erase_jax.unlearn.protocol import report
from erase_jax.unlearn.protocol.jobs import CHECKPOINTS
from erase_jax.unlearn.protocol.results import write_csv

COLUMNS = ("cell", "dataset", "model", "scenario", "method", "seed", "checkpoint", "metric", "value", "commit", "machine")
# the protocol's row header (`results.row_header`): which row, not what was measured
IDENTITY = {"dataset", "model", "seed", "scenario", "category", "fraction", "method", "checkpoint_idx", "eval_type"}
# leaderboard metric -> (the audit record's game entry, its key)
AUDIT_MEASURES = {"audit_game2_auc": ("game2_global_variance", "auc"),
                  "audit_game2_tpr@1%fpr": ("game2_global_variance", "tpr@0.01fpr")}
FAILURE_COLUMNS = ("task", "status", "kind", "dataset", "model", "scenario", "method", "seed", "error", "log")


def long_rows(plan: Plan, results: Results) -> list[dict]:
    """Every measure of every finished method run and retrain of the plan, in plan order, from
    the finished tasks' result files (`results`: the store's, or an archive's and the store's)."""
    rows, seen = [], set()
    for cell_tasks in plan.cells:
        cell = cell_tasks.cell
        sources = ((cell_tasks.unlearn, cell.method, "unlearning"), (cell_tasks.reference, report.REFERENCE, "retraining"))
        for task_id, method, eval_type in sources:
            labels = (cell.dataset, cell.model, cell.scenario, method, cell.seed)
            marker = results.marker(task_id)
            if marker is None or (task_id, labels) in seen:
                continue
            seen.add((task_id, labels))
            header = dict(zip(COLUMNS[:6], (task_id, *labels)))
            provenance = {"commit": marker.get("commit", ""), "machine": marker.get("machine", "")}
            (relative,) = result_files(plan.tasks[task_id].spec)  # the method's CSV, or the retrains'
            with io.StringIO(results.text(task_id, relative)) as handle:
                for row in csv.DictReader(handle):
                    if row["eval_type"] != eval_type or int(row["checkpoint_idx"]) < 0:
                        continue
                    # a retrain with another seed (the grid's retrain_seeds) keeps its own label
                    own = {"method": row["method"]} if row["method"].startswith(report.SEED_REFERENCE) else {}
                    for metric, value in row.items():
                        if metric not in IDENTITY and value not in ("", None):
                            rows.append({**header, **own, "checkpoint": int(row["checkpoint_idx"]), "metric": metric,
                                         "value": value, **provenance})
        if cell_tasks.audit is not None and (cell_tasks.audit, cell.seed) not in seen:
            seen.add((cell_tasks.audit, cell.seed))
            rows += audit_rows(plan, results, cell_tasks.audit, cell)
    return rows


def audit_rows(plan: Plan, results: Results, task_id: str, cell) -> list[dict]:
    """The audit task's measures (`AUDIT_MEASURES`) per removal, at the last checkpoint (the audit
    removes every forgotten pair), each removal under the methods axis label it audits."""
    marker = results.marker(task_id)
    if marker is None:
        return []
    (relative,) = result_files(plan.tasks[task_id].spec)  # the audit file
    record = json.loads(results.text(task_id, relative))
    rows = []
    for removal, label in plan.grid.audit_labels:
        found = record["removals"].get(removal)
        if found is None:
            continue
        header = dict(zip(COLUMNS[:6], (task_id, cell.dataset, cell.model, cell.scenario, label, cell.seed)))
        for metric, (game, key) in AUDIT_MEASURES.items():
            rows.append({**header, "checkpoint": CHECKPOINTS[-1], "metric": metric, "value": found[game][key],
                         "commit": marker.get("commit", ""), "machine": marker.get("machine", "")})
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


def write_leaderboard(plan: Plan, results: Results, summary: Summary, folder: str | Path) -> list[Path]:
    """Writes leaderboard.csv (the rows of `results`), then from it (`views`) leaderboard.md and
    leaderboard.html, and failures.csv into `folder`; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    failures = failure_rows(plan, summary)
    paths = [folder / "leaderboard.csv", folder / "leaderboard.md", folder / page.PAGE_FILE, folder / "failures.csv"]
    pd.DataFrame(long_rows(plan, results), columns=list(COLUMNS)).to_csv(paths[0], index=False)
    if failures:
        write_csv(paths[3], failures)
    else:
        paths[3].write_text(",".join(FAILURE_COLUMNS) + "\n")
    board = read_leaderboard(paths[0])
    paths[1].write_text(markdown(plan.grid.name, views.sections(board), failures))
    page.write_page(folder, plan.grid.name)
    return paths


def read_leaderboard(path: str | Path) -> pd.DataFrame:
    """A leaderboard.csv as written: every column a string, empty cells empty."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def markdown(grid_name: str, sections: list[views.Section], failures: list[dict]) -> str:
    """The leaderboard's markdown view: per section, its tables (see `views`), then failures."""
    lines = [f"# Leaderboard: grid {grid_name}", ""]
    if not sections:
        lines += ["No finished cell yet.", ""]
    for section in sections:
        lines += [f"## {section.title}", "",
                  f"Checkpoint {section.checkpoint} (all requests); mean +/- std over seeds {', '.join(section.seeds)}.", ""]
        for table in section.tables:
            lines += [f"{table.caption}:", "", "| method | " + " | ".join(table.titles) + " |",
                      "|---" * (len(table.titles) + 1) + "|"]
            lines += [f"| {method} | " + " | ".join(cell.text() if cell else "" for cell in cells) + " |"
                      for method, cells in table.rows]
            lines.append("")
    if failures:
        lines += ["## Failures", "", "| task | status | where | error |", "|---|---|---|---|"]
        for row in failures:
            where = " ".join(str(row[c]) for c in ("dataset", "model", "scenario", "method", "seed") if row[c] != "")
            lines.append(f"| {row['task']} | {row['status']} | {where} | {row['error'].replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)
