"""An approximate unlearning method (SCIF, Fanchuan, ...) as the audited removal on every sequence shadow.

The sequence counterpart of `methods.method_removal`: each shadow in turn, with the requests
the SBR protocol would send, built by the SBR task's own request rows (`tasks.sbr.SBRRequestRows`)
over the shadow's data (the run's interactions without the shadow's OUT pairs, sequences
rebuilt and split again):

* one request per user who holds an UNLEARN pair in the shadow, users in a seeded order (batch
  size 1), applied one after another with the method's state carried across them;
* F = all the user's training prefix rows in the shadow (in the objective's form), C = the rows
  of the user's counterfactual sequence without the UNLEARN pairs removed so far, R = whole
  retain users' rows drawn by the protocol's `RetainSampler` (the users of this and earlier
  requests excluded), capped at `RETAIN_CAP_SHARE` of the shadow's interactions;
* the context is the model's sizes, the same before and after; `n_train_rows` the shadow's
  training rows minus the interactions removed so far (the protocol's count).

Methods that build their own model from the data (SISA, RecEraser: a `start` hook) are refused:
a shadow is a single model. Each shadow runs the unvmapped method; it compiles once per padding
bucket and is reused across shadows. `seed` fixes the request order, retain draws and keys.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from erase_jax.audit.assignment import OUT, UNLEARN
from erase_jax.audit.methods import each_shadow
from erase_jax.tasks.sbr import SBRRequestRows, task_from_interactions
from erase_jax.unlearn.methods.base import RequestData, build_method
from erase_jax.unlearn.protocol.requests import RETAIN_CAP_SHARE, RetainSampler


def sequence_method_removal(shadow_set, trained_params, method, options: dict | None = None, seed: int = 0) -> tuple[Any, dict]:
    """(stacked parameters after the method removed every shadow's UNLEARN pairs, record): the
    requests run, the summed method seconds (compilation included), each numeric diagnostic's mean."""
    method = build_method(method, **(options or {})) if isinstance(method, str) else method
    if hasattr(method, "start"):
        raise ValueError(f"audit: {method.name} builds its own model from the data (sharded retraining); "
                         "a shadow is one model, so it cannot be audited on shadows")
    if shadow_set.experiment is None:
        raise ValueError("audit: a method on sequence shadows needs the run's experiment (SequenceShadowSet.experiment)")
    return each_shadow(shadow_set.n_shadows, trained_params, method, options,
                       lambda s, params: _unlearn_shadow(shadow_set, s, params, method, seed))


def shadow_experiment(shadow_set, shadow: int):
    """(the run's experiment on shadow `shadow`'s data before removal, bool over that data: its
    UNLEARN pairs): the interactions without its OUT pairs, sequences rebuilt and split again."""
    experiment = shadow_set.experiment
    states = shadow_set.states[shadow]
    out = np.zeros(len(shadow_set.interactions), bool)
    out[shadow_set.audited_interactions[states == OUT]] = True
    unlearn = np.zeros(len(shadow_set.interactions), bool)
    unlearn[shadow_set.audited_interactions[states == UNLEARN]] = True
    data = experiment.data.without(out, experiment.config.seed)
    examples = task_from_interactions(data.interactions, shadow_set.sequence, shadow_set.ratios)
    return dataclasses.replace(experiment, data=data, examples=examples), unlearn[~out]


def _unlearn_shadow(shadow_set, s: int, params, method, seed: int) -> tuple[Any, dict]:
    experiment, unlearn = shadow_experiment(shadow_set, s)
    rows = SBRRequestRows(experiment)
    inter = experiment.data.interactions
    rng = np.random.default_rng([seed, s])
    request_users = rng.permutation(np.unique(inter.users[unlearn]))
    sampler = RetainSampler(rows.user_rows, len(request_users), seed * 1000 + s)
    cap = int(RETAIN_CAP_SHARE * len(inter))
    n_train_rows = len(experiment.examples.train)
    state = method.init(shadow_set.model, params)
    removed = np.zeros(len(inter), bool)
    base_key = jax.random.PRNGKey(seed * 1000 + s)
    seconds, diagnostics = 0.0, {}
    for b, user in enumerate(request_users):
        users = np.array([user])
        removed_after = removed | (unlearn & (inter.users == user))
        key = jax.random.fold_in(base_key, b)
        n_forget = len(rows.user_rows.gather(users))
        need = min(method.retain_budget(n_forget), cap)
        retain_rows = sampler.sample(need, request_users[: b + 1]) if need > 0 else np.zeros(0, np.int64)
        forget, clean, retain = rows.request_batches(users, removed_after, retain_rows, key, True)
        request = RequestData(index=b, users=users, forget=forget, clean=clean, retain=retain, n_forget_rows=n_forget,
                              n_removed=int(removed_after.sum() - removed.sum()), context_before=shadow_set.context,
                              context_after=shadow_set.context, removed_rows=np.nonzero(removed_after & ~removed)[0],
                              experiment=experiment, n_train_rows=max(n_train_rows - int(removed_after.sum()), 1))
        started = time.perf_counter()
        params, state, diagnostic = method.unlearn(shadow_set.model, params, state, request, key)
        jax.block_until_ready(params)
        seconds += time.perf_counter() - started
        for name, value in diagnostic.items():
            if np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number):
                diagnostics.setdefault(name, []).append(float(value))
        removed = removed_after
    return params, {"method_seconds": seconds, "n_requests": len(request_users), "diagnostics": diagnostics}
