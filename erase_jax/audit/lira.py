"""Per-pair likelihood-ratio scores from Gaussian fits over shadows, each shadow in turn the target.

LiRA (Carlini et al. 2022, Algorithm 1, online): for example z, fit N(mu_in, s_in^2) to z's
confidences phi in shadows that trained on z and N(mu_out, s_out^2) in shadows that did not;
the score of a target model with observation x is

    Lambda(x) = log N(x; mu_in, s_in^2) - log N(x; mu_out, s_out^2).

U-LiRA (Hayes et al. 2024, section 4) replaces IN by "trained, then unlearned by the audited
method" and OUT by "never trained", both observed after unlearning: RULI's game 2 (its
section 4.2 uses per-sample KDEs; these are the Gaussians of U-LiRA). `game.py` chooses the
two reference sets and the observation.

Evaluation: each of the K shadows is in turn the target, and its pairs are scored with fits
over the other K - 1 shadows only (leave-one-out), LiRA's own evaluation protocol (section
5.1): every (shadow, pair) with a known state becomes one labelled example.

Deviation (`balanced=True`, the default): leaving the target out leaves one value fewer in
the fit of the target's own state, and a Gaussian fitted to fewer values gives a fresh value
of its own distribution a lower density on average; so, with nothing to detect, members score
low and non-members high, and the AUC falls below 0.5 (about 0.4 with K = 9 shadows on
synthetic data, `tests/audit/test_lira.py`). Balanced fits use the same number of values in
both reference sets: the first (by shadow index, which is independent of the values) m of each,
m the smaller count. Then target and references are exchangeable under the null hypothesis
and its AUC is 0.5 in expectation.

`variance="pair"`: each pair's own variances (unbiased, floored at `min_std`^2); `"global"`:
one variance per target and reference set, the mean over pairs of the per-pair variances
(LiRA's "fixed variance", recommended with fewer than about 64 shadows: each per-pair fit here
rests on about K / 3 values).
"""

from __future__ import annotations

import numpy as np

VARIANCES = ("pair", "global")


def reference_weights(member_mask: np.ndarray, nonmember_mask: np.ndarray, balanced: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """bool [K_target, K_reference, P] each: which shadows' values enter target t's fits for pair
    p: those in the state, other than t; with `balanced`, only the first m of each (see above)."""
    member_mask, nonmember_mask = np.asarray(member_mask, bool), np.asarray(nonmember_mask, bool)
    n_shadows = member_mask.shape[0]
    others = ~np.eye(n_shadows, dtype=bool)[:, :, None]
    member, nonmember = member_mask[None] & others, nonmember_mask[None] & others
    if balanced:
        m = np.minimum(member.sum(1), nonmember.sum(1))[:, None, :]
        member &= _rank_without_target(member_mask) <= m
        nonmember &= _rank_without_target(nonmember_mask) <= m
    return member, nonmember


def _rank_without_target(mask: np.ndarray) -> np.ndarray:
    """int [t, s, P]: 1-based rank of shadow s among the shadows in `mask` for pair p, target t left out."""
    n_shadows = mask.shape[0]
    target_before = (np.arange(n_shadows)[:, None] < np.arange(n_shadows)[None, :])[:, :, None] & mask[:, None, :]
    return np.cumsum(mask, 0)[None] - target_before


def fits(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, unbiased variance, count), each [K_target, P]: target t's fit of values[s, p] over
    the shadows s with weights[t, s, p]. Variance is NaN with fewer than two values."""
    values = np.asarray(values, np.float64)[None]
    count = weights.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(weights, values, 0.0).sum(1) / count
        variance = np.where(weights, (values - mean[:, None]) ** 2, 0.0).sum(1) / (count - 1)
    return mean, np.where(count >= 2, variance, np.nan), count


def gaussian_log_density(x, mean, variance):
    return -0.5 * (np.log(2 * np.pi * variance) + (x - mean) ** 2 / variance)


def _variance(variance: np.ndarray, kind: str, min_std: float) -> np.ndarray:
    if kind == "global":
        variance = np.broadcast_to(np.nanmean(variance, axis=1, keepdims=True), variance.shape)
    elif kind != "pair":
        raise ValueError(f"variance must be one of {VARIANCES}, got {kind!r}")
    return np.maximum(variance, min_std ** 2)


def leave_one_out_scores(observed: np.ndarray, member_values: np.ndarray, member_mask: np.ndarray,
                         nonmember_values: np.ndarray, nonmember_mask: np.ndarray, variance: str = "pair",
                         min_std: float = 1e-3, balanced: bool = True) -> np.ndarray:
    """float64 [K, P]: Lambda(observed[t, p]), the "member" Gaussian fitted to member_values[s, p]
    over the shadows s != t with member_mask (`reference_weights`), the "non-member" one
    likewise; NaN where either fit has fewer than two values."""
    member_weights, nonmember_weights = reference_weights(member_mask, nonmember_mask, balanced)
    member_mean, member_var, _ = fits(member_values, member_weights)
    other_mean, other_var, _ = fits(nonmember_values, nonmember_weights)
    member_var, other_var = _variance(member_var, variance, min_std), _variance(other_var, variance, min_std)
    observed = np.asarray(observed, np.float64)
    with np.errstate(invalid="ignore"):
        return gaussian_log_density(observed, member_mean, member_var) - gaussian_log_density(observed, other_mean, other_var)
