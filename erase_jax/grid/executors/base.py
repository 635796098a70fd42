"""The executor interface: start a task, get a future of its outcome.

    class Executor(Protocol):
        def submit(self, task: Task, store: Store) -> Future[Outcome]
        def shutdown(self) -> None

The scheduler (`erase_jax.grid.schedule`) decides what runs when, from the plan's
dependencies and the store's markers; an executor only runs one task's worker
(`erase_jax.grid.worker`, which reads the task's spec from the store) and reports back, with
at most its `workers` tasks at a time. A future is what `concurrent.futures.wait` accepts, which
a Ray object reference provides (`ref.future()`), so a Ray executor fits the same scheduler.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from concurrent.futures import Future
from typing import Protocol

from erase_jax.grid.planner import Task
from erase_jax.grid.store import Store

PARENT_ENV = "ERASE_JAX_GRID_PARENT"  # the grid's process id, in a worker's environment
ERROR_LINES = 1  # lines of the worker's log that a failure reports


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one attempt at a task ended: `ok` when its done marker exists."""

    task_id: str
    ok: bool
    seconds: float
    error: str = ""  # the failure's last log line (the exception), empty when ok
    log: str = ""  # the worker's full output


class Executor(Protocol):
    workers: int  # tasks at a time: the scheduler keeps at most this many submitted

    def submit(self, task: Task, store: Store) -> Future: ...

    def shutdown(self) -> None: ...


def no_address(address: str | None) -> None:
    """For executors that run on this machine only: `--address` (a cluster to join) is an error."""
    if address is not None:
        raise ValueError(f"--address {address} names a cluster to join; only --executor ray joins one")


def worker_command(store: Store, task_id: str) -> list[str]:
    """The worker's command line: this interpreter, the worker module, the store and the task."""
    return [sys.executable, "-m", "erase_jax.grid.worker", str(store.root), task_id]


def worker_env(workers: int) -> dict[str, str]:
    """The worker's environment: this process's, the parent id (the worker dies with the grid),
    and with several workers on one accelerator, an even share of its memory each."""
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    if workers > 1:
        env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 / workers:.2f}")
    return env


def run_worker(store: Store, task_id: str, workers: int) -> Outcome:
    """Runs the task's worker process here and waits for it; its output goes to the task's log.
    `workers` is how many tasks share this machine (`worker_env`)."""
    started = time.perf_counter()
    with store.log_path(task_id).open("w") as log:
        process = subprocess.run(worker_command(store, task_id), stdout=log, stderr=subprocess.STDOUT,
                                 env=worker_env(workers))
    return outcome(store, task_id, process.returncode, time.perf_counter() - started)


def outcome(store: Store, task_id: str, returncode: int, seconds: float) -> Outcome:
    """The outcome of a finished worker, from its exit status, the store's marker and its log."""
    if returncode == 0 and store.is_done(task_id):
        return Outcome(task_id, True, seconds)
    log = store.log_path(task_id)
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()] if log.exists() else []
    error = " ".join(lines[-ERROR_LINES:]) if lines else f"the worker exited with status {returncode}"
    if returncode < 0:
        error = f"killed by signal {-returncode}; {error}"
    return Outcome(task_id, False, seconds, error, str(log))
