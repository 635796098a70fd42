"""`erase-jax grid GRID.yaml [--workers N] [--executor local|ray [--address A]] [--dry-run] [--out DIR]`.

Validates the grid file, plans its tasks, and either prints the plan with an estimate of what
is left (`--dry-run`) or runs it and writes the leaderboard:

    <out>/store/            the content-addressed store every grid under <out> shares
    <out>/<grid name>/      leaderboard.csv, leaderboard.md, leaderboard.html, failures.csv

Running the same command again after a kill, a failure or a change of the grid runs only the
tasks without a done marker. The exit status is 0 when every task is done, 1 when some failed.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from erase_jax.grid.executors import check_executor, get_executor
from erase_jax.grid.leaderboard import write_leaderboard
from erase_jax.grid.planner import KINDS, Plan, make_plan
from erase_jax.grid.schedule import Summary, execute
from erase_jax.grid.spec import load_grid
from erase_jax.grid.store import Store

STORE_DIR = "store"


def run_grid(path: str | Path, out: str | Path, workers: int = 1, executor: str = "local",
             dry_run: bool = False, quiet: bool = False, address: str | None = None) -> int:
    """The grid command; returns its exit status. Every check happens before any task starts."""
    if dry_run:
        plan = make_plan(load_grid(path))
        check_executor(executor, workers, address)  # a bad executor or worker count fails here too
        print(describe(plan, Store(Path(out) / STORE_DIR), workers))
        return 0
    plan, summary, written = execute_grid(path, out, workers, executor, quiet, address)
    print(f"grid {plan.grid.name}: {summary.line()}")
    for outcome in summary.failed.values():
        print(f"  failed {outcome.task_id}: {outcome.error} (log: {outcome.log})", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written))
    return 1 if summary.failed or summary.blocked else 0


def execute_grid(path: str | Path, out: str | Path, workers: int = 1, executor: str = "local",
                 quiet: bool = False, address: str | None = None) -> tuple[Plan, Summary, list[Path]]:
    """Validates and plans the grid, runs what is not done on the executor (`address`: the
    cluster the Ray executor joins), writes the leaderboard into `<out>/<grid name>/`; returns
    the plan, what happened to its tasks and the files written."""
    plan = make_plan(load_grid(path))
    runner = get_executor(executor, workers, address)
    store = Store(Path(out) / STORE_DIR)
    summary = execute(plan, store, runner, progress=not quiet)
    return plan, summary, write_leaderboard(plan, store, summary, Path(out) / plan.grid.name)


def describe(plan: Plan, store: Store, workers: int = 1) -> str:
    """The plan as text: its cells, its tasks (done or to run, with an estimate), the total."""
    grid = plan.grid
    axes = {name: len({getattr(c, attribute) for c in grid.cells}) for name, attribute in (
        ("data sets", "dataset"), ("models", "model"), ("scenarios", "scenario"), ("methods", "method"), ("seeds", "seed"))}
    counts = ", ".join(f"{plan.count(kind)} {kind}" for kind in KINDS if plan.count(kind) or kind != "audit")
    lines = [f"grid {grid.name}: " + " x ".join(f"{n} {name}" for name, n in axes.items()) + f" = {len(grid.cells)} cells",
             f"{len(plan.tasks)} tasks ({counts}); the store: {store.root}", ""]
    estimates = estimate_seconds(plan, store)
    left = [task for task in plan.tasks.values() if not store.is_done(task.id)]
    for task in plan.tasks.values():
        labels = " ".join(f"{key}={value}" for key, value in task.labels.items())
        state = "done" if store.is_done(task.id) else _duration(estimates.get(task.id))
        lines.append(f"  {task.kind:<9} {task.id:<28} {state:>10}  {labels}")
    known = [estimates[t.id] for t in left if t.id in estimates]
    lines += ["", f"to run: {len(left)} of {len(plan.tasks)} tasks, then the leaderboard (aggregation)"]
    if left and known:
        lines.append(f"estimated cost: {_duration(sum(known))} of task time for the {len(known)} tasks like ones "
                     f"measured in the store (about {_duration(sum(known) / workers)} with {workers} worker(s))"
                     + (f"; {len(left) - len(known)} tasks have no measurement yet" if len(known) < len(left) else ""))
    elif left:
        lines.append("estimated cost: unknown, no task of these kinds (kind, model, data set, method) has finished "
                     "in the store yet")
    return "\n".join(lines)


def estimate_seconds(plan: Plan, store: Store) -> dict[str, float]:
    """Seconds per task of the plan, from the finished tasks of the store with the same cost key
    (kind, model, data set, method): the median of their times. A retrain with none measured
    takes a training's. Tasks of a kind never measured have no estimate."""
    runs = {spec["folder"]: spec["run"] for spec in store.specs().values() if spec["kind"] == "train"}
    runs.update({task.spec["folder"]: task.spec["run"] for task in plan.tasks.values() if task.kind == "train"})
    specs = store.specs()
    measured: dict[tuple, list[float]] = {}
    for task_id, marker in store.markers().items():
        if task_id in specs and "seconds" in marker:
            measured.setdefault(_cost_key(specs[task_id], runs), []).append(marker["seconds"])
    estimates = {}
    for task in plan.tasks.values():
        key = _cost_key(task.spec, runs)
        fallback = ("train", *key[1:3], "") if task.kind == "retrain" else None
        seconds = measured.get(key) or measured.get(fallback)
        if seconds:
            estimates[task.id] = statistics.median(seconds)
    return estimates


def _cost_key(spec: dict, runs: dict[str, dict]) -> tuple:
    run = spec["run"] if spec["kind"] == "train" else runs.get(spec["run_folder"], {"model": "?", "data": {"dataset": "?"}})
    method = spec["unlearn"].get("method", "") if spec["kind"] == "unlearn" else ""
    return spec["kind"], run["model"], str(run["data"]["dataset"]), method


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
