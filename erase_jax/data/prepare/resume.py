"""Resumable preparation: a finished step's result kept beside the output folder and reused
by a rerun, so a killed or failed `erase-jax data prepare` does not read gigabytes again.

Reading a big raw file is the step that takes minutes (the Amazon reviews, Goodreads'
interactions CSV); the filters after it take seconds. A preparer wraps such a step in
`StepLog.resumable(step, files, compute)`: `compute() -> (label, interactions, extras)` runs only
when no saved result of `step` matches, and its result is saved as

    <out parent>/.<out name>.steps/<step>.npz    the interactions and the extras that are arrays
    <out parent>/.<out name>.steps/<step>.json   the fingerprint, the step's statistics, the
                                                 extras that are not arrays (JSON values)

each written under a temporary name and renamed, the JSON last: a step counts as finished only
when both are complete, so a process killed while saving leaves the step to be redone, never a
half-read result. The fingerprint is a format version, the preparer's name and options, and each
input file's resolved path, size and modification time (ns): a changed raw file or option makes
the step run again. `prepare_dataset` deletes the folder once the output folder is written.
Nothing is pickled: arrays are stored as numbers or fixed-width text.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from erase_jax.data.interactions import Interactions

FORMAT_VERSION = 1
_COLUMNS = ("users", "items", "user_tokens", "item_tokens", "timestamps", "ratings", "sessions")


class StepCache:
    """Saved step results of one output folder (module doc); `settings`: the preparer's name and
    options as JSON values, part of every fingerprint."""

    def __init__(self, out: Path, settings: dict):
        self.folder = out.parent / f".{out.name}.steps"
        self.settings = settings

    def fingerprint(self, files) -> dict:
        stats = {str(Path(f).resolve()): [Path(f).stat().st_size, Path(f).stat().st_mtime_ns] for f in files}
        return {"version": FORMAT_VERSION, **self.settings, "files": stats}

    def load(self, step: str, files) -> tuple[Interactions, dict, dict] | None:
        """(interactions, extras, the step's statistics) saved for `step` with the current
        fingerprint, else None."""
        meta_path, arrays_path = self.folder / f"{step}.json", self.folder / f"{step}.npz"
        if not (meta_path.is_file() and arrays_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("fingerprint") != json.loads(json.dumps(self.fingerprint(files))):
            return None
        with np.load(arrays_path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
        columns = {c: arrays.pop(f"inter.{c}") for c in _COLUMNS if f"inter.{c}" in arrays}
        categories = {key[len("category."):]: arrays.pop(key) for key in list(arrays) if key.startswith("category.")}
        inter = Interactions(**columns, item_categories=categories if meta["has_categories"] else None,
                             name=meta["name"])
        extras = {key[len("extra."):]: value for key, value in arrays.items()}
        return inter, {**extras, **meta["extras"]}, meta["stats"]

    def save(self, step: str, files, inter: Interactions, extras: dict, stats: dict) -> None:
        """Saves the result of `step` (module doc); extras: name -> numpy array or JSON value."""
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"inter.{c}": _storable(getattr(inter, c)) for c in _COLUMNS if getattr(inter, c) is not None}
        arrays.update({f"category.{k}": np.asarray(v) for k, v in (inter.item_categories or {}).items()})
        arrays.update({f"extra.{k}": _storable(v) for k, v in extras.items() if isinstance(v, np.ndarray)})
        meta = {"fingerprint": self.fingerprint(files), "name": inter.name, "stats": stats,
                "has_categories": inter.item_categories is not None,
                "extras": {k: v for k, v in extras.items() if not isinstance(v, np.ndarray)}}
        _replace_atomically(self.folder / f"{step}.npz", lambda handle: np.savez(handle, **arrays), "wb")
        _replace_atomically(self.folder / f"{step}.json", lambda handle: json.dump(meta, handle), "w")

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _storable(values: np.ndarray) -> np.ndarray:
    """Object arrays (of text) as fixed-width text, which loads without pickle."""
    return values.astype(str) if values.dtype == object else values


def _replace_atomically(path: Path, write, mode: str) -> None:
    handle = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False)
    try:
        with handle:
            write(handle)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
