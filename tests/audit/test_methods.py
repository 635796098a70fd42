"""Approximate methods as the audited removal: the requests each shadow sends, and a real method.

A recording method checks the requests against the shadow's assignment (one request per user
with an UNLEARN pair, F = the user's rows present in the shadow, C = F without its UNLEARN
pairs, R = other users' rows); SCIF on tiny BPR shadows must move the UNLEARN pairs' confidence
towards the retrain's.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import numpy as np
import pytest

from erase_jax.audit.assignment import OUT, UNLEARN, trained_mask
from erase_jax.audit.confidence import stacked_confidence
from erase_jax.audit.methods import method_removal
from erase_jax.audit.shadows import apply_removal
from tests.audit.test_shadows import tiny_shadow_set


@dataclasses.dataclass
class Recorder:
    name: ClassVar[str] = "recorder"
    requests: list = dataclasses.field(default_factory=list)

    def retain_budget(self, n_forget_rows: int) -> int:
        return 20

    def init(self, model, params):
        return ()

    def unlearn(self, model, params, state, request, key):
        self.requests.append(request)
        return params, state, {"rows": request.n_forget_rows}


def pairs(batch) -> set:
    weight = np.asarray(batch["weight"]) > 0
    return set(zip(np.asarray(batch["users"])[weight].tolist(), np.asarray(batch["pos"])[weight].tolist()))


def test_requests_follow_each_shadows_assignment():
    shadows = tiny_shadow_set(n_shadows=3, n_audited=30, epochs=1)
    trained, _ = shadows.train(trained_mask(shadows.states))
    recorder = Recorder()
    params, record = method_removal(shadows, trained, recorder, seed=1)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(trained)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    all_pairs = list(zip(shadows.train_users.tolist(), shadows.train_items.tolist()))
    audited = [all_pairs[r] for r in shadows.audited]
    requests = iter(recorder.requests)
    for s in range(3):
        unlearn = {audited[p] for p in np.nonzero(shadows.states[s] == UNLEARN)[0]}
        out = {audited[p] for p in np.nonzero(shadows.states[s] == OUT)[0]}
        users = sorted({u for u, _ in unlearn})
        seen = []
        for _ in users:
            request = next(requests)
            (user,) = request.users.tolist()
            seen.append(user)
            expected_f = {pair for pair in all_pairs if pair[0] == user} - out
            assert pairs(request.forget) == expected_f
            assert pairs(request.clean) == expected_f - unlearn
            assert request.n_removed == len(expected_f & unlearn) > 0
            retain = pairs(request.retain)
            # whole other users, never OUT pairs nor users already served (later users may be drawn)
            assert retain and not retain & out and not set(seen) & {u for u, _ in retain}
        assert sorted(seen) == users
    assert next(requests, None) is None
    assert record["n_requests"] == len(recorder.requests) and record["method"] == "recorder"


def test_scif_moves_unlearned_pairs_towards_the_retrain():
    shadows = tiny_shadow_set(n_shadows=6, n_audited=40, epochs=30)
    trained, _ = shadows.train_shadows()
    users, items = shadows.audited_users, shadows.audited_items
    unlearn = shadows.states == UNLEARN
    phi = {}
    for name in ("original", "retrain", "scif"):
        params, record = apply_removal(name, shadows, trained, seed=0)
        phi[name] = np.asarray(stacked_confidence(shadows.model, params, shadows.context, users, items))[unlearn].mean()
    assert record["n_requests"] > 0 and record["seconds"] > 0
    assert phi["retrain"] < phi["original"]
    assert phi["scif"] < phi["original"]  # SCIF lowers the removed pairs' confidence
    with pytest.raises(ValueError, match="unknown removal"):
        apply_removal("no-such-method", shadows, trained)
