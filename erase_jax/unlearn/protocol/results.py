"""Evaluation at every checkpoint, and the result files of an unlearning run.

Each evaluated model (the original, an unlearned checkpoint k, the retrain matching k) gets
one row: utility on the test split recomputed from the data without the interactions removed
through checkpoint k (the original recomputes the split the same way, spec 5.1), what it
still shows of the forgotten data (sensitive items, spam targets, the forgotten interactions'
ranks), its agreement with the retrain, and what it cost. Rows go to `unlearning.csv`
(columns in the original's style: dataset, model, seed, scenario, category, fraction, method,
checkpoint_idx, eval_type, metrics...) and, with the resolved configuration, to
`unlearning.json`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import resource
from pathlib import Path

import jax
import numpy as np

from erase_jax import config as config_lib
from erase_jax.evaluators import exposure
from erase_jax.evaluators.cf_ranking import top_k_items
from erase_jax.run import write_atomically
from erase_jax.unlearn.protocol.run import UnlearningRun

CSV_FILE = "unlearning.csv"
JSON_FILE = "unlearning.json"
OTHER_USERS_SAMPLE = 500  # users outside the forget set for the top-k agreement check
ORIGINAL_FULL_DATA = -1  # checkpoint_idx of the original model evaluated on all data


def removed_through(protocol: UnlearningRun, k: int) -> np.ndarray:
    if k == ORIGINAL_FULL_DATA:
        return np.zeros(len(protocol.experiment.data.interactions), bool)
    batch = protocol.stream.checkpoint_batches[k]
    return protocol.stream.removal_mask_through(protocol.experiment.data.interactions, batch)


def unlearned_users(protocol: UnlearningRun, k: int) -> np.ndarray:
    if k == ORIGINAL_FULL_DATA:
        return protocol.forget_set.users
    return protocol.stream.users_through(protocol.stream.checkpoint_batches[k])


def forgotten_pairs(protocol: UnlearningRun, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The (user, item) pairs removed through checkpoint k, once each."""
    inter = protocol.experiment.data.interactions
    rows = np.nonzero(removed_through(protocol, k))[0] if k != ORIGINAL_FULL_DATA else np.nonzero(
        protocol.forget_set.removal_mask(inter)
    )[0]
    keys = np.unique(inter.users[rows].astype(np.int64) * inter.n_items + inter.items[rows])
    return (keys // inter.n_items).astype(np.int32), (keys % inter.n_items).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class ScoredModel:
    """A model with its parameters and context (e.g. the retrain used as the reference)."""

    model: object
    params: object
    context: object

    def scores_fn(self):
        return exposure.model_scores_fn(self.model, self.params, self.context)

    def top_k(self, users, k: int, block_size: int):
        return top_k_items(self.model, self.params, self.context, users, k, block_size=block_size)

    def by_user(self, view) -> ScoredModel:
        """The same recommender asked by user id on the evaluation view (SBR: last test prefixes)."""
        return ScoredModel(*view.by_user(self.model, self.params, self.context))


def evaluate_model(protocol: UnlearningRun, k: int, evaluated: ScoredModel, reference: ScoredModel | None = None) -> dict:
    """All metrics of one model at checkpoint k, on the data without the removals through k.

    Users are asked about through the task's evaluation view: CF scores user ids; SBR scores
    each user's last test prefix of `data` (forgotten items removed), and users without a
    test prefix are left out of the per-user measures (`*_scored_users` counts who is in).
    """
    eval_config = protocol.experiment.config.eval
    ks, block = eval_config.topk, eval_config.block_size
    k_max = max(ks)
    data, view = protocol.data_at(k), protocol.evaluation_at(k)
    row = {}
    test = view.test_metrics(evaluated.model, evaluated.params, evaluated.context)
    row.update({f"test_{name}": value for name, value in test.items()})
    evaluated = evaluated.by_user(view)
    reference = None if reference is None else reference.by_user(view)

    # What the model shows the unlearned users: raw scores, nothing masked (spec 5.2).
    users = view.scorable(unlearned_users(protocol, k))
    top = evaluated.top_k(users, k_max, block)
    if protocol.config.scenario == "sensitive":
        sensitive = data.interactions.category_items(protocol.forget_set.category)
        found = exposure.sensitive_exposure(top, sensitive, ks)
        found["sensitive_total_users"] = found.pop("total_users")
        found["sensitive_scored_users"] = found.pop("scored_users")
        row.update(found)
    if protocol.forget_set.target_items is not None:
        genuine = view.scorable(np.setdiff1d(np.arange(view.n_users), protocol.forget_set.users))
        spam = exposure.spam_exposure(evaluated.scores_fn(), genuine, protocol.forget_set.target_items, ks, block)
        row.update(exposure.prefix_keys("spam_", spam))

    pair_users, pair_items = forgotten_pairs(protocol, k)
    scored_pairs = np.isin(pair_users, users)
    pair_users, pair_items = pair_users[scored_pairs], pair_items[scored_pairs]
    ranks = exposure.item_ranks(evaluated.scores_fn(), pair_users, pair_items, block)
    reference_ranks = None
    if reference is not None:
        reference_ranks = exposure.item_ranks(reference.scores_fn(), pair_users, pair_items, block)
        row.update(exposure.prefix_keys("agree_unlearned_", exposure.topk_agreement(top, reference.top_k(users, k_max, block), ks)))
        others = view.scorable(exposure.sample_other_users(view.n_users, protocol.forget_set.users, OTHER_USERS_SAMPLE, protocol.seed))
        row.update(exposure.prefix_keys(
            "agree_other_", exposure.topk_agreement(evaluated.top_k(others, k_max, block), reference.top_k(others, k_max, block), ks)
        ))
    row.update(exposure.forget_fidelity(ranks, reference_ranks, ks))
    row["n_unlearned_users"] = int(len(unlearned_users(protocol, k)))
    row["n_removed"] = int(removed_through(protocol, k).sum())
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
    """Per-request seconds (mean / median / max / total) and the process's peak memory."""
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
    write_atomically(Path(out_dir) / JSON_FILE, json.dumps(document, indent=2, default=_plain))


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


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
