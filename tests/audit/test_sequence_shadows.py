"""Shadow sequence models (SASRec, GRU4Rec) for the audit: the OUT rule is the SBR retrain's,
vmapped training equals each shadow trained alone, and the audit on known membership.

Data: the embedded synthetic data (100 users, 50 items, timestamps), one sequence per user, as
the SBR tests use it. The end-to-end test overfits a tiny SASRec (no dropout): with nothing
removed its UNLEARN pairs are trained and game 2 separates them from never-trained OUT pairs;
after the exact retrain no shadow saw either and the audit is at chance.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from erase_jax.audit.assignment import IN, OUT, UNLEARN, assign_states, trained_mask
from erase_jax.audit.game import play
from erase_jax.audit.sequence_methods import shadow_experiment
from erase_jax.audit.sequence_shadows import SequenceShadowSet
from erase_jax.audit.shadows import apply_removal, shadow_seeds
from erase_jax.config import load_config
from erase_jax.data.positions import position_rows
from erase_jax.run import build_experiment
from erase_jax.unlearn.exact.shards import init_shards

SYNTHETIC = "data.synthetic={n_users: 100, n_items: 50, avg_interactions: 12}"
TINY = {
    "SASRec": "model_params={hidden_size: 16, inner_size: 32, n_layers: 1, n_heads: 1, hidden_dropout: 0.0, attention_dropout: 0.0}",
    "GRU4Rec": "model_params={embedding_size: 8, hidden_size: 8}",
}


def experiment(model: str = "SASRec", objective: str = "all_positions", epochs: int = 2, learning_rate: float = 0.01):
    config = load_config(None, [f"model={model}", TINY[model], "dataset=synthetic", SYNTHETIC,
                                "data.min_user_interactions=0", "data.min_item_interactions=0", f"train.epochs={epochs}",
                                "train.batch_size=64", f"train.learning_rate={learning_rate}", "train.valid_metric=mrr@10",
                                f"sequence.objective={objective}"])
    return build_experiment(config)


def shadow_set(run, n_shadows: int, n_audited: int, seed: int = 0) -> SequenceShadowSet:
    config, train = run.config, run.examples.train
    audited = np.sort(np.random.default_rng(seed).choice(len(train), n_audited, replace=False))
    return SequenceShadowSet(run.model, run.context, config.train, config.sequence, tuple(config.data.split_ratios),
                             run.data.interactions, train, audited, assign_states(n_shadows, n_audited, seed),
                             shadow_seeds(seed, n_shadows), None, run)


def pairs(inter, rows) -> set:
    """(user, item, timestamp) of the targets of prefix rows over `inter`."""
    return set(zip(inter.users[rows.target_rows].tolist(), rows.targets.tolist(), inter.timestamps[rows.target_rows].tolist()))


@pytest.mark.parametrize("objective", ["prefixes", "all_positions"])
def test_the_out_rule_is_the_sbr_retrains_and_removes_exactly_the_audited_interactions(objective):
    run = experiment(objective=objective)
    shadows = shadow_set(run, n_shadows=3, n_audited=30)
    inter, kept = run.data.interactions, trained_mask(shadows.states)
    data = shadows.data(kept)
    full = pairs(inter, run.examples.train)
    for s in range(3):
        removed = shadows.removed(kept, s)
        audited = np.asarray(shadows.audited_interactions)
        assert np.array_equal(np.nonzero(removed)[0], np.sort(audited[shadows.states[s] == OUT]))
        # the protocol's retrain on the data without those interactions trains on the same rows
        retrain = build_experiment(run.config, run.data.without(removed, run.config.seed))
        expected = position_rows(retrain.examples.train) if objective == "all_positions" else retrain.examples.train
        n = int(data.n_rows[s])
        assert n == len(expected) and n <= data.items.shape[1] == shadows.capacity
        np.testing.assert_array_equal(np.asarray(data.targets[s, :n]), expected.targets)
        np.testing.assert_array_equal(np.asarray(data.items[s, :n]), expected.items if objective == "all_positions" else expected.prefixes)
        assert not np.asarray(data.weight[s, n:]).any()
        # no OUT pair is a training target any more; every IN / UNLEARN one is still in the data
        # (a training target unless the new split moved it to validation); an OUT item is in no
        # training context either (the user's sequence was rebuilt without it)
        shadow_pairs = pairs(retrain.data.interactions, retrain.examples.train)
        kept_data = retrain.data.interactions
        present = set(zip(kept_data.users.tolist(), kept_data.items.tolist(), kept_data.timestamps.tolist()))
        audited_pairs = [(int(inter.users[r]), int(inter.items[r]), float(inter.timestamps[r])) for r in audited]
        assert set(audited_pairs) <= full
        for state, pair in zip(shadows.states[s], audited_pairs):
            assert (pair in present) == (state != OUT) and (state != OUT or pair not in shadow_pairs)
        assert sum(p in shadow_pairs for p in audited_pairs) >= 0.9 * int((shadows.states[s] != OUT).sum())
        out_rows = audited[shadows.states[s] == OUT]
        for user, item in zip(inter.users[out_rows], inter.items[out_rows]):
            mine = retrain.data.interactions.users == user
            assert item not in retrain.data.interactions.items[mine]
        # users are never dropped
        assert set(np.unique(retrain.data.interactions.users)) == set(np.unique(inter.users))


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_vmapped_sequence_shadows_equal_each_shadow_trained_alone(model):
    run = experiment(model, epochs=2)
    shadows = shadow_set(run, n_shadows=3, n_audited=30)
    kept = trained_mask(shadows.states)
    together, record = shadows.train(kept)
    assert record["n_shadows"] == 3 and record["group_size"] == 3 and record["train_seconds"] > 0
    grouped, _ = dataclasses.replace(shadows, group_size=1).train(kept)
    for a, b in zip(jax.tree.leaves(grouped), jax.tree.leaves(together)):
        assert a.shape == b.shape and a.shape[0] == 3
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # and the shadows did train, each differently (own seed, own rows)
    start = jax.tree.leaves(init_shards(run.model, run.context, shadows.config, shadows.seeds, 1)[0])
    moved = [float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(jax.tree.leaves(together), start)]
    assert max(moved) > 1e-3
    first = jax.tree.leaves(together)[0]
    assert not np.allclose(np.asarray(first[0]), np.asarray(first[1]))


def test_the_audit_separates_trained_sequence_pairs_and_not_retrained_ones():
    run = experiment(epochs=12, learning_rate=0.03)
    shadows = shadow_set(run, n_shadows=9, n_audited=80)
    trained, _ = shadows.train_shadows()
    queries, items = shadows.audited_queries, shadows.audited_items
    phi_trained = np.asarray(shadows.observe(trained, trained_mask(shadows.states), queries, items))
    assert phi_trained[shadows.states == UNLEARN].mean() > phi_trained[shadows.states == OUT].mean() + 1
    assert abs(phi_trained[shadows.states == UNLEARN].mean() - phi_trained[shadows.states == IN].mean()) < 0.5
    auc = {}
    for name in ("untouched", "retrain"):
        unlearned, _ = apply_removal(name, shadows, trained)
        phi = np.asarray(shadows.observe(unlearned, None, queries, items))
        auc[name] = play("game2", phi_trained, phi, shadows.states, variance="global")["auc"]
    # 240 examples per label: chance has a standard deviation of about 0.03 around 0.5
    assert auc["untouched"] > 0.65, auc
    assert 0.35 < auc["retrain"] < 0.65, auc


def test_a_method_runs_on_sequence_shadows_with_the_protocols_requests():
    run = experiment(epochs=1)
    shadows = shadow_set(run, n_shadows=3, n_audited=12)
    trained, _ = shadows.train_shadows()
    view, unlearn = shadow_experiment(shadows, 0)
    assert len(view.data.interactions) == len(run.data.interactions) - int((shadows.states[0] == OUT).sum())
    assert int(unlearn.sum()) == int((shadows.states[0] == UNLEARN).sum())
    unlearned, record = apply_removal("fanchuan", shadows, trained)
    users = [set(run.data.interactions.users[shadows.audited_interactions[shadows.states[s] == UNLEARN]].tolist()) for s in range(3)]
    assert record["n_requests"] == sum(len(u) for u in users)
    changed = [not np.allclose(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(unlearned), jax.tree.leaves(trained))]
    assert any(changed)
    with pytest.raises(ValueError, match="cannot be audited on shadows"):
        apply_removal("sisa", shadows, trained)
