"""A next-basket model asked by user id, each user's history scored at its own bucket's width.

The protocol's per-user measures (exposure, agreement, forgetting) ask a model about user ids,
inside jitted, blocked loops (`erase_jax.evaluators.scoring`), the way a CF model is asked.
`UserHistoryQueries` answers for a basket model: a user's query is the stored test history of
that user. Histories are stored at one width (the longest), but most are far shorter (on
Ta-Feng the median test history has 31 item occurrences in 5 baskets, the longest 480 in 48),
so scoring every user at the stored width costs about 28 times the work of the bucketed
evaluation (`erase_jax.evaluators.basket_ranking`). Here the asked users are sorted by history
length, cut into fixed chunks, and each chunk runs at the smallest (width, steps) of
`erase_jax.models.nbr.row_chunks.chunk_shapes` that holds all of its histories (`lax.switch` over
the shapes, each branch compiled once; histories are left-aligned, so cutting trailing padding
changes nothing); the scores are put back in the asked order. Shapes stay static, so the
same compiled program serves every checkpoint and every set of users of a given size.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from erase_jax.models.nbr.row_chunks import chunk_bucket, chunk_buckets  # noqa: F401 (chunk_buckets: re-exported)

QUERY_CELLS = 1024 * 64 * 8  # user queries scored at once x history width x basket steps


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
        shapes = chunk_buckets(width, max_steps)[0]
        order = jnp.argsort(histories["lengths"][users], stable=True)

        def at_shape(w, t):
            def run(h):
                cut = dict(h, items=h["items"][:, :w], baskets=h["baskets"][:, :w])
                return self.model.logits(params, inner, cut, None, t)

            return run

        branches = [at_shape(w, t) for w, t in shapes]

        def score(ids):
            h = _gather(histories, ids)
            return jax.lax.switch(chunk_bucket(h["lengths"], h["n_baskets"], width, max_steps), branches, h)

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
