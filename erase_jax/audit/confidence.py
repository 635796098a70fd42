"""The observation a membership test reads: the logit-scaled confidence of a (user, item) pair.

LiRA (Carlini et al. 2022, section 4, eq. 4): phi(p) = log(p / (1 - p)), p the model's
probability of the true label; its distribution over shadows is close to Gaussian. For a
recommender (spec A5) p is the softmax, over ALL items, of the user's scores at the pair's
item, with nothing masked (the same everywhere: target, shadows, every method):

    phi(u, i) = log p - log(1 - p) = s_ui - logsumexp_{j != i} s_uj,

computed in that second form, which is exact and stable (no 1 - p underflow). The original's
RULI evaluator used log p without the (1 - p) term and without any masking either; RMIA
(`rmia.py`) reads log p itself (`log_probability`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def logit_confidence(scores: jax.Array, items: jax.Array) -> jax.Array:
    """[P]: phi of row p's item `items[p]` under the score row `scores[p]` ([P, n_items])."""
    own = jnp.take_along_axis(scores, items[:, None], axis=1)[:, 0]
    others = scores.at[jnp.arange(scores.shape[0]), items].set(-jnp.inf)
    return own - jax.nn.logsumexp(others, axis=1)


def log_probability(scores: jax.Array, items: jax.Array) -> jax.Array:
    """[P]: log p of row p's item `items[p]`, p the softmax over all items of `scores[p]`."""
    return jnp.take_along_axis(scores, items[:, None], axis=1)[:, 0] - jax.nn.logsumexp(scores, axis=1)


OBSERVATIONS = {"phi": logit_confidence, "log_p": log_probability}


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def stacked_observation(model, stacked_params, context, users: jax.Array, items: jax.Array, kind: str = "phi",
                        context_axis: int | None = None) -> jax.Array:
    """float32 [K, P]: an observation (`OBSERVATIONS`: phi or log p) of every audited pair
    (users[p], items[p]) under each of K stacked parameter sets (shadows), one vmapped call;
    `context_axis` 0: one model context per shadow, stacked (a graph model's), None: one for all."""
    observe = OBSERVATIONS[kind]

    def one(params, context):
        return observe(model.scores(params, context, {"users": users}), items)

    return jax.vmap(one, in_axes=(0, context_axis))(stacked_params, context)


def stacked_confidence(model, stacked_params, context, users: jax.Array, items: jax.Array) -> jax.Array:
    """float32 [K, P]: phi of every audited pair under each of K stacked parameter sets."""
    return stacked_observation(model, stacked_params, context, users, items, "phi")
