"""The identity of a trained model, recorded by every folder derived from it.

Results derived from a trained model (an unlearning scenario folder: its request streams,
quarter checkpoints, retrains, result files and report) are valid for that model only. The
folder records the model's fingerprint in `model.json`; a job that would resume, re-evaluate
or add to the folder first compares it with the fingerprint of the model the run folder holds
now, and a difference is refused (`StaleResults`) with what changed: the settings that differ,
or when the model was retrained.

The fingerprint is the sha256 of the parts of the run's `result.json` that its training
determines (`FINGERPRINT_FIELDS`): the resolved configuration, the data summary (source,
sizes), the number of epochs, the best epoch, why training stopped, and the loss of every
epoch and every validation score at full float precision. Why these:

* cheap: one small JSON file is read; no parameters are restored or hashed (a model's
  parameters can be gigabytes);
* robust: other settings or data change the configuration or the data summary; a retrain that
  ends at another model changes the loss history; the values come from the training
  checkpoint's record, so resuming an interrupted run, or rerunning `train` on a finished one
  (which rewrites `result.json` with new timings and test metrics, left out here), keeps the
  fingerprint;
* exact where it can be: a retrain that reproduces the model bit for bit (deterministic
  training with the same settings) keeps the fingerprint, and the results derived from it
  stay valid because the model is the same.

Not detected: a data file changed in place such that the data summary and every loss stay the
same, which for a model without training (Pop, ItemKNN: no loss) means the same sizes.

Only a finished run has a fingerprint: `result.json` is written last, atomically, so a run
killed or failed during training is refused as a source of derived results.

Folders written before fingerprints were recorded (no `model.json`) are adopted, with a
warning on stderr, when none of their files is older than the run's `result.json` (they can
only come from the model it describes); otherwise they are refused with the advice to delete
or move them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import sys
from pathlib import Path

from erase_jax.run import RESULT_FILE, require_finished, write_atomically

MODEL_FILE = "model.json"  # in a derived folder: the fingerprint of the model it was derived from
FINGERPRINT_FIELDS = ("config", "data", "epochs", "best_epoch", "stopped", "epoch_loss", "valid_history")
IGNORED_FILES = (MODEL_FILE, ".lock")  # bookkeeping, not results, when adopting an old folder


class StaleResults(ValueError):
    """A derived folder belongs to another model than the run folder now holds."""


def run_fingerprint(run_dir: str | Path) -> dict:
    """{"fingerprint", "run", "finished_at", "config", "data"} of the finished run in `run_dir`.

    Raises FileNotFoundError when the run has not finished training (no result.json).
    """
    path = require_finished(run_dir)
    result = json.loads(path.read_text())
    identity = {name: result.get(name) for name in FINGERPRINT_FIELDS}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    finished = result.get("finished_at") or _iso(path.stat().st_mtime)
    return {"fingerprint": digest, "run": str(Path(run_dir).resolve()), "finished_at": finished,
            "config": result.get("config"), "data": result.get("data")}


def describe_change(recorded: dict, current: dict) -> str:
    """What differs between the model a folder was derived from and the run's model now."""
    run = current["run"]
    origin = f"the results come from the model finished at {recorded.get('finished_at')}"
    if recorded.get("run") != run:
        origin = f"the results come from the model of {recorded.get('run')} (finished at {recorded.get('finished_at')})"
    settings = changed_keys(recorded.get("config"), current.get("config"))
    if settings:
        shown = "; ".join(f"{key}: {old!r} -> {new!r}".replace("'", "") for key, old, new in settings[:6])
        more = f" and {len(settings) - 6} more" if len(settings) > 6 else ""
        now = f"{run} was trained with other settings at {current['finished_at']} ({shown}{more})"
    else:
        data = changed_keys(recorded.get("data"), current.get("data"))
        cause = f"on other data ({', '.join(key for key, _, _ in data)})" if data else "with the same settings"
        now = f"the model in {run} was retrained at {current['finished_at']} {cause}"
    return f"{now}; {origin}"


def changed_keys(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) of every leaf that differs between two nested dicts."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = list(old) + [key for key in new if key not in old]
        return [change for key in keys for change in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def claim(folder: str | Path, run_dir: str | Path) -> dict:
    """Checks that `folder` is derived from the model now in `run_dir`, recording it if new.

    Returns the fingerprint; raises StaleResults when the folder belongs to another model, and
    FileNotFoundError when the run has not finished. The caller holds the folder's lock
    (`erase_jax.folder_lock`).
    """
    folder = Path(folder)
    current = run_fingerprint(run_dir)
    path = folder / MODEL_FILE
    if path.exists():
        return _same_model(folder, json.loads(path.read_text()), current)
    files = [p for p in folder.rglob("*") if p.is_file() and p.name not in IGNORED_FILES] if folder.exists() else []
    if files:
        trained = (Path(run_dir) / RESULT_FILE).stat().st_mtime
        older = [p for p in files if p.stat().st_mtime < trained]
        if older:
            raise StaleResults(
                f"{folder} records no model fingerprint (written before erase-jax recorded them) and holds "
                f"files older than the model in {run_dir} (finished at {current['finished_at']}), e.g. "
                f"{older[0].relative_to(folder)}: they may come from an earlier model. {_advice(folder)}"
            )
        print(f"erase-jax: warning: {folder} records no model fingerprint (written before erase-jax "
              f"recorded them); its files are newer than the model in {run_dir}, so it is adopted as "
              "derived from it", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(current, indent=2))
    return current


def recorded_model(folder: str | Path) -> dict | None:
    """The fingerprint `folder` records (None if it records none), once checked against its run
    where that still holds a finished model (a run folder since deleted or moved is not checked).

    Raises StaleResults when the run now holds another model: for reading derived results.
    """
    path = Path(folder) / MODEL_FILE
    if not path.exists():
        return None
    recorded = json.loads(path.read_text())
    run = Path(recorded.get("run", ""))
    if not (run / RESULT_FILE).exists():
        return recorded
    return _same_model(Path(folder), recorded, run_fingerprint(run))


def _same_model(folder: Path, recorded: dict, current: dict) -> dict:
    if recorded.get("fingerprint") != current["fingerprint"]:
        raise StaleResults(f"{folder} holds results derived from another model: "
                           f"{describe_change(recorded, current)}. {_advice(folder)}")
    return recorded


def _advice(folder: Path) -> str:
    return f"Delete or move {folder} to compute its results again for the current model, or choose another --out"


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="seconds")
