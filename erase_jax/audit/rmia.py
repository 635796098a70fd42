"""An RMIA-style offline score with few reference models: the audit's cheaper, second option.

RMIA (Zarifzadeh et al., "Low-Cost High-Power Membership Inference Attacks", ICML 2024,
section 3): the likelihood ratio of target x against a population point z,

    LR(x, z) = (Pr(x | theta) / Pr(x)) / (Pr(z | theta) / Pr(z)),
    score(x) = share of population points z with LR(x, z) >= gamma,

Pr(. | theta) the target model's probability of the point, Pr(.) its average over reference
models. Offline (reference models that never trained x): Pr(x) = ((1 + a) Pr_OUT(x) + 1 - a) / 2,
the paper's linear approximation of the IN/OUT average (eq. 5 in its appendix; a tuned).

Recommender translation: a point is a (user, item) pair, Pr(x | theta) the softmax over all
items of the user's scores at the item (nothing masked, as `confidence.py`); population points
are pairs no model trained on (e.g. test-split pairs). With each shadow in turn the target, pair
p's reference models are the first `n_references` shadows other than the target in which p is
OUT (the game's non-member state), and the population's Pr(z) averages over the same models.

Deviations: the population's Pr(z) is the plain average (every population pair is OUT in every
reference), not the offline formula. A softmax over ~10^3 items gives probabilities near 1e-3,
where the constant (1 - a) / 2 swamps (1 + a) Pr_OUT(x) / 2 for any a < 1; `a = 1` (the
default) uses Pr_OUT(x) itself. The original's RMIA.py (spec A4 #11) was never called.
"""

from __future__ import annotations

import numpy as np


def reference_sets(out_mask: np.ndarray, n_references: int) -> np.ndarray:
    """bool [K_target, K_reference, P]: pair p's reference shadows for target t: the first
    `n_references` (by index) shadows other than t with out_mask[s, p]."""
    out_mask = np.asarray(out_mask, bool)
    n_shadows = out_mask.shape[0]
    candidates = out_mask[None] & ~np.eye(n_shadows, dtype=bool)[:, :, None]
    return candidates & (np.cumsum(candidates, axis=1) <= n_references)


def _log_mean_exp(log_values: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    shifted = np.where(weights, log_values, -np.inf)
    top = np.max(shifted, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (np.log(np.sum(np.where(weights, np.exp(log_values - top), 0.0), axis=axis, keepdims=True)) + top
                - np.log(np.sum(weights, axis=axis, keepdims=True))).squeeze(axis)


def offline_scores(log_p_pairs: np.ndarray, out_mask: np.ndarray, log_p_population: np.ndarray, n_references: int = 2,
                   a: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """float [K, P]: RMIA's offline score of every audited pair with each shadow as the target.

    log_p_pairs [K, P] and log_p_population [K, Z] are log Pr of the audited and the population
    pairs in each shadow (after the audited removal); NaN where a pair has no reference."""
    log_p_pairs, log_p_population = np.asarray(log_p_pairs, np.float64), np.asarray(log_p_population, np.float64)
    refs = reference_sets(out_mask, n_references)  # [t, s, p]
    n_refs = refs.sum(1)  # [t, p]
    # Pr_OUT(x) per (t, p), then the offline approximation of Pr(x)
    log_pr_out = _log_mean_exp(log_p_pairs[None], refs, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pr_x = np.log(0.5 * ((1 + a) * np.exp(log_pr_out) + (1 - a))) if a != 1 else log_pr_out
    log_ratio_x = log_p_pairs - log_pr_x  # [t, p]
    # Pr(z) per (t, p, z): the mean over the same reference shadows; exp is safe (probabilities)
    p_population = np.exp(log_p_population)
    with np.errstate(divide="ignore", invalid="ignore"):
        pr_z = np.einsum("tsp,sz->tpz", refs.astype(np.float64), p_population) / n_refs[:, :, None]
        log_ratio_z = log_p_population[:, None, :] - np.log(pr_z)  # [t, p, z]
    scores = np.mean(log_ratio_x[:, :, None] - log_ratio_z >= np.log(gamma), axis=2)
    return np.where(n_refs > 0, scores, np.nan)
