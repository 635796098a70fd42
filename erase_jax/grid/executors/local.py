"""The local executor: a pool of worker processes on this machine, one process per task.

Each task runs in a fresh interpreter (`erase_jax.grid.worker`), so tasks share no memory or
compiled state and a crashing task takes only itself down. A thread per worker slot waits on
its process; output goes to the task's log in the store.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

from erase_jax.grid.executors.base import no_address, run_worker
from erase_jax.grid.planner import Task
from erase_jax.grid.store import Store


class LocalExecutor:
    """Runs at most `workers` tasks at once, each in its own process."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grid-worker")

    def submit(self, task: Task, store: Store) -> Future:
        return self.pool.submit(run_worker, store, task.id, self.workers)

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def check(workers: int, address: str | None) -> None:
    """Runs on this machine only: an `--address` is an error."""
    no_address(address)


def make(workers: int, address: str | None = None) -> LocalExecutor:
    check(workers, address)
    return LocalExecutor(workers)
