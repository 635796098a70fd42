"""The base of the collaborative-filtering models, and what they declare for the methods."""

from __future__ import annotations

from typing import ClassVar

import jax

from erase_jax.models.base import Batch, Context

USER_EMBEDDING = ("params", "user_embedding", "embedding")
ORIGINAL_NEWTON_DAMPING = 0.01  # the original's ceu_lambda / idea_damping


class CFModelBase:
    """Mixin for CF models: the task, the identity `epoch_context` hook, and the defaults of what
    the unlearning methods ask of a model (`erase_jax.models.base`).

    Learned CF models keep their user and item embeddings at `params["params"]["user_embedding"]
    ["embedding"]` (and `item_embedding`): SCIF moves the user table, and a user's query
    representation is its row. Damping of the removal Newton step (CEU, IDEA, GIF's CG, correct
    mode): 1e-4 with Gauss-Newton, the original's 0.01 with the exact Hessian, which is
    indefinite over all parameters of matrix factorisation (measured: docs/notes).
    """

    task: ClassVar[str] = "CF"
    influence_targets: ClassVar[tuple[tuple[str, ...], ...] | None] = (USER_EMBEDDING,)
    user_rows_are_local: ClassVar[bool] = False
    prefers_gauss_newton: ClassVar[bool] = False
    newton_damping: ClassVar[dict[str, float]] = {"gauss_newton": 1e-4, "hessian": ORIGINAL_NEWTON_DAMPING}
    scif_damping: ClassVar[float | None] = None
    representation_paths: ClassVar[tuple[tuple[str, ...], ...] | None] = (USER_EMBEDDING,)

    def epoch_context(self, context: Context, key: jax.Array) -> Context:
        del key
        return context

    def representation(self, params, context, batch: Batch, key=None) -> jax.Array:
        """The raw user-embedding rows of the batch's users (the original's `user_embedding(user_id)`)."""
        del context, key
        return params["params"]["user_embedding"]["embedding"][batch["users"]]


class NonLearnedCFModel(CFModelBase):
    """Mixin for CF models computed by `prepare` (Pop, ItemKNN, EASE, Random): no training step,
    a zero loss, empty parameters unless `init` is overridden, every parameter an influence target
    (there are no embeddings), and a user's representation is its score row (what Fanchuan
    contrasts). Unlearning one is exact: the protocol rebuilds its context without the removed rows.
    """

    influence_targets: ClassVar[None] = None
    representation_paths: ClassVar[None] = None
    trainable: ClassVar[bool] = False

    def representation(self, params, context, batch: Batch, key=None) -> jax.Array:
        del key
        return self.scores(params, context, {"users": batch["users"]})

    def init(self, key: jax.Array, context: Context):
        del key, context
        return {}

    def loss(self, params, context: Context, batch: Batch, key: jax.Array) -> jax.Array:
        del params, context, batch, key
        return jax.numpy.zeros((), jax.numpy.float32)
