"""A next-basket model asked by user id, each user's history scored at its own bucket's width.

The protocol's per-user measures (exposure, agreement, forgetting) ask a model about user ids,
inside jitted, blocked loops (`erase_jax.evaluators.scoring`), the way a CF model is asked.
`UserHistoryQueries` answers for a basket model: a user's query is the stored test history of
that user. Histories are stored at one width (the longest), but most are far shorter (on
Ta-Feng the median test history has 31 item occurrences in 5 baskets, the longest 480 in 48),
so scoring every user at the stored width costs about 28 times the work of the bucketed
evaluation (`erase_jax.evaluators.basket_ranking`). Here the asked users are sorted by history
length, cut into fixed chunks, and each chunk runs at the smallest (width, steps) bucket of
`erase_jax.data.baskets.bucket_shapes` that holds all of its histories (`lax.switch` over the
buckets, each branch compiled once; histories are left-aligned, so cutting trailing padding
changes nothing); the scores are put back in the asked order. Shapes stay static, so the
same compiled program serves every checkpoint and every set of users of a given size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.data.baskets import bucket_shapes, occurrence_widths, step_widths

QUERY_CELLS = 1024 * 64 * 8  # user queries scored at once x history width x basket steps


def chunk_buckets(width: int, max_steps: int) -> tuple[tuple[tuple[int, int], ...], np.ndarray, np.ndarray, np.ndarray]:
    """(bucket shapes, widths ladder, steps ladder, table [n_widths, n_steps] -> shape index).

    A chunk whose longest history has length L and most baskets B runs at width
    w = widths[searchsorted(widths, L)] and steps t = steps[searchsorted(steps, B)] (B <= L <= w,
    so t <= w whenever w is on the ladder below `max_steps`; otherwise t <= max_steps): the
    table maps (w, t) to the index of that shape in `bucket_shapes(width, max_steps)`.
    """
    shapes = bucket_shapes(width, max_steps)
    widths, steps = np.asarray(occurrence_widths(width)), np.asarray(step_widths(max_steps))
    index = {shape: i for i, shape in enumerate(shapes)}
    table = np.zeros((len(widths), len(steps)), np.int32)
    for wi, w in enumerate(widths):
        allowed = [s for s in steps if (int(w), int(s)) in index]
        for ti, t in enumerate(steps):
            fitting = [s for s in allowed if s >= t] or allowed[-1:]  # t > w cannot happen (B <= w)
            table[wi, ti] = index[(int(w), int(fitting[0]))]
    return shapes, widths, steps, table


@dataclasses.dataclass(frozen=True)
class UserHistoryQueries:
    """A basket model asked by user id (module doc).

    Its context is (the model's context, a batch of every user's stored test history), traced
    arrays, so one compilation serves every checkpoint; `scores` takes {"users": ids} like a CF
    model, which lets the exposure measures and top-k lists work unchanged.
    """

    model: Any

    def scores(self, params, context, query) -> jax.Array:
        """Scores [n, n_items] of the users' stored histories, in the order asked."""
        inner, histories = context
        users = query["users"]
        n, width = users.shape[0], histories["items"].shape[1]
        max_steps = min(width, getattr(inner, "max_history_baskets", width))
        chunk = max(1, min(n, QUERY_CELLS // (width * max_steps)))
        n_chunks = -(-n // chunk)
        if not hasattr(self.model, "logits"):  # not a basket model: one shape
            return self._chunked(lambda ids: self.model.scores(params, inner, _gather(histories, ids)), users, chunk, n_chunks)
        shapes, widths, steps, table = chunk_buckets(width, max_steps)
        order = jnp.argsort(histories["lengths"][users], stable=True)
        widths, steps, table = jnp.asarray(widths), jnp.asarray(steps), jnp.asarray(table)

        def at_shape(w, t):
            def run(h):
                cut = dict(h, items=h["items"][:, :w], baskets=h["baskets"][:, :w])
                return self.model.logits(params, inner, cut, None, t)

            return run

        branches = [at_shape(w, t) for w, t in shapes]

        def score(ids):
            h = _gather(histories, ids)
            wi = jnp.searchsorted(widths, jnp.maximum(h["lengths"].max(), 1))
            ti = jnp.minimum(jnp.searchsorted(steps, jnp.maximum(h["n_baskets"].max(), 1)), len(steps) - 1)
            return jax.lax.switch(table[wi, ti], branches, h)

        ranked = self._chunked(score, users[order], chunk, n_chunks)
        return jnp.zeros_like(ranked).at[order].set(ranked)

    @staticmethod
    def _chunked(score, users, chunk: int, n_chunks: int) -> jax.Array:
        """`score` over `users` in `n_chunks` chunks of `chunk` (the tail padded with the first user)."""
        n = users.shape[0]
        padded = jnp.concatenate([users, jnp.broadcast_to(users[:1], (n_chunks * chunk - n,))]).reshape(n_chunks, chunk)
        return jax.lax.map(score, padded).reshape(n_chunks * chunk, -1)[:n]


def _gather(histories: dict, ids) -> dict:
    return {name: values[ids] for name, values in histories.items()}
