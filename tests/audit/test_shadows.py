"""Shadow BPR models trained as one vmap: equal to each shadow alone; the audit on known membership.

The end-to-end test trains real BPR shadows on a tiny data set: with nothing removed
("untouched") the UNLEARN pairs are simply trained, and an overfit BPR separates them from the
never-trained OUT pairs (AUC near 1); after the exact retrain no shadow saw either, and the
audit is at chance (AUC near 0.5).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from erase_jax.audit.assignment import OUT, UNLEARN, assign_states, trained_mask
from erase_jax.audit.confidence import stacked_confidence
from erase_jax.audit.game import play
from erase_jax.audit.shadows import ShadowSet, apply_removal, shadow_seeds
from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model
from erase_jax.train import TrainConfig
from erase_jax.unlearn.exact.shards import shard_slice

N_USERS, N_ITEMS = 30, 40


def tiny_shadow_set(n_shadows: int, n_audited: int, epochs: int, seed: int = 0) -> ShadowSet:
    rng = np.random.default_rng(seed)
    keys = rng.choice(N_USERS * N_ITEMS, size=360, replace=False)  # distinct pairs, 12 per user
    users, items = (keys // N_ITEMS).astype(np.int32), (keys % N_ITEMS).astype(np.int32)
    model = build_model("BPR", embedding_size=16)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items))
    config = TrainConfig(epochs=epochs, batch_size=64, learning_rate=0.05, optimizer="adam")
    audited = np.sort(rng.choice(len(users), n_audited, replace=False))
    return ShadowSet(model, context, config, N_USERS, N_ITEMS, users, items, audited,
                     assign_states(n_shadows, n_audited, seed), shadow_seeds(seed, n_shadows))


@pytest.mark.slow
def test_vmapped_shadows_equal_each_shadow_trained_alone():
    shadows = tiny_shadow_set(n_shadows=3, n_audited=30, epochs=2)
    kept = trained_mask(shadows.states)
    together, record = shadows.train(kept)
    assert record["n_shadows"] == 3 and record["train_seconds"] > 0
    data = shadows.data(kept)
    for s in range(3):  # each shadow's data lacks exactly its OUT pairs
        assert int(data.n_rows[s]) == len(shadows.train_users) - int((shadows.states[s] == OUT).sum())
    for s in (0, 2):
        alone, _ = shadows.train(kept, shadows=np.array([s]))
        for a, b in zip(jax.tree.leaves(shard_slice(alone, 0)), jax.tree.leaves(shard_slice(together, s))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_shadows_trained_in_groups_equal_them_trained_together():
    shadows = tiny_shadow_set(n_shadows=3, n_audited=30, epochs=2)
    kept = trained_mask(shadows.states)
    together, _ = shadows.train(kept)
    grouped, record = dataclasses.replace(shadows, group_size=2).train(kept)
    assert record["group_size"] == 2 and record["n_shadows"] == 3
    for a, b in zip(jax.tree.leaves(grouped), jax.tree.leaves(together)):
        assert a.shape == b.shape
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="group_size"):
        dataclasses.replace(shadows, group_size=0)


def test_the_audit_separates_trained_pairs_and_not_retrained_ones():
    shadows = tiny_shadow_set(n_shadows=12, n_audited=60, epochs=40)
    trained, _ = shadows.train_shadows()
    users, items = shadows.audited_users, shadows.audited_items
    phi_trained = np.asarray(stacked_confidence(shadows.model, trained, shadows.context, users, items))
    # trained pairs are pushed up, OUT pairs (sampled as negatives) down
    assert phi_trained[shadows.states == UNLEARN].mean() > phi_trained[shadows.states == OUT].mean() + 1
    results = {}
    for name in ("untouched", "retrain"):
        unlearned, _ = apply_removal(name, shadows, trained)
        phi = np.asarray(stacked_confidence(shadows.model, unlearned, shadows.context, users, items))
        results[name] = play("game2", phi_trained, phi, shadows.states, variance="global")
    assert results["untouched"]["auc"] > 0.9
    assert abs(results["retrain"]["auc"] - 0.5) < 0.12
    with pytest.raises(ValueError, match="unknown removal"):
        apply_removal("no-such-method", shadows, trained)
    same, _ = apply_removal("original", shadows, trained)  # the old name of `untouched`
    assert same is trained
