"""An approximate unlearning method (SCIF, Fanchuan, ...) as the audited removal on every shadow.

`method_removal(shadow_set, trained_params, method)` runs a registered method
(`erase_jax.unlearn.methods`) on each shadow in turn, removing that shadow's UNLEARN pairs
with the requests the protocol would send (`erase_jax.unlearn.protocol`), built here from the
shadow's own training rows:

* one request per user who holds an UNLEARN pair in the shadow, users in a seeded order (the
  protocol's stream: one user per request, batch size 1), requests applied one after another
  with the method's state carried across them, as in the protocol up to its last checkpoint;
* F = all the user's rows in the shadow (its OUT pairs were never there), C = F without the
  user's UNLEARN pairs, with F's sampled negatives (`tasks.cf.kept_rows_batch`); negatives
  never a training item of the user (the protocol's rule, over the full training split);
* R = whole retain users' rows in the shadow, drawn by the protocol's `RetainSampler` (the
  users of this and earlier requests excluded), capped at `RETAIN_CAP_SHARE` of the rows;
* `n_train_rows` = the shadow's rows minus those removed so far.

* contexts before and after the request: the model context of the shadow's rows minus what
  was removed (`ShadowSet.context_of`: for a graph model the shadow's own graph, padded to one
  edge capacity, so every request keeps the compiled shapes; BPR's is its sizes).

Each shadow runs the
unvmapped method (methods are per request, and each shadow removes different pairs); the
method compiles once per padding bucket and is reused across shadows. `seed` fixes the request
order, the retain draws and the methods' keys.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.audit.assignment import OUT, UNLEARN
from erase_jax.batching.cf import PositiveIndex, bucket_size, cf_rows_batch
from erase_jax.data.user_rows import UserRows
from erase_jax.tasks.cf import kept_rows_batch
from erase_jax.unlearn.methods.base import RequestData, build_method
from erase_jax.unlearn.protocol.requests import RETAIN_CAP_SHARE, RetainSampler


def method_removal(shadow_set, trained_params, method, options: dict | None = None, seed: int = 0) -> tuple[Any, dict]:
    """(stacked parameters after the method removed every shadow's UNLEARN pairs, record).

    `method` is a registered method's name (built with `options`) or a method object.
    The record holds the requests run, the summed method seconds (compilation included in the
    first requests of each padding bucket), and the mean of each numeric diagnostic."""
    method = build_method(method, **(options or {})) if isinstance(method, str) else method
    positives = PositiveIndex.build(shadow_set.n_users, shadow_set.train_users, shadow_set.train_items, shadow_set.n_items)
    return each_shadow(shadow_set.n_shadows, trained_params, method, options,
                       lambda s, params: _unlearn_shadow(shadow_set, s, params, method, positives, seed))


def each_shadow(n_shadows: int, trained_params, method, options: dict | None, unlearn_one) -> tuple[Any, dict]:
    """Runs `unlearn_one(s, shadow s's parameters) -> (parameters, record)` on every shadow in turn;
    (the stacked results, the summed seconds and requests and the mean of each diagnostic)."""
    unlearned, seconds, n_requests, diagnostics = [], 0.0, 0, {}
    for s in range(n_shadows):
        params, record = unlearn_one(s, jax.tree.map(lambda x: x[s], trained_params))
        unlearned.append(params)
        seconds += record["method_seconds"]
        n_requests += record["n_requests"]
        for name, values in record["diagnostics"].items():
            diagnostics.setdefault(name, []).extend(values)
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *unlearned)
    means = {name: float(np.nanmean(values)) for name, values in diagnostics.items()}
    return stacked, {"seconds": seconds, "n_requests": n_requests, "method": method.name,
                     "options": dict(options or {}), "mean_diagnostics": means}


def _unlearn_shadow(shadow_set, s: int, params, method, positives: PositiveIndex, seed: int) -> tuple[Any, dict]:
    states = shadow_set.states[s]
    present = np.ones(len(shadow_set.train_users), bool)
    present[shadow_set.audited[states == OUT]] = False
    rows = np.nonzero(present)[0]  # the shadow's training rows (positions in train_users)
    users, items = shadow_set.train_users[rows], shadow_set.train_items[rows]
    unlearn = np.zeros(len(shadow_set.train_users), bool)
    unlearn[shadow_set.audited[states == UNLEARN]] = True
    unlearn = unlearn[rows]  # over the shadow's rows
    user_rows = UserRows.from_groups(users, shadow_set.n_users)
    rng = np.random.default_rng([seed, s])
    request_users = rng.permutation(np.unique(users[unlearn]))
    sampler = RetainSampler(user_rows, len(request_users), seed * 1000 + s)
    cap = int(RETAIN_CAP_SHARE * len(rows))
    state = method.init(shadow_set.model, params)
    removed = np.zeros(len(rows), bool)
    base_key = jax.random.PRNGKey(seed * 1000 + s)
    seconds, diagnostics = 0.0, {}
    context_before = _context(shadow_set, rows, removed)
    for b, user in enumerate(request_users):
        forget_rows = user_rows.gather(np.array([user]))
        removed_after = removed.copy()
        removed_after[forget_rows[unlearn[forget_rows]]] = True
        key = jax.random.fold_in(base_key, b)
        forget_key, _, retain_key = jax.random.split(key, 3)
        size = bucket_size(len(forget_rows))
        forget = cf_rows_batch(users[forget_rows], items[forget_rows], positives, shadow_set.n_items, forget_key, size)
        kept = ~removed_after[forget_rows]
        clean = jax.device_put(kept_rows_batch(forget, kept, size)) if kept.any() else None
        need = min(method.retain_budget(len(forget_rows)), cap)
        retain_rows = sampler.sample(need, request_users[: b + 1]) if need > 0 else np.zeros(0, np.int64)
        retain = cf_rows_batch(users[retain_rows], items[retain_rows], positives, shadow_set.n_items, retain_key)
        request = RequestData(index=b, users=np.array([user]), forget=forget, clean=clean, retain=retain,
                              n_forget_rows=len(forget_rows), n_removed=int(removed_after.sum() - removed.sum()),
                              context_before=context_before, context_after=_context(shadow_set, rows, removed_after),
                              n_train_rows=max(len(rows) - int(removed_after.sum()), 1))
        started = time.perf_counter()
        params, state, diagnostic = method.unlearn(shadow_set.model, params, state, request, key)
        jax.block_until_ready(params)
        seconds += time.perf_counter() - started
        for name, value in diagnostic.items():
            if np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number):
                diagnostics.setdefault(name, []).append(float(value))
        removed, context_before = removed_after, request.context_after
    return params, {"method_seconds": seconds, "n_requests": len(request_users), "diagnostics": diagnostics}


def _context(shadow_set, rows: np.ndarray, removed: np.ndarray):
    """The model context of the shadow's rows `rows` (positions in the training rows) minus `removed`."""
    keep = np.zeros(len(shadow_set.train_users), bool)
    keep[rows[~removed]] = True
    return shadow_set.context_of(keep)
