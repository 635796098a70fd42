"""ROC curve, ROC AUC and TPR at a fixed FPR, computed exactly from scores and labels.

Carlini et al., "Membership Inference Attacks From First Principles" (S&P 2022), section 3:
an attack is judged by its ROC curve on a log scale and its TPR at low FPR, not by accuracy or
AUC alone. Conventions here (higher score = "member"):

* `roc_curve`: one point per distinct score threshold t (predict member iff score >= t), from
  (0, 0) to (1, 1); tied scores enter together, so a tie is one diagonal step.
* `roc_auc`: the Mann-Whitney statistic P(score_pos > score_neg) + P(tie) / 2, which equals the
  trapezoidal area under that curve.
* `tpr_at_fpr(alpha)`: the largest TPR of a curve point with FPR <= alpha (LiRA's code reads
  `tpr[fpr < alpha][-1]`, a strict bound; this uses <=). Its resolution is 1 / n_negatives: with
  fewer than 1 / alpha negatives it is the TPR at FPR 0.
* `log_roc`: that TPR at log-spaced FPRs from 1 / n_negatives to 1, the points of LiRA's
  log-scale ROC figure (exact for the step curve at every grid point, compact in a JSON file).
"""

from __future__ import annotations

import numpy as np


def _checked(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = np.asarray(scores, np.float64).ravel(), np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.shape[0]} scores for {labels.shape[0]} labels")
    if labels.all() or not labels.any():
        raise ValueError("ROC needs at least one positive and one negative label")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    return scores, labels


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds): the curve's points, thresholds descending (the first point,
    (0, 0), has threshold +inf)."""
    scores, labels = _checked(scores, labels)
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    true_positives = np.cumsum(labels)[last_of_tie]
    false_positives = (last_of_tie + 1) - true_positives
    fpr = np.r_[0.0, false_positives / (~labels).sum()]
    tpr = np.r_[0.0, true_positives / labels.sum()]
    return fpr, tpr, np.r_[np.inf, scores[last_of_tie]]


def roc_auc(scores, labels) -> float:
    """P(positive scores above negative) + P(tie) / 2, from average ranks (Mann-Whitney U)."""
    scores, labels = _checked(scores, labels)
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores))
    # average rank of each run of ties (1-based)
    starts = np.r_[0, np.nonzero(np.diff(sorted_scores))[0] + 1]
    ends = np.r_[starts[1:], len(scores)]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tpr_at_fpr(scores, labels, alpha: float) -> float:
    """The largest TPR among the curve's points with FPR <= alpha."""
    fpr, tpr, _ = roc_curve(scores, labels)
    return float(tpr[fpr <= alpha].max())


def summary(scores, labels, alphas=(0.01, 0.001)) -> dict:
    """AUC, TPR at each FPR in `alphas`, and the label counts (the FPR resolution)."""
    scores, labels = _checked(scores, labels)
    row = {"auc": roc_auc(scores, labels)}
    fpr, tpr, _ = roc_curve(scores, labels)
    for alpha in alphas:
        row[f"tpr@{alpha:g}fpr"] = float(tpr[fpr <= alpha].max())
    row.update(n_positive=int(labels.sum()), n_negative=int((~labels).sum()))
    return row


def log_roc(scores, labels, n_points: int = 41) -> dict:
    """{"fpr": [...], "tpr": [...]}: `tpr_at_fpr` at `n_points` FPRs spaced evenly in log scale
    from 1 / n_negatives (the smallest FPR above 0 a curve can reach) to 1, duplicates dropped,
    rounded to 6 digits."""
    if n_points < 2:
        raise ValueError(f"a log ROC needs at least 2 points, got {n_points}")
    fpr, tpr, _ = roc_curve(scores, labels)
    n_negative = int((~np.asarray(labels).ravel().astype(bool)).sum())
    grid = np.unique(np.round(np.logspace(-np.log10(n_negative), 0, n_points), 6))
    # the grid is rounded, so compare with a tolerance that keeps 1/n itself on the grid
    at = [float(tpr[fpr <= alpha + 1e-9].max()) for alpha in grid]
    return {"fpr": grid.tolist(), "tpr": np.round(at, 6).tolist()}
