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
5.1): every (shadow, pair) with a known state becomes one labelled example. The leave-one-out
fits are computed for all targets at once from per-pair sums, in float64.

`variance="pair"`: each pair's own variances (unbiased, floored at `min_std`^2); `"global"`:
one variance per reference set, the mean over pairs of the per-pair variances (LiRA's "fixed
variance", recommended with fewer than about 64 shadows: each per-pair fit here rests on about
K / 3 values).
"""

from __future__ import annotations

import numpy as np

VARIANCES = ("pair", "global")


def leave_one_out_fits(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, unbiased variance, count), each [K, P]: entry (t, p) fits values[s, p] over the
    shadows s != t with mask[s, p]. Variance is NaN with fewer than two values."""
    values = np.asarray(values, np.float64)
    mask = np.asarray(mask, bool)
    weighted = np.where(mask, values, 0.0)
    count = mask.sum(0)[None, :] - mask
    total = weighted.sum(0)[None, :] - weighted
    squares = (weighted ** 2).sum(0)[None, :] - weighted ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = np.maximum(squares - count * mean ** 2, 0.0) / (count - 1)
    variance = np.where(count >= 2, variance, np.nan)
    return mean, variance, count


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
                         min_std: float = 1e-3) -> np.ndarray:
    """float64 [K, P]: Lambda(observed[t, p]) with the "member" Gaussian fitted to
    member_values[s, p] over s != t with member_mask, the "non-member" one likewise; NaN where
    either fit has fewer than two values."""
    member_mean, member_var, _ = leave_one_out_fits(member_values, member_mask)
    other_mean, other_var, _ = leave_one_out_fits(nonmember_values, nonmember_mask)
    member_var, other_var = _variance(member_var, variance, min_std), _variance(other_var, variance, min_std)
    observed = np.asarray(observed, np.float64)
    return gaussian_log_density(observed, member_mean, member_var) - gaussian_log_density(observed, other_mean, other_var)
