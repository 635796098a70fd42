"""Running a plan: every task not yet done, each once its dependencies are, on an executor.

The resume rule: a task is done when its marker exists in the store (`Store.is_done`), so a
grid started again, after it finished, failed or was killed, runs only what has no marker (a
task killed half-way resumes inside its own job). A failed task is reported and the tasks
that need it are blocked; every other task goes on. Failed tasks are tried again by the next
run of the grid. At most the executor's `workers` tasks are in flight, each the first ready
task in plan order, so the cells finish one after another rather than every training first: a
grid stopped mid-way leaves few cells half done (what a grid finished over sessions loses at
each stop). With a grid's archive (`erase_jax.grid.archive`), the run is the archive's
selection: archived tasks count as done, and each task's record is archived as it finishes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait

from erase_jax.grid.executors.base import Executor, Outcome
from erase_jax.grid.planner import Plan
from erase_jax.grid.store import Store


@dataclasses.dataclass
class Summary:
    """What a run of the plan did: task ids reused (done before: in the store or archived), run
    now, failed, blocked, and skipped (not done, but nothing left needs them: `archive.select`)."""

    reused: list[str] = dataclasses.field(default_factory=list)
    executed: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, Outcome] = dataclasses.field(default_factory=dict)
    blocked: dict[str, str] = dataclasses.field(default_factory=dict)  # task id -> the failed task it needs
    skipped: list[str] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        return (f"{len(self.executed)} tasks run, {len(self.reused)} reused from the store or archive, "
                f"{len(self.failed)} failed, {len(self.blocked)} blocked by a failure"
                + (f", {len(self.skipped)} not needed (archived dependents)" if self.skipped else ""))


def execute(plan: Plan, store: Store, executor: Executor, progress: bool = True, run: tuple[str, ...] | None = None,
            on_done: Callable[[str], None] | None = None, summary: Summary | None = None) -> Summary:
    """Runs the plan's unfinished tasks on `executor` (`run`: only these, in plan order, each
    of whose dependencies is done in the store or among them); calls `on_done(task id)` as each
    finishes; returns what happened to each (in `summary` where given, filled as tasks end)."""
    summary = Summary() if summary is None else summary
    done = {task_id for task_id in plan.tasks if store.is_done(task_id)}
    waiting = [task_id for task_id in plan.tasks if task_id not in done] if run is None else list(run)
    summary.reused = [task_id for task_id in plan.tasks if task_id not in waiting]
    running = {}
    slots = executor.workers
    bar = _bar(len(waiting), progress)
    try:
        while waiting or running:
            still_waiting = []
            for task_id in waiting:
                task = plan.tasks[task_id]
                failed = [d for d in task.deps if d in summary.failed or d in summary.blocked]
                if failed:
                    summary.blocked[task_id] = summary.blocked.get(failed[0], failed[0])
                    bar.update(1)
                elif len(running) < slots and all(d in done for d in task.deps):
                    store.write_spec(task_id, task.spec)
                    running[executor.submit(task, store)] = task_id
                else:
                    still_waiting.append(task_id)
            waiting = still_waiting
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                task_id = running.pop(future)
                result = _outcome(future, task_id)
                if result.ok:
                    done.add(task_id)
                    summary.executed.append(task_id)
                    if on_done is not None:
                        on_done(task_id)
                else:
                    summary.failed[task_id] = result
                    if progress:
                        bar.write(f"failed: {task_id}: {result.error}", file=sys.stderr)
                bar.set_postfix(done=len(summary.executed), failed=len(summary.failed), blocked=len(summary.blocked),
                                refresh=False)
                bar.update(1)
    finally:
        bar.close()
        executor.shutdown()
    return summary


def _outcome(future, task_id: str) -> Outcome:
    """The future's outcome; an executor's own error counts as the task's failure."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 (reported as the task's failure, the grid goes on)
        return Outcome(task_id, False, 0.0, f"{type(error).__name__}: {error}")


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="task", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
