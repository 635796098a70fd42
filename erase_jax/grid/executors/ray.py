"""The Ray executor: each task a Ray task that runs the local executor's worker process.

    erase-jax grid GRID.yaml --executor ray [--address auto|HOST:PORT] [--workers N]

Without `--address` the grid starts a local Ray instance of its own (`workers` CPUs, the GPUs
Ray finds, a small object store, no dashboard) and stops it when the grid ends; with one it
joins that cluster (`auto`: the one `ray start --head` runs on this machine) and leaves it
running. Needs `pip install -e '.[ray]'`; the local executor does without.

Each task is a `ray.remote` call carrying the task's declared needs (`planner.Needs`):
`num_cpus`, and `num_gpus=1` when it asks for an accelerator and the cluster has GPUs, so Ray
places it on a GPU node and gives it that GPU (CUDA_VISIBLE_DEVICES). The call runs
`python -m erase_jax.grid.worker STORE TASK` (`base.run_worker`) exactly as the local executor
does, so a task is just as idempotent and resumable (its done marker, its lock) and the worker
dies with the Ray worker that runs it. At most `workers` tasks are in flight at once; Ray
decides where each runs. On a cluster of several machines the store must be on a file system
every node sees at the same path, with the project installed on every node.

Ray retries a task whose node died (a task is idempotent, so that is safe); a task that fails
is reported, and the next run of the grid tries it again.
"""

from __future__ import annotations

import importlib.util
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from erase_jax.grid.executors.base import run_worker
from erase_jax.grid.planner import Needs, Task
from erase_jax.grid.store import Store

INSTALL = "the Ray executor needs ray: pip install -e '.[ray]'"
OBJECT_STORE_BYTES = 128 * 1024**2  # outcomes are a few hundred bytes; Ray's minimum is 75 MiB


def ray_options(needs: Needs, gpus_in_cluster: float) -> dict:
    """The `ray.remote` resources for a task's needs: its CPUs, and one GPU when it wants an
    accelerator and the cluster has any (a CPU-only cluster runs it on CPU, as JAX would)."""
    return {"num_cpus": needs.cpus, "num_gpus": 1 if needs.accelerator and gpus_in_cluster > 0 else 0}


def _run_remote(store_root: str, task_id: str):
    """The Ray task's body, on whichever node Ray chose: the worker process, its outcome."""
    return run_worker(Store(store_root), task_id, workers=1)


class RayExecutor:
    """Submits each task as a Ray task with its needs; at most `workers` in flight at once.

    `started` says whether this executor started the Ray instance (and so stops it)."""

    def __init__(self, workers: int, address: str | None):
        import ray

        self.ray, self.workers = ray, workers
        self.started = not ray.is_initialized()
        if self.started and address is None:
            ray.init(num_cpus=workers, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
        elif self.started:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
        self.gpus = ray.cluster_resources().get("GPU", 0)
        self.remote = ray.remote(_run_remote)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grid-ray")

    def submit(self, task: Task, store: Store) -> Future:
        options = {**ray_options(task.needs, self.gpus), "name": task.id}
        return self.pool.submit(self._run, options, str(store.root), task.id)

    def _run(self, options: dict, store_root: str, task_id: str):
        return self.ray.get(self.remote.options(**options).remote(store_root, task_id))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.started:
            self.ray.shutdown()


def check(workers: int, address: str | None) -> None:
    """Ray must be importable; `address` is free-form (Ray itself says if it cannot connect)."""
    if importlib.util.find_spec("ray") is None:
        raise ValueError(INSTALL)


def make(workers: int, address: str | None = None) -> RayExecutor:
    check(workers, address)
    return RayExecutor(workers, address)
