"""Which audited pairs each shadow trains on: a K x P matrix of IN / UNLEARN / OUT.

RULI (Naderloui et al. 2025, section 4, "shadow models"): every target example is, in each
shadow, independently IN (trained and kept), UNLEARN (trained, then removed by the audited
method) or OUT (never trained), a third of the shadows each. Here every column (one audited
pair) is its own random permutation of the balanced vector (IN, UNLEARN, OUT, IN, ...) of
length K: each pair's three counts differ by at most one, pairs are drawn independently of
each other, and the matrix is a function of the seed. With K divisible by 3 every pair is in
each state in exactly K / 3 shadows. Each row (one shadow) then holds about P / 3 pairs of each
state, not exactly (the columns are independent).

Deviation from RULI: RULI draws membership per shadow; this draws per pair, so that every pair
has the same number of shadows in each state (its Gaussian fits all rest on K / 3 values).
"""

from __future__ import annotations

import numpy as np

IN, UNLEARN, OUT = 0, 1, 2
STATE_NAMES = ("IN", "UNLEARN", "OUT")


def assign_states(n_shadows: int, n_pairs: int, seed: int) -> np.ndarray:
    """int8 [n_shadows, n_pairs]: the state (IN, UNLEARN or OUT) of every audited pair in every
    shadow; each column a seeded permutation of a balanced vector."""
    if n_shadows < 3:
        raise ValueError(f"need at least 3 shadows (one per state), got {n_shadows}")
    rng = np.random.default_rng([int(seed), n_shadows, n_pairs])
    balanced = np.resize(np.array([IN, UNLEARN, OUT], np.int8), n_shadows)
    return np.stack([rng.permutation(balanced) for _ in range(n_pairs)], axis=1) if n_pairs else np.zeros((n_shadows, 0), np.int8)


def trained_mask(states: np.ndarray) -> np.ndarray:
    """bool, same shape: the pairs a shadow trains on before any removal (IN and UNLEARN)."""
    return states != OUT


def kept_mask(states: np.ndarray) -> np.ndarray:
    """bool, same shape: the pairs an exact removal of the UNLEARN pairs leaves (IN only)."""
    return states == IN
