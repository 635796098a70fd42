"""LightGCN shadows: one graph per shadow, padded to one edge capacity, stacked and vmapped."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.audit.assignment import UNLEARN, assign_states, kept_mask, trained_mask
from erase_jax.audit.methods import method_removal
from erase_jax.audit.shadows import ShadowSet, shadow_seeds
from erase_jax.data.cf import CFTrainData
from erase_jax.models import build_model
from erase_jax.train import TrainConfig
from erase_jax.unlearn.exact.shards import shard_slice

N_USERS, N_ITEMS = 20, 25


def tiny_rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    keys = np.random.default_rng(seed).choice(N_USERS * N_ITEMS, size=160, replace=False)
    return (keys // N_ITEMS).astype(np.int32), (keys % N_ITEMS).astype(np.int32)


def graph_shadow_set(n_shadows: int = 3, epochs: int = 2) -> ShadowSet:
    users, items = tiny_rows()
    model = build_model("LightGCN", embedding_size=8, n_layers=2)
    context = model.prepare(CFTrainData(N_USERS, N_ITEMS, users, items))
    config = TrainConfig(epochs=epochs, batch_size=32, learning_rate=0.01, optimizer="adam")
    audited = np.sort(np.random.default_rng(1).choice(len(users), 24, replace=False))
    return ShadowSet(model, context, config, N_USERS, N_ITEMS, users, items, audited, assign_states(n_shadows, 24, 0),
                     shadow_seeds(0, n_shadows))


def test_a_padded_graph_scores_as_the_unpadded_one():
    users, items = tiny_rows()
    model = build_model("LightGCN", embedding_size=8, n_layers=3)
    exact = model.prepare(CFTrainData(N_USERS, N_ITEMS, users[:120], items[:120]))
    padded = model.prepare(CFTrainData(N_USERS, N_ITEMS, users[:120], items[:120]), capacity=160)
    assert padded.capacity == 160 and int(padded.valid.sum()) == 120 and float(jnp.abs(padded.weights[120:]).max()) == 0
    params = model.init(jax.random.PRNGKey(0), exact)
    query = {"users": jnp.arange(N_USERS)}
    np.testing.assert_allclose(model.scores(params, padded, query), model.scores(params, exact, query), rtol=1e-5, atol=1e-6)


def test_each_shadow_gets_its_own_graph_of_its_rows():
    shadows = graph_shadow_set()
    assert shadows.context_axis == 0 and shadows.edge_capacity == 160
    kept = kept_mask(shadows.states)
    stacked = shadows.contexts(kept)
    for s in range(3):
        keep = shadows.rows_kept(kept, s)
        assert int(stacked.valid[s].sum()) == keep.sum() == 160 - int((~kept[s]).sum())
        alone = shadows.model.prepare(CFTrainData(N_USERS, N_ITEMS, shadows.train_users[keep], shadows.train_items[keep]))
        params = shadows.model.init(jax.random.PRNGKey(s), alone)
        one = jax.tree.map(lambda x: x[s], stacked)
        query = {"users": jnp.arange(N_USERS)}
        np.testing.assert_allclose(shadows.model.scores(params, one, query), shadows.model.scores(params, alone, query),
                                   rtol=1e-5, atol=1e-6)
    # observations: shadow s's parameters with shadow s's graph
    params = jax.tree.map(lambda *x: jnp.stack(x), *(shadows.model.init(jax.random.PRNGKey(s), shadows.context) for s in range(3)))
    phi = np.asarray(shadows.observe(params, kept, shadows.audited_users, shadows.audited_items))
    for s in range(3):
        scores = shadows.model.scores(jax.tree.map(lambda x: x[s], params), jax.tree.map(lambda x: x[s], stacked),
                                      {"users": jnp.asarray(shadows.audited_users)})
        own = np.asarray(scores)[np.arange(24), shadows.audited_items]
        others = np.asarray(scores).copy()
        others[np.arange(24), shadows.audited_items] = -np.inf
        np.testing.assert_allclose(phi[s], own - np.log(np.exp(others).sum(1)), rtol=1e-4, atol=1e-4)


@pytest.mark.slow  # two compiled LightGCN epochs (vmapped and alone), about a minute on a loaded 2-core CPU
def test_stacked_graph_shadows_train_as_each_alone():
    shadows = graph_shadow_set(n_shadows=3, epochs=2)
    trained = trained_mask(shadows.states)
    together, record = dataclasses.replace(shadows, group_size=2).train(trained)  # a vmapped pair, then one alone
    assert record["group_size"] == 2
    for s in range(2):  # the vmapped pair; shadow 2 trains alone either way
        alone, _ = shadows.train(trained, shadows=np.array([s]))
        for a, b in zip(jax.tree.leaves(shard_slice(alone, 0)), jax.tree.leaves(shard_slice(together, s))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


class RecordingMethod:
    """A stand-in method that changes nothing and records each request's graphs."""

    name = "recording"

    def __init__(self):
        self.edges = []

    def retain_budget(self, n_forget_rows):
        return 0

    def init(self, model, params):
        return None

    def unlearn(self, model, params, state, request, key):
        self.edges.append((int(request.context_before.valid.sum()), int(request.context_after.valid.sum()), request.n_removed))
        return params, state, {}


def test_a_method_sees_each_shadow_graph_lose_its_removed_edges():
    shadows = graph_shadow_set()
    params = jax.tree.map(lambda *x: jnp.stack(x), *(shadows.model.init(jax.random.PRNGKey(s), shadows.context) for s in range(3)))
    method = RecordingMethod()
    _, record = method_removal(shadows, params, method)
    assert record["n_requests"] == len(method.edges)
    start = 0
    for s in range(3):
        n = len(np.unique(shadows.audited_users[shadows.states[s] == UNLEARN]))
        edges = method.edges[start: start + n]
        start += n
        present = 160 - int((shadows.states[s] == 2).sum())  # the shadow's rows: all but its OUT pairs
        assert edges[0][0] == present
        for (before, after, removed), following in zip(edges, edges[1:] + [None]):
            assert after == before - removed
            if following:
                assert following[0] == after
        assert edges[-1][1] == present - int((shadows.states[s] == UNLEARN).sum())


@pytest.mark.slow  # SCIF's compiled curvature products on LightGCN, about a minute on a loaded 2-core CPU
def test_scif_unlearns_on_lightgcn_shadows():
    shadows = graph_shadow_set(n_shadows=3, epochs=20)
    trained, _ = shadows.train(trained_mask(shadows.states))
    unlearned, record = method_removal(shadows, trained, "scif")
    assert record["n_requests"] > 0 and record["method"] == "scif"
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(unlearned))
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(unlearned), jax.tree.leaves(trained)))
    assert moved > 0
    # observed with the graphs of the kept rows: the UNLEARN pairs' confidence falls on average
    before = np.asarray(shadows.observe(trained, trained_mask(shadows.states), shadows.audited_users, shadows.audited_items))
    after = np.asarray(shadows.observe(unlearned, kept_mask(shadows.states), shadows.audited_users, shadows.audited_items))
    unlearn = shadows.states == UNLEARN
    assert after[unlearn].mean() < before[unlearn].mean()
