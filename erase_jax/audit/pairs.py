"""The audited pairs: which (user, item) training rows the audit asks about.

U-LiRA (Hayes et al. 2024, section 5) and RULI (Naderloui et al. 2025, section 5.2) audit a
fixed set of target examples: random ones, and the most vulnerable ones (the most memorised,
chosen by an earlier membership-inference run). Here the candidates are the scenario's
forgotten pairs that lie in the training split (the only ones a model trained on); a seeded
sample of them, plus, when a memorisation score per training row is given, the rows that score
highest (e.g. `memorisation` of an earlier shadow run: the gap between a pair's mean
confidence in shadows that trained on it and in those that did not).
"""

from __future__ import annotations

import numpy as np

from erase_jax.audit.assignment import OUT


def select_audited_rows(candidates: np.ndarray, n_random: int, seed: int, memorisation: np.ndarray | None = None,
                        pool: np.ndarray | None = None, n_memorised: int = 0) -> np.ndarray:
    """Sorted, distinct row indices: `n_random` of `candidates` drawn without replacement
    (all of them if there are fewer), then the `n_memorised` rows of `pool` (default:
    `candidates`) with the highest `memorisation[row]` that were not drawn already.

    `memorisation` is indexed by row (an array over all rows of the data)."""
    candidates = np.unique(np.asarray(candidates, np.int64))
    rng = np.random.default_rng([int(seed), len(candidates)])
    chosen = rng.choice(candidates, size=min(n_random, len(candidates)), replace=False)
    if n_memorised:
        if memorisation is None:
            raise ValueError("n_memorised > 0 needs a memorisation score per row")
        pool = candidates if pool is None else np.unique(np.asarray(pool, np.int64))
        pool = np.setdiff1d(pool, chosen)
        order = np.argsort(-np.asarray(memorisation)[pool], kind="stable")
        chosen = np.concatenate([chosen, pool[order[:n_memorised]]])
    return np.sort(chosen)


def memorisation(phi_trained: np.ndarray, states: np.ndarray) -> np.ndarray:
    """float [P]: per audited pair, mean confidence over the shadows that trained on it (IN or
    UNLEARN, before removal) minus the mean over those that did not (OUT): LiRA's per-example
    gap mu_in - mu_out (Carlini et al. 2022, section 4), the vulnerability RULI ranks by."""
    trained = states != OUT
    mean_in = np.sum(np.where(trained, phi_trained, 0), 0) / np.maximum(trained.sum(0), 1)
    mean_out = np.sum(np.where(trained, 0, phi_trained), 0) / np.maximum((~trained).sum(0), 1)
    return mean_in - mean_out
