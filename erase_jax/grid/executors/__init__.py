"""Executors: where a grid's tasks run. One file each, found by name (`--executor <name>`).

An executor module defines

    check(workers: int, address: str | None) -> None      # ValueError when it cannot run so
    make(workers: int, address: str | None) -> Executor   # `base.Executor`, ready to submit to

`get_executor` imports `erase_jax.grid.executors.<name>`, so a new executor is one more file
here. `local` runs worker processes on this machine; `ray` runs the same workers as Ray tasks,
on a local Ray instance or an existing cluster (`address`).
"""

from __future__ import annotations

import importlib
import pkgutil

from erase_jax.grid.executors.base import Executor, Outcome

__all__ = ["Executor", "Outcome", "check_executor", "executor_names", "get_executor"]


def executor_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")


def check_executor(name: str, workers: int, address: str | None = None):
    """The executor module `name` once its settings check out (nothing started); a ValueError
    names an unknown executor, a worker count under 1 or what the executor itself rejects."""
    if name not in executor_names():
        raise ValueError(f"unknown executor {name!r}; available: {executor_names()}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    module = importlib.import_module(f"{__name__}.{name}")
    module.check(workers, address)
    return module


def get_executor(name: str, workers: int, address: str | None = None) -> Executor:
    """The executor `name` with `workers` tasks at a time, started (`check_executor` first)."""
    return check_executor(name, workers, address).make(workers, address)
