"""Task families as plug-ins (one file each): `get_task(name)`; see `base.py` for the protocol."""

from __future__ import annotations

from erase_jax.tasks.base import Task, get_task, task_names, task_of

__all__ = ["Task", "get_task", "task_names", "task_of"]
