"""Orbax checkpoints of explicit state pytrees, plus a JSON side-record.

A checkpoint step holds two items: `state` (any pytree of arrays: training state, unlearning
state) and `record` (JSON: what has been measured so far, so that a resumed run reports the
same history as an uninterrupted one). Orbax writes each step to a temporary folder and
commits it by renaming, so a process killed mid-save leaves the previous step intact.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

# Orbax logs every save/restore (and slow-save notices); keep the console for progress and results.
logging.getLogger("absl").setLevel(logging.ERROR)


class Checkpointer:
    """Saves and restores `(state, record)` pairs under integer steps in one folder."""

    def __init__(self, directory: str | Path, max_to_keep: int | None = 2):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, record: dict) -> None:
        """Saves a step; a step that already exists is replaced (a run killed after writing
        it but before recording its progress elsewhere redoes and rewrites that step)."""
        if step in self._manager.all_steps():
            self._manager.delete(step)
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, step: int, like: Any) -> tuple[Any, dict]:
        """State restored into the structure (and dtypes/shapes) of `like`, and its record."""
        abstract = jax.tree.map(_abstract, like)
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()),
        )
        return restored["state"], restored["record"]

    def restore_record(self, step: int) -> dict:
        """Only the JSON record of a step (no arrays read)."""
        restored = self._manager.restore(step, args=ocp.args.Composite(record=ocp.args.JsonRestore()))
        return restored["record"]

    def close(self) -> None:
        self._manager.close()


def has_steps(directory: str | Path) -> bool:
    """Whether a checkpoint folder holds a committed step (a folder named by its number; Orbax
    renames a step's temporary folder to that when the step is complete), without opening it."""
    directory = Path(directory)
    return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def _abstract(leaf):
    """Orbax's restore target for one leaf; numpy scalars (np.int32(0)) become 0-d arrays,
    which Orbax accepts (it rejects the scalar types themselves)."""
    if isinstance(leaf, np.generic):
        leaf = np.asarray(leaf)
    return ocp.utils.to_shape_dtype_struct(leaf)
