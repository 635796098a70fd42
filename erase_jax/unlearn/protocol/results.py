"""Evaluation at every checkpoint, and the result files of an unlearning run.

Each evaluated model (the trained model, an unlearned checkpoint k, the retrain matching k) gets
one row: what the configured evaluators measure on the data without the interactions removed
through checkpoint k (`erase_jax.evaluators`; by default utility on the recomputed test
split, exposure of the forgotten data, agreement with the retrain, the forgotten
interactions' ranks), and what it cost. Rows go to `unlearning.csv` (columns in the
original's style: dataset, model, seed, scenario, category, fraction, method, checkpoint_idx,
eval_type, metrics...; the labels in `erase_jax.result_labels`) and, with the resolved
configuration, to `unlearning.json`.
"""

from __future__ import annotations

import csv
import io
import json
import resource
from pathlib import Path

import jax
import numpy as np

from erase_jax import config as config_lib
from erase_jax.evaluators.base import Checkpoint, ScoredModel, evaluate
from erase_jax.run import write_atomically
from erase_jax.unlearn.protocol.run import UnlearningRun

CSV_FILE = "unlearning.csv"
JSON_FILE = "unlearning.json"


def evaluate_model(protocol: UnlearningRun, k: int, evaluated: ScoredModel, reference: ScoredModel | None = None) -> dict:
    """The configured evaluators' metrics of one model at checkpoint k, on the data without the
    removals through k, then the size of the checkpoint (`n_unlearned_users`, `n_removed`).

    `reference` is the retrain matching k, or None (`erase_jax.evaluators.base.Checkpoint`).
    """
    row = evaluate(Checkpoint(protocol, k, evaluated, reference), protocol.config.evaluators)
    row["n_unlearned_users"] = int(len(protocol.unlearned_users(k)))
    row["n_removed"] = int(protocol.removed_through(k).sum())
    return row


def row_header(protocol: UnlearningRun, method: str, k: int, eval_type: str) -> dict:
    experiment, config = protocol.experiment, protocol.config
    return {
        "dataset": experiment.config.data.dataset,
        "model": experiment.config.model,
        "seed": protocol.seed,
        "scenario": config.scenario,
        "category": protocol.forget_set.category or "",
        "fraction": config.fraction if config.fraction is not None else "",
        "method": method,
        "checkpoint_idx": k,
        "eval_type": eval_type,
    }


def cost_summary(record: dict) -> dict:
    """Per-request seconds (mean / median / max / total), the stream's compilation (ahead of
    time, `aot_seconds`, and in total, `stream_compile_seconds`: the ahead-of-time step's and
    the requests' own `compile_seconds`; `compilation_cache`: warm / cold / partial / off) and
    the process's peak memory."""
    seconds = np.array([r["seconds"] for r in record["requests"] if "seconds" in r])
    method_seconds = np.array([r["method_seconds"] for r in record["requests"] if "method_seconds" in r])
    out = {"n_requests": int(len(record["requests"]))}
    if len(seconds):
        out.update({
            "request_seconds_mean": float(seconds.mean()),
            "request_seconds_median": float(np.median(seconds)),
            "request_seconds_p90": float(np.percentile(seconds, 90)),
            "request_seconds_max": float(seconds.max()),
            "request_seconds_total": float(seconds.sum()),
            "method_seconds_median": float(np.median(method_seconds)),
            "n_timeouts": int(sum(bool(r.get("timeout")) for r in record["requests"])),
        })
    compiled = record.get("compile", [])
    if compiled:
        in_requests = sum(r.get("compile_seconds", 0.0) for r in record["requests"])
        out.update({
            "aot_seconds": float(sum(c.get("aot_seconds", 0.0) for c in compiled)),
            "stream_compile_seconds": float(sum(c.get("compile_seconds", 0.0) for c in compiled) + in_requests),
            "compilation_cache": compiled[-1].get("compilation_cache", "off"),
        })
    out.update(peak_memory())
    return out


def peak_memory() -> dict:
    """Peak resident memory of this process (host) and, where reported, of the first device."""
    out = {"peak_host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_device_mib"] = stats["peak_bytes_in_use"] / 2**20
    return out


def write_results(out_dir: Path, rows: list[dict], protocol: UnlearningRun, extra: dict) -> None:
    """`unlearning.csv` (one row per model x checkpoint) and `unlearning.json` (rows + config)."""
    write_csv(Path(out_dir) / CSV_FILE, rows)
    document = {
        "rows": rows,
        "unlearn_config": config_lib.to_dict(protocol.config),
        "run_config": config_lib.to_dict(protocol.experiment.config),
        "n_requests": len(protocol.forget_set),
        "checkpoint_requests": protocol.stream.checkpoint_batches,
        **extra,
    }
    write_atomically(Path(out_dir) / JSON_FILE, json.dumps(document, indent=2, default=plain))


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows with possibly different keys: the union of columns, in first-seen order."""
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, buffer.getvalue())


def plain(value):
    """A numpy value as the plain Python value JSON writes (`json.dumps(..., default=plain)`)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
