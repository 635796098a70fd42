"""The content-addressed store under a grid's output folder: task folders, specs and markers.

    <out>/store/
      tasks/<task id>.json    what the task runs (its spec: settings and folders, no grid labels)
      done/<task id>.json     the result marker, written atomically as the task's last act
      locks/<task id>.lock    held (flock) by the worker running the task
      logs/<task id>.log      the worker's output, last attempt
      train/<key>/            trained runs (an ordinary run folder each)
      scenario/<key>/         a trained run's scenario: retrain/k0..k3 and retrain/unlearning.csv
      unlearn/<key>/          one method's scenario folder: <method>/ and a link to the retrains

A task id is `<kind>-<key>` with the key a hash of the task's resolved settings
(`erase_jax.grid.planner`), so grids that share settings share folders and markers. A task is
done exactly when its marker exists; anything else in its folder is work in progress that the
task's own job resumes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path

from erase_jax.run import write_atomically


class Store:
    """Paths and markers of one store root (`<out>/store`)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def path(self, relative: str) -> Path:
        """A task folder named in a spec (relative to the root)."""
        return self.root / relative

    def _file(self, part: str, task_id: str, suffix: str) -> Path:
        folder = self.root / part
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{task_id}{suffix}"

    def write_spec(self, task_id: str, spec: dict) -> None:
        """Stores a task's spec once (the id is a hash of it, so an existing one is the same)."""
        path = self._file("tasks", task_id, ".json")
        if not path.exists():
            write_atomically(path, json.dumps(spec, indent=2, sort_keys=True))

    def spec(self, task_id: str) -> dict:
        return json.loads(self._file("tasks", task_id, ".json").read_text())

    def specs(self) -> dict[str, dict]:
        """Every task spec in the store, by task id."""
        return self._read_all("tasks")

    def marker(self, task_id: str) -> dict | None:
        """The done marker's record (seconds, commit, machine, finished), or None if not done."""
        path = self.root / "done" / f"{task_id}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def is_done(self, task_id: str) -> bool:
        return (self.root / "done" / f"{task_id}.json").exists()

    def mark_done(self, task_id: str, record: dict) -> None:
        write_atomically(self._file("done", task_id, ".json"), json.dumps(record, indent=2))

    def markers(self) -> dict[str, dict]:
        """Every done marker in the store, by task id (the measured costs behind estimates)."""
        return self._read_all("done")

    def _read_all(self, part: str) -> dict[str, dict]:
        folder = self.root / part
        return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}

    def log_path(self, task_id: str) -> Path:
        return self._file("logs", task_id, ".log")

    @contextlib.contextmanager
    def lock(self, task_id: str):
        """Exclusive while held: a second worker on the same task (another grid sharing the store,
        or one left from a killed grid) waits here. The lock dies with its holder."""
        with self._file("locks", task_id, ".lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
