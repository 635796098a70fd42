"""`erase-jax grid GRID.yaml [--workers N] [--executor local|ray [--address A]] [--dry-run] [--out DIR] [--archive [DIR]]`.

Validates the grid file, plans its tasks, and either prints the plan with an estimate of what
is left (`--dry-run`) or runs it and writes the leaderboard:

    <out>/store/            the content-addressed store every grid under <out> shares
    <out>/<grid name>/      leaderboard.csv, leaderboard.md, leaderboard.html, failures.csv

Running the same command again after a kill, a failure or a change of the grid runs only the
tasks without a done marker. With `--archive` (default folder `experiments/results/grids/<grid
name>/`, `erase_jax.grid.archive`) each finished task's record goes into the archive, archived
tasks count as done, the store's missing dependencies are recomputed where a task to run needs
them, and the leaderboard, of archive and store, is also written into the archive folder: a
grid finishes over sessions that each run it and commit the archive. The exit status is 0 when
every task is done, 1 when some failed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from erase_jax.grid.archive import Archive, Results, Selection, default_folder, select
from erase_jax.grid.executors import check_executor, get_executor
from erase_jax.grid.leaderboard import write_leaderboard
from erase_jax.grid.planner import KINDS, Plan, make_plan
from erase_jax.grid.schedule import Summary, execute
from erase_jax.grid.spec import load_grid
from erase_jax.grid.store import Store

STORE_DIR = "store"


DEFAULT_ARCHIVE = ""  # `--archive` without a folder: the grid's `archive.default_folder`


def run_grid(path: str | Path, out: str | Path, workers: int = 1, executor: str = "local",
             dry_run: bool = False, quiet: bool = False, address: str | None = None,
             archive: str | Path | None = None) -> int:
    """The grid command; returns its exit status. Every check happens before any task starts.
    `archive`: the archive folder, `DEFAULT_ARCHIVE` for the grid's own, None for none."""
    if dry_run:
        plan = make_plan(load_grid(path))
        check_executor(executor, workers, address)  # a bad executor or worker count fails here too
        print(describe(plan, Store(Path(out) / STORE_DIR), workers, open_archive(plan, archive)))
        return 0
    plan, summary, written = execute_grid(path, out, workers, executor, quiet, address, archive)
    print(f"grid {plan.grid.name}: {summary.line()}")
    for outcome in summary.failed.values():
        print(f"  failed {outcome.task_id}: {outcome.error} (log: {outcome.log})", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in written))
    return 1 if summary.failed or summary.blocked else 0


def open_archive(plan: Plan, folder: str | Path | None) -> Archive | None:
    """The archive at `folder` (`DEFAULT_ARCHIVE`: the grid's own), its records checked; None for None."""
    if folder is None:
        return None
    return Archive(default_folder(plan.grid.name) if folder == DEFAULT_ARCHIVE else folder)


def execute_grid(path: str | Path, out: str | Path, workers: int = 1, executor: str = "local",
                 quiet: bool = False, address: str | None = None,
                 archive: str | Path | None = None) -> tuple[Plan, Summary, list[Path]]:
    """Validates and plans the grid, runs what is not done on the executor (`address`: the
    cluster the Ray executor joins), writes the leaderboard into `<out>/<grid name>/`; returns
    the plan, what happened to its tasks and the files written. With `archive` (a folder, or
    `DEFAULT_ARCHIVE`), runs the archive's selection, archives each task as it finishes, and
    writes the leaderboard into the archive folder too."""
    plan = make_plan(load_grid(path))
    records = open_archive(plan, archive)  # a bad record fails here, before anything runs
    runner = get_executor(executor, workers, address)
    store = Store(Path(out) / STORE_DIR)
    if records is not None:
        records.add_finished(plan, store)
    selection = select(plan, store, records.done(plan) if records is not None else set())
    summary, results = Summary(), Results(plan, store, records)
    folders = [Path(out) / plan.grid.name, *([records.folder] if records is not None else [])]

    def leaderboards() -> list[Path]:
        return [p for folder in folders for p in write_leaderboard(plan, results, summary, folder)]

    with leaderboard_on_sigterm(leaderboards):
        execute(plan, store, runner, progress=not quiet, run=selection.run, summary=summary,
                on_done=None if records is None else lambda task_id: records.add(plan.tasks[task_id], store))
    summary.skipped = [t for t in summary.reused if t in selection.skipped]
    summary.reused = [t for t in summary.reused if t not in selection.skipped]
    return plan, summary, leaderboards()


@contextlib.contextmanager
def leaderboard_on_sigterm(write: Callable[[], list[Path]]):
    """While the grid runs, SIGTERM writes the leaderboard of what has finished, then ends the
    grid at once (its workers die with it; the tasks they ran are run again next time)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        write()
        os._exit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def describe(plan: Plan, store: Store, workers: int = 1, archive: Archive | None = None) -> str:
    """The plan as text: its cells, its tasks (done or to run, with an estimate), the total."""
    grid = plan.grid
    axes = {name: len({getattr(c, attribute) for c in grid.cells}) for name, attribute in (
        ("data sets", "dataset"), ("models", "model"), ("scenarios", "scenario"), ("methods", "method"), ("seeds", "seed"))}
    counts = ", ".join(f"{plan.count(kind)} {kind}" for kind in KINDS if plan.count(kind) or kind != "audit")
    lines = [f"grid {grid.name}: " + " x ".join(f"{n} {name}" for name, n in axes.items()) + f" = {len(grid.cells)} cells",
             f"{len(plan.tasks)} tasks ({counts}); the store: {store.root}", ""]
    estimates = estimate_seconds(plan, store, archive)
    selection = select(plan, store, archive.done(plan) if archive is not None else set())
    left = [plan.tasks[task_id] for task_id in selection.run]
    for task in plan.tasks.values():
        labels = " ".join(f"{key}={value}" for key, value in task.labels.items())
        lines.append(f"  {task.kind:<9} {task.id:<28} {_state(task.id, store, selection, estimates):>10}  {labels}")
    known = [estimates[t.id] for t in left if t.id in estimates]
    lines.append("")
    if archive is not None:
        stale = archive.stale(plan)
        lines.append(f"the archive: {archive.folder}: {selection.line(len(plan.tasks))}"
                     + (f"; {len(stale)} records of other settings or grids ignored" if stale else ""))
    lines.append(f"to run: {len(left)} of {len(plan.tasks)} tasks, then the leaderboard (aggregation)")
    if left and known:
        lines.append(f"estimated cost: {_duration(sum(known))} of task time for the {len(known)} tasks like ones "
                     f"measured in the store or archive (about {_duration(sum(known) / workers)} with {workers} worker(s))"
                     + (f"; {len(left) - len(known)} tasks have no measurement yet" if len(known) < len(left) else ""))
    elif left:
        lines.append("estimated cost: unknown, no task of these kinds (kind, model, data set, method) has finished "
                     "in the store or archive yet")
    return "\n".join(lines)


def _state(task_id: str, store: Store, selection: Selection, estimates: dict[str, float]) -> str:
    if store.is_done(task_id):
        return "done"
    if task_id in selection.recompute:
        return "recompute " + _duration(estimates.get(task_id))
    if task_id in selection.archived:
        return "archived"
    return "not needed" if task_id in selection.skipped else _duration(estimates.get(task_id))


def estimate_seconds(plan: Plan, store: Store, archive: Archive | None = None) -> dict[str, float]:
    """Seconds per task of the plan, from the finished tasks of the store and the archive with
    the same cost key (kind, model, data set, method): the median of their times. A retrain with
    none measured takes a training's. Tasks of a kind never measured have no estimate."""
    specs, markers = Results(plan, store, archive).specs_and_markers()
    runs = {spec["folder"]: spec["run"] for spec in specs.values() if spec["kind"] == "train"}
    runs.update({task.spec["folder"]: task.spec["run"] for task in plan.tasks.values() if task.kind == "train"})
    measured: dict[tuple, list[float]] = {}
    for task_id, marker in markers.items():
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
