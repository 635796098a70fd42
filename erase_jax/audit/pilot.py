"""The most memorised pairs, from a pilot run: a few IN / OUT shadows over every candidate pair.

RULI (Naderloui et al. 2025, section 5.2) and U-LiRA (Hayes et al. 2024, section 5) audit the
most vulnerable examples besides random ones, chosen by an earlier membership-inference run.
Here that run is a pilot: `n_pilot` shadows (`shadows.ShadowSet`) in which every candidate pair
(e.g. all the scenario's forgettable training pairs) is trained in about two thirds and left
out of the rest (`assignment.assign_states`, IN and UNLEARN both trained; nothing is removed),
and a pair's memorisation is LiRA's gap mu_in - mu_out of its confidence phi (`pairs.memorisation`):
a pair the model only predicts when it trained on it scores high, a pair it predicts from the
rest of the data (generalisation) scores near 0. With few pilot shadows the gaps are noisy;
the pilot ranks pairs, the audit's own K shadows then measure them.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from erase_jax.audit.assignment import assign_states, trained_mask
from erase_jax.audit.pairs import memorisation, select_audited_rows
from erase_jax.audit.shadows import ShadowSet, shadow_seeds


def pilot_memorisation(shadow_set: ShadowSet, candidates: np.ndarray, n_pilot: int, seed: int) -> tuple[np.ndarray, dict]:
    """(float [len(candidates)] memorisation gaps, training record): `n_pilot` shadows of
    `shadow_set`'s model, data and training settings, with `candidates` (row positions in its
    training rows) as the audited pairs, trained in two thirds of them each; the pilot's
    seeds and assignment derive from `seed` and differ from the audit's."""
    candidates = np.unique(np.asarray(candidates, np.int64))
    pilot = dataclasses.replace(shadow_set, audited=candidates, states=assign_states(n_pilot, len(candidates), seed + 7919),
                                seeds=shadow_seeds(seed + 7919, n_pilot))
    params, record = pilot.train(trained_mask(pilot.states))
    phi = np.asarray(pilot.observe(params, trained_mask(pilot.states), pilot.audited_queries, pilot.audited_items))
    return memorisation(phi, pilot.states), record


def with_memorised(random_rows: np.ndarray, candidates: np.ndarray, gaps: np.ndarray, n_random: int, n_memorised: int,
                   n_rows: int, seed: int) -> tuple[np.ndarray, dict]:
    """(sorted audited row positions, summary): `n_random` of `random_rows` (the scenario's
    forgotten pairs, `pairs.select_audited_rows`) plus the `n_memorised` `candidates` with the
    largest pilot `gaps` (`pilot_memorisation`, same order as the sorted candidates) among those
    not drawn already; `n_rows` is the number of training rows."""
    candidates = np.unique(np.asarray(candidates, np.int64))
    if len(gaps) != len(candidates):
        raise ValueError(f"{len(gaps)} gaps for {len(candidates)} distinct candidates")
    score = np.full(n_rows, -np.inf)
    score[candidates] = gaps
    rows = select_audited_rows(random_rows, n_random, seed, memorisation=score, pool=candidates, n_memorised=n_memorised)
    added = np.setdiff1d(rows, select_audited_rows(random_rows, n_random, seed))
    summary = {"n_candidates": len(candidates), "n_memorised": len(added),
               "gap_quantiles": dict(zip(("p50", "p90", "p99", "max"), np.quantile(gaps, [0.5, 0.9, 0.99, 1.0]).round(4).tolist())),
               "memorised_gaps": np.sort(score[added])[::-1].round(4).tolist()}
    return rows, summary
