"""A grid's archive in the repository: one small record per finished task, so that a grid too
long for one session finishes over several, on machines whose run folders do not survive.

    experiments/results/grids/<grid name>/      the default archive of a grid (`default_folder`)
      tasks/<task id>.json                       one record per finished task
      leaderboard.csv, .md, .html, failures.csv  the leaderboard of archive + store, rewritten each run

A record is what the task's done marker says plus what the leaderboard reads from its folder,
nothing else (no checkpoints, no models):

    {"task": id, "kind": kind, "spec_hash": digest(spec), "spec": the task's spec,
     "marker": its done marker (seconds, finished, commit, machine),
     "files": {path in the task's folder: text}}     # `result_files`: a method's or the retrains' CSV

A training's or a retrain's record has no file: it keeps the seconds `--dry-run` estimates from.
`rebuild_records` makes records from a leaderboard committed before archives existed.

The planner's ids already hash the settings; `spec_hash` (the hash of the spec, folder included)
is checked against the plan's task, so a record written under other settings is never taken as
done (`Archive.done`). A record that cannot be read, or whose hash is not its spec's, is an
`ArchiveError` naming the file: nothing runs until it is fixed or removed.

`select` decides what a run of the grid does with an archive: a task archived is done; a task
not archived runs when the leaderboard needs it (a `reference` or `unlearn` task) or a task that
runs needs it; a task that runs needs the artifacts of its dependencies (trained models,
retrains), so an archived dependency whose folder is not in this store is recomputed. A
recomputed task keeps its first record (`Archive.add` does not replace one): the leaderboard's
rows stay those committed.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pandas as pd

from erase_jax.audit.job import AUDIT_DIR, AUDIT_FILE
from erase_jax.grid.planner import Plan, Task, digest
from erase_jax.grid.store import Store
from erase_jax.run import write_atomically
from erase_jax.unlearn.protocol.results import CSV_FILE
from erase_jax.unlearn.protocol.retrain import RETRAIN_DIR

RESULTS_ROOT = Path("experiments") / "results" / "grids"  # relative to the repository root
RECORDS_DIR = "tasks"
FIELDS = ("task", "kind", "spec_hash", "spec", "marker", "files")
LEADERBOARD_KINDS = ("reference", "unlearn", "audit")  # the tasks whose rows the leaderboard shows


class ArchiveError(ValueError):
    """An archive file that is not a valid record (the message names the file)."""


def default_folder(grid_name: str, root: str | Path = ".") -> Path:
    """`experiments/results/grids/<grid name>` under `root` (the repository root: the working
    directory by default), which must hold `experiments/results/grids`."""
    results = Path(root) / RESULTS_ROOT
    if not results.is_dir():
        raise ArchiveError(f"no {RESULTS_ROOT}/ under {Path(root).resolve()}: run from the repository root, "
                           "or name the archive folder (--archive DIR)")
    return results / grid_name


def result_files(spec: dict) -> tuple[str, ...]:
    """The files of a task's folder that the leaderboard reads (`leaderboard.long_rows`)."""
    if spec["kind"] == "reference":
        return (f"{RETRAIN_DIR}/{CSV_FILE}",)
    if spec["kind"] == "unlearn":
        return (f"{spec['unlearn']['method'].lower()}/{CSV_FILE}",)
    if spec["kind"] == "audit":
        return (f"{AUDIT_DIR}/{AUDIT_FILE}",)
    return ()


def make_record(task: Task, store: Store) -> dict:
    """The record of a task finished in the store."""
    marker = store.marker(task.id)
    if marker is None:
        raise ValueError(f"task {task.id} is not done in {store.root}")
    folder = store.path(task.spec["folder"])
    files = {relative: (folder / relative).read_text() for relative in result_files(task.spec)}
    return {"task": task.id, "kind": task.kind, "spec_hash": digest(task.spec), "spec": task.spec,
            "marker": marker, "files": files}


def check_record(record, path: Path) -> dict:
    """The record read from `path`, or an `ArchiveError` naming the file."""
    if not isinstance(record, dict) or set(FIELDS) - set(record):
        missing = sorted(set(FIELDS) - set(record)) if isinstance(record, dict) else "an object"
        raise ArchiveError(f"{path}: not an archive record (needs {missing})")
    if record["task"] != path.stem:
        raise ArchiveError(f"{path}: holds the record of task {record['task']!r}, not of {path.stem!r}")
    if not isinstance(record["spec"], dict) or record["spec_hash"] != digest(record["spec"]):
        raise ArchiveError(f"{path}: spec_hash is not the hash of its spec (the file was edited or damaged)")
    files = record["files"]
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()) or not isinstance(record["marker"], dict):
        raise ArchiveError(f"{path}: marker must be an object and files an object of texts")
    return record


class Archive:
    """The records under `folder/tasks/`, read once and checked (`check_record`)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.records: dict[str, dict] = {}
        for path in sorted((self.folder / RECORDS_DIR).glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ArchiveError(f"{path}: not JSON ({error})") from None
            self.records[path.stem] = check_record(record, path)

    def done(self, plan: Plan) -> set[str]:
        """The plan's tasks with a record written under the same spec (same settings)."""
        return {task_id for task_id, record in self.records.items()
                if task_id in plan.tasks and record["spec_hash"] == digest(plan.tasks[task_id].spec)}

    def stale(self, plan: Plan) -> set[str]:
        """Records of tasks this plan does not have, or has with other settings."""
        return set(self.records) - self.done(plan)

    def add(self, task: Task, store: Store) -> Path | None:
        """Writes the record of `task`, finished in `store`, atomically, unless one with the same
        spec is there (a recomputed task keeps its first record); returns the path written."""
        existing = self.records.get(task.id)
        if existing is not None and existing["spec_hash"] == digest(task.spec):
            return None
        return self.write(make_record(task, store))

    def write(self, record: dict) -> Path:
        """Writes a record (`make_record`, `rebuild_records`) atomically; returns its path."""
        path = self.folder / RECORDS_DIR / f"{record['task']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
        self.records[record["task"]] = record
        return path

    def add_finished(self, plan: Plan, store: Store) -> list[Path]:
        """Archives every task of the plan done in the store but not archived (a store run
        without --archive, or a run killed between a marker and its record)."""
        return [path for task in plan.tasks.values() if store.is_done(task.id)
                for path in [self.add(task, store)] if path is not None]


def rebuild_records(plan: Plan, board: pd.DataFrame, source: str) -> list[dict]:
    """Records of the plan's `reference` and `unlearn` tasks rebuilt from a leaderboard (`board`:
    a leaderboard.csv as strings, written by `source`), for a grid whose leaderboard was committed
    before archives existed. Each record's file is that task's rows of the leaderboard as a CSV
    with the columns the leaderboard reads (method, checkpoint_idx, eval_type and the measures,
    values as written), so the leaderboard it gives has the same rows; its marker has the rows'
    commit and machine and `rebuilt_from: source`, no seconds (not measured). Tasks of the board
    not in the plan are left out."""
    records = []
    for task_id, rows in board.groupby("cell", sort=False):
        task = plan.tasks.get(task_id)
        if task is None or task.kind not in LEADERBOARD_KINDS:
            continue
        own = task.spec["unlearn"]["method"].lower() if task.kind == "unlearn" else None
        wide = rows.pivot_table(index=["method", "checkpoint"], columns="metric", values="value", aggfunc="first", sort=False)
        wide = wide.reindex(columns=list(dict.fromkeys(rows["metric"]))).fillna("").reset_index()
        identity = pd.DataFrame({"method": own or wide["method"], "checkpoint_idx": wide["checkpoint"],
                                 "eval_type": "unlearning" if own else "retraining"})
        text = io.StringIO()
        pd.concat([identity, wide.drop(columns=["method", "checkpoint"])], axis=1).to_csv(text, index=False)
        first = rows.iloc[0]
        marker = {"task": task_id, "commit": first["commit"], "machine": first["machine"], "rebuilt_from": source}
        (relative,) = result_files(task.spec)
        records.append({"task": task_id, "kind": task.kind, "spec_hash": digest(task.spec), "spec": task.spec,
                        "marker": marker, "files": {relative: text.getvalue()}})
    return records


@dataclasses.dataclass(frozen=True)
class Selection:
    """What a run does with each task of the plan: `run` (in plan order), of which `recompute`
    were archived but are needed, as artifacts, by a task that runs; `archived` (done);
    `skipped`: neither archived nor needed by the leaderboard or a task that runs."""

    run: tuple[str, ...]
    recompute: frozenset[str]
    archived: frozenset[str]
    skipped: frozenset[str]

    def line(self, total: int) -> str:
        return (f"{len(self.archived)} of {total} tasks archived; to run: {len(self.run)}, of which "
                f"{len(self.recompute)} recomputed for dependencies (archived, but a task to run needs their "
                f"folders, not in this store); {len(self.skipped)} not needed")


def select(plan: Plan, store: Store, archived: set[str]) -> Selection:
    """The tasks to run (see the module docstring). Without an archive (`archived` empty) that
    is every task without a done marker in the store."""
    goals = [task.id for task in plan.tasks.values() if task.kind in LEADERBOARD_KINDS]
    stack = [t for t in goals if t not in archived and not store.is_done(t)]
    needed: set[str] = set()
    while stack:
        task_id = stack.pop()
        if task_id not in needed:
            needed.add(task_id)
            stack.extend(d for d in plan.tasks[task_id].deps if not store.is_done(d))
    run = tuple(t for t in plan.tasks if t in needed)
    rest = set(plan.tasks) - needed - set(archived) - {t for t in plan.tasks if store.is_done(t)}
    return Selection(run, frozenset(needed & archived), frozenset(set(plan.tasks) & archived), frozenset(rest))


class Results:
    """The finished tasks' markers and result files, from the archive's records first (the rows
    committed), then the store."""

    def __init__(self, plan: Plan, store: Store, archive: Archive | None = None):
        self.plan, self.store, self.archive = plan, store, archive

    def _record(self, task_id: str) -> dict | None:
        """The task's record, if archived under the plan's spec (records added meanwhile count)."""
        record = self.archive.records.get(task_id) if self.archive is not None else None
        return record if record is not None and record["spec_hash"] == digest(self.plan.tasks[task_id].spec) else None

    def marker(self, task_id: str) -> dict | None:
        record = self._record(task_id)
        return record["marker"] if record is not None else self.store.marker(task_id)

    def text(self, task_id: str, relative: str) -> str:
        """A result file of a finished task (`result_files`)."""
        record = self._record(task_id)
        if record is not None:
            return record["files"][relative]
        return (self.store.path(self.plan.tasks[task_id].spec["folder"]) / relative).read_text()

    def specs_and_markers(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """Every spec and done marker known (store and archive): what the estimates measure."""
        specs, markers = self.store.specs(), self.store.markers()
        for task_id, record in (self.archive.records.items() if self.archive is not None else ()):
            specs.setdefault(task_id, record["spec"])
            markers.setdefault(task_id, record["marker"])
        return specs, markers
