"""Top-k ranking metrics with RecBole's definitions (spec data-and-evaluation.md, 5.1).

Inputs are the per-row hit matrix of a ranking (`hits[r, j]` is True when the item ranked
j-th for row r is a positive of r) and the number of positives of each row. Every metric is
computed per row and averaged over rows; rows are users (CF), sequence prefixes (SBR) or
baskets (NBR), and the caller drops rows without positives (RecBole does not evaluate them).

    Recall@k    = |top-k ∩ P| / |P|
    Precision@k = |top-k ∩ P| / k
    Hit@k       = 1 if |top-k ∩ P| > 0
    MRR@k       = 1 / rank of the first positive within the top k (0 if none)
    NDCG@k      = sum_{j<k, hit} 1/log2(j+2)  /  sum_{j<min(k,|P|)} 1/log2(j+2)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

METRICS = ("recall", "ndcg", "hit", "mrr", "precision")


def ranking_metrics(
    hits: np.ndarray,
    n_positives: np.ndarray,
    ks: Iterable[int] = (10, 20),
    metrics: Sequence[str] = METRICS,
) -> dict[str, float]:
    """Averages of the requested metrics at each k, keyed like ``"recall@20"``.

    Args:
      hits: bool [n_rows, K] with K >= max(ks), ranking order along axis 1.
      n_positives: int [n_rows], all >= 1.
    """
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; available: {list(METRICS)}")
    hits = np.asarray(hits, bool)
    n_positives = np.asarray(n_positives)
    ks = sorted(set(ks))
    if hits.ndim != 2 or hits.shape[1] < ks[-1]:
        raise ValueError(f"hits must be [rows, >= {ks[-1]}], got {hits.shape}")
    if len(n_positives) != len(hits):
        raise ValueError("one positive count per row is needed")
    if len(hits) == 0:
        return {f"{m}@{k}": float("nan") for m in metrics for k in ks}
    if n_positives.min() < 1:
        raise ValueError("rows without positives must be dropped before computing metrics")

    per_row = per_row_metrics(hits, n_positives, ks)
    return {f"{m}@{k}": float(per_row[f"{m}@{k}"].mean()) for m in metrics for k in ks}


def per_row_metrics(hits: np.ndarray, n_positives: np.ndarray, ks: Iterable[int]) -> dict[str, np.ndarray]:
    """The same metrics per row (float64 arrays), for averaging over any subset of rows."""
    hits = np.asarray(hits, bool)
    discount = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    cumulative_hits = np.cumsum(hits, axis=1)
    dcg = np.cumsum(hits * discount, axis=1)
    ideal = np.cumsum(discount)
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), hits.shape[1])
    out = {}
    for k in ks:
        n_hit = cumulative_hits[:, k - 1]
        out[f"recall@{k}"] = n_hit / n_positives
        out[f"precision@{k}"] = n_hit / k
        out[f"hit@{k}"] = (n_hit > 0).astype(np.float64)
        out[f"mrr@{k}"] = np.where(first_hit < k, 1.0 / (first_hit + 1), 0.0)
        out[f"ndcg@{k}"] = dcg[:, k - 1] / ideal[np.minimum(n_positives, k) - 1]
    return out
