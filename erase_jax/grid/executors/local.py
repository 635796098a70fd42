"""The local executor: a pool of worker processes on this machine, one process per task.

Each task runs in a fresh interpreter (`erase_jax.grid.worker`), so tasks share no memory or
compiled state and a crashing task takes only itself down. A thread per worker slot waits on
its process; output goes to the task's log in the store.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import Future, ThreadPoolExecutor

from erase_jax.grid.executors.base import Outcome, outcome, worker_command, worker_env
from erase_jax.grid.planner import Task
from erase_jax.grid.store import Store


class LocalExecutor:
    """Runs at most `workers` tasks at once, each in its own process."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grid-worker")

    def submit(self, task: Task, store: Store) -> Future:
        return self.pool.submit(self._run, task.id, store)

    def _run(self, task_id: str, store: Store) -> Outcome:
        started = time.perf_counter()
        with store.log_path(task_id).open("w") as log:
            process = subprocess.run(worker_command(store, task_id), stdout=log, stderr=subprocess.STDOUT,
                                     env=worker_env(self.workers))
        return outcome(store, task_id, process.returncode, time.perf_counter() - started)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make(workers: int) -> LocalExecutor:
    return LocalExecutor(workers)
