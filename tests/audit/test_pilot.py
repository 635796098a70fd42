"""The pilot that finds memorised pairs: on a toy problem with one planted memorised pair."""

from __future__ import annotations

import numpy as np

from erase_jax.audit.assignment import assign_states
from erase_jax.audit.pilot import pilot_memorisation, with_memorised
from erase_jax.audit.shadows import ShadowSet, shadow_seeds
from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model
from erase_jax.train import TrainConfig

N_USERS, N_ITEMS = 30, 40


def toy_shadow_set() -> tuple[ShadowSet, int]:
    """Two taste groups (users 0-14 hold 10 of items 0-14, users 15-29 10 of items 15-29): a
    pair inside a group is predictable from the group's other users. The planted pair (0, 39)
    is the only row of item 39: the model predicts it only where it trained on it."""
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(N_USERS):
        group = np.arange(15) if u < 15 else np.arange(15, 30)
        chosen = rng.choice(group, 10, replace=False)
        users += [u] * 10
        items += chosen.tolist()
    users.append(0)
    items.append(39)
    users, items = np.asarray(users, np.int32), np.asarray(items, np.int32)
    model = build_model("BPR", embedding_size=8)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items))
    config = TrainConfig(epochs=20, batch_size=64, learning_rate=0.05, optimizer="adam")
    placeholder = np.array([0])
    shadows = ShadowSet(model, context, config, N_USERS, N_ITEMS, users, items, placeholder,
                        assign_states(3, 1, 0), shadow_seeds(0, 3))
    return shadows, len(users) - 1


def test_the_pilot_ranks_the_planted_pair_first():
    shadows, planted = toy_shadow_set()
    candidates = np.r_[np.arange(0, 300, 15), planted]  # 20 in-group pairs and the planted one
    gaps, record = pilot_memorisation(shadows, candidates, n_pilot=6, seed=1)
    assert record["n_shadows"] == 6 and gaps.shape == (21,)
    assert np.argmax(gaps) == 20, gaps
    assert gaps[20] > np.sort(gaps)[-2] + 1.0  # by a wide margin: the others are predicted from their group
    # the audit's pairs: 5 random forgotten ones plus the 1 most memorised candidate
    forgotten = np.arange(100, 200)
    rows, summary = with_memorised(forgotten, candidates, gaps, n_random=5, n_memorised=1, n_rows=301, seed=1)
    assert len(rows) == 6 and planted in rows and len(np.intersect1d(rows, forgotten)) == 5
    assert summary["n_candidates"] == 21 and summary["memorised_gaps"] == [round(float(gaps[20]), 4)]
