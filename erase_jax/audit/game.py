"""The audit's two games on a set of shadows: labelled scores and their ROC summary.

RULI (Naderloui et al. 2025, section 4) / U-LiRA (Hayes et al. 2024), with each shadow in turn
the target (`lira.leave_one_out_scores`). phi_trained [K, P] and phi_unlearned [K, P] are the
audited pairs' confidences (`confidence.py`) in the shadows before and after the audited
removal; states [K, P] their IN / UNLEARN / OUT assignment.

* Game 2 (privacy): was the pair trained and unlearned, or never trained? Member reference:
  phi_unlearned of the shadows where the pair is UNLEARN; non-member reference:
  phi_unlearned where it is OUT. Examples: the target's UNLEARN pairs (label 1) and OUT pairs
  (label 0), both observed after unlearning. IN pairs are not examples.
* Game 1 (efficacy): does the unlearned model look like a model that never saw the pair (one
  trained without it, as a retrain is)? Non-member reference: phi_trained where the pair is
  OUT (shadows not unlearned); examples: UNLEARN pairs observed after unlearning (label 1),
  OUT pairs observed in the target before unlearning (label 0).

What a score means: an AUC near 0.5 and a TPR at low FPR near that FPR say that this attack,
with these K shadows, cannot tell the audited removal from never having trained; it bounds
what this attack sees, not what any attack could (U-LiRA section 6: stronger or adaptive
attacks may still succeed). An AUC well above 0.5 shows residual membership of the removed
pairs. Pooled over pairs, it hides which pairs leak: `per_pair_auc` keeps that.

`variance` defaults to "global" (`lira.py`): with K = 12 shadows on the tiny test problem the
per-pair fits (3-4 values each) lose most of the TPR at 1 % FPR (0.06 against 0.94).

`play_rmia` scores game 2 with RMIA's offline score instead (`rmia.py`): log p instead of phi,
a few OUT shadows as reference models, a population of pairs no model trained on.
"""

from __future__ import annotations

import numpy as np

from erase_jax.audit import roc
from erase_jax.audit.assignment import OUT, UNLEARN
from erase_jax.audit.lira import leave_one_out_scores
from erase_jax.audit.rmia import offline_scores

GAMES = ("game1", "game2")


def game_examples(game: str, phi_trained: np.ndarray, phi_unlearned: np.ndarray, states: np.ndarray,
                  variance: str = "global") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [K, P], labels [K, P] bool, used [K, P] bool) of one game: entry (t, p) is pair
    p with shadow t as the target; `used` marks the labelled examples with a finite score."""
    unlearn, out = states == UNLEARN, states == OUT
    if game == "game2":
        observed, nonmember_values = phi_unlearned, phi_unlearned
    elif game == "game1":
        observed, nonmember_values = np.where(unlearn, phi_unlearned, phi_trained), phi_trained
    else:
        raise ValueError(f"game must be one of {GAMES}, got {game!r}")
    scores = leave_one_out_scores(observed, phi_unlearned, unlearn, nonmember_values, out, variance)
    return scores, unlearn, (unlearn | out) & np.isfinite(scores)


def play(game: str, phi_trained: np.ndarray, phi_unlearned: np.ndarray, states: np.ndarray,
         variance: str = "global", alphas=(0.01, 0.001)) -> dict:
    """The game's ROC summary over all (target shadow, pair) examples (`roc.summary`)."""
    scores, labels, used = game_examples(game, phi_trained, phi_unlearned, states, variance)
    return _summary(game, scores, labels, used, alphas)


def play_rmia(log_p_unlearned: np.ndarray, states: np.ndarray, log_p_population: np.ndarray, n_references: int = 2,
              a: float = 1.0, gamma: float = 1.0, alphas=(0.01, 0.001)) -> dict:
    """Game 2 with RMIA's offline score (`rmia.offline_scores`): UNLEARN pairs (label 1)
    against OUT pairs (label 0), observed after unlearning, each shadow in turn the target."""
    scores = offline_scores(log_p_unlearned, states == OUT, log_p_population, n_references, a, gamma)
    labels = states == UNLEARN
    return _summary("rmia", scores, labels, (labels | (states == OUT)) & np.isfinite(scores), alphas)


def _summary(game: str, scores: np.ndarray, labels: np.ndarray, used: np.ndarray, alphas) -> dict:
    if not labels[used].any() or labels[used].all():
        raise ValueError(f"{game}: no scorable examples of both labels; a fit needs two other shadows per state "
                         f"(K = {labels.shape[0]} shadows)")
    return roc.summary(scores[used], labels[used], alphas)


def per_pair_auc(scores: np.ndarray, labels: np.ndarray, used: np.ndarray) -> np.ndarray:
    """float [P]: each pair's AUC over the target shadows (NaN where a pair lacks either label)."""
    result = np.full(scores.shape[1], np.nan)
    for p in range(scores.shape[1]):
        column = used[:, p]
        if labels[column, p].any() and not labels[column, p].all():
            result[p] = roc.roc_auc(scores[column, p], labels[column, p])
    return result
