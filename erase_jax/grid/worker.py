"""One task in its own process: `python -m erase_jax.grid.worker STORE TASK_ID`.

Reads the task's spec from the store, runs it through the project's jobs (`train_run`,
`retrain`, `retrain_all`, `unlearn`), which resume their own half-done work, and writes the
task's done marker last, atomically, with what it cost and where it ran (commit, machine). A
finished task returns at once; a second worker on the same task waits for the first (the
store's lock). Exit status 0 when the task is done, 1 with the traceback on stderr when it
failed (its last line is the error the grid reports).

Started by a grid (`PARENT_ENV` holds the grid's process id), the worker dies with the grid
(Linux: `PR_SET_PDEATHSIG`), so a killed grid leaves no task running behind it.
"""

from __future__ import annotations

import ctypes
import datetime
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

from erase_jax import config as config_lib
from erase_jax.grid.executors.base import PARENT_ENV
from erase_jax.grid.store import Store

PROVENANCE = Path(__file__).resolve().parents[2] / "benchmarks" / "provenance.py"


def run_config(spec: dict) -> config_lib.RunConfig:
    return config_lib.resolve(config_lib.from_dict(config_lib.RunConfig, spec["run"]))


def unlearn_config(spec: dict):
    from erase_jax.unlearn.protocol.run import UnlearnConfig

    return config_lib.from_dict(UnlearnConfig, spec["unlearn"])


def train(store: Store, spec: dict) -> None:
    from erase_jax.run import train_run

    train_run(run_config(spec), store.path(spec["folder"]), quiet=True)


def retrain(store: Store, spec: dict) -> None:
    from erase_jax.run import load_run
    from erase_jax.unlearn.protocol.retrain import budget_epochs
    from erase_jax.unlearn.protocol.retrain import retrain as retrain_at
    from erase_jax.unlearn.protocol.run import build_protocol

    experiment, _ = load_run(store.path(spec["run_folder"]))
    retrain_at(build_protocol(experiment, unlearn_config(spec)), store.path(spec["folder"]), spec["k"], quiet=True,
               seed=spec.get("seed"), epochs=budget_epochs(store.path(spec["run_folder"])))  # the budget `retrain_all` checks


def reference(store: Store, spec: dict) -> None:
    from erase_jax.unlearn.protocol.jobs import CHECKPOINTS, retrain_all

    # the retrains are trained (the four, and those of other seeds): this evaluates them and
    # writes retrain/unlearning.csv
    retrain_all(store.path(spec["run_folder"]), unlearn_config(spec), CHECKPOINTS, str(store.path(spec["folder"])), quiet=True,
                seeds=spec.get("retrain_seeds", ()))


def unlearn(store: Store, spec: dict) -> None:
    from erase_jax.unlearn.protocol.jobs import unlearn as unlearn_job
    from erase_jax.unlearn.protocol.retrain import RETRAIN_DIR

    folder = store.path(spec["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / RETRAIN_DIR
    if not link.is_symlink():  # the cell's retrains, shared by all its methods
        link.symlink_to(os.path.relpath(store.path(spec["retrains"]) / RETRAIN_DIR, folder), target_is_directory=True)
    unlearn_job(store.path(spec["run_folder"]), unlearn_config(spec), str(folder), quiet=True)


def audit(store: Store, spec: dict) -> None:
    from erase_jax.audit.job import AuditConfig
    from erase_jax.audit.job import audit as audit_job

    config = AuditConfig(**{**spec["audit"], "removals": tuple(spec["audit"]["removals"])})
    audit_job(store.path(spec["run_folder"]), unlearn_config(spec), config, str(store.path(spec["folder"])), quiet=True)


RUNNERS = {"train": train, "retrain": retrain, "reference": reference, "unlearn": unlearn, "audit": audit}


def provenance() -> dict:
    """Commit and machine from `benchmarks/provenance.py` in a checkout; "unknown" elsewhere."""
    if not PROVENANCE.exists():
        return {"commit": "unknown", "machine": "unknown"}
    loader = importlib.util.spec_from_file_location("erase_jax_provenance", PROVENANCE)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    commit, dirty = module.git_commit()
    return {"commit": commit + ("-dirty" if dirty else ""), "machine": module.machine()["description"]}


def run_task(store: Store, task_id: str) -> None:
    """Runs a task unless it is done; the marker is written last."""
    with store.lock(task_id):
        if store.is_done(task_id):
            return
        spec = store.spec(task_id)
        started = time.perf_counter()
        RUNNERS[spec["kind"]](store, spec)
        record = {
            "task": task_id,
            "seconds": time.perf_counter() - started,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **provenance(),
        }
        store.mark_done(task_id, record)


def die_with_parent() -> None:
    """SIGKILL this process when the grid that started it dies (Linux; elsewhere a no-op)."""
    parent = os.environ.get(PARENT_ENV)
    if parent is None or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != int(parent):  # the grid died before the line above took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    die_with_parent()
    from erase_jax.cli import enable_compilation_cache

    enable_compilation_cache()
    store_root, task_id = argv
    run_task(Store(store_root), task_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
