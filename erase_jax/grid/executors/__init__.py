"""Executors: where a grid's tasks run. One file each, found by name (`--executor <name>`).

An executor module defines `make(workers: int) -> Executor` (`base.Executor`); `get_executor`
imports `erase_jax.grid.executors.<name>`, so a new one (e.g. `ray.py`: each task a
`ray.remote(num_gpus=...)` call running the worker) is one more file here.
"""

from __future__ import annotations

import importlib
import pkgutil

from erase_jax.grid.executors.base import Executor, Outcome

__all__ = ["Executor", "Outcome", "executor_names", "get_executor"]


def executor_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base")


def get_executor(name: str, workers: int) -> Executor:
    """The executor `name` with `workers` tasks at a time; an unknown name is a ValueError."""
    if name not in executor_names():
        raise ValueError(f"unknown executor {name!r}; available: {executor_names()}")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    return importlib.import_module(f"{__name__}.{name}").make(workers)
