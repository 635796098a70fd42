"""The base of the next-basket models: a score for every item from a user's history baskets.

A batch is `erase_jax.data.baskets.basket_batch`'s dict (history occurrences `items`/`baskets`,
`lengths`, `n_baskets`, `targets`, `users`, `weight`); a query is the same dict without
`targets` and `weight`. Padding is item `n_items` and basket `max_history_baskets`; a model
never gives the padding item a score (scores are [b, n_items]).

Default loss (DNNTSP's): the multi-label soft-margin loss, i.e. per row the mean over all
n_items columns of the binary cross-entropy of sigmoid(score) against the row's multi-hot
target basket (PyTorch `MultiLabelSoftMarginLoss`), weighted-mean over rows. The original's
loss also counts its padding column as a negative (next-basket spec 2.1); here the padding
item is not a column. A model with another loss (Sets2Sets) overrides `loss` and declares no
Gauss-Newton hook (`output_loss = None`).
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import struct

from erase_jax.data.baskets import BasketRows, bucket_shapes, multi_hot, rows_for_width
from erase_jax.models.nbr import row_chunks


@struct.dataclass
class BasketShape:
    """Context of a basket model that needs only the sizes of its data."""

    n_items: int = struct.field(pytree_node=False)
    max_history_baskets: int = struct.field(pytree_node=False)


class BasketModel:
    """Base of the NBR models: the task, the default loss, and the knobs the methods read
    (`erase_jax.models.base`). A model defines `logits(params, context, query, key, n_steps)`
    [b, n_items] (dropout when `key` is not None) and `init(key, context)`."""

    task: ClassVar[str] = "NBR"
    trainable: ClassVar[bool] = True
    output_loss: ClassVar[str | None] = "multilabel_logistic"
    influence_targets: ClassVar[tuple[tuple[str, ...], ...] | None] = None
    user_rows_are_local: ClassVar[bool] = False
    prefers_gauss_newton: ClassVar[bool] = True
    newton_damping: ClassVar[dict[str, float]] = {"gauss_newton": 1e-2, "hessian": 0.01}
    scif_damping: ClassVar[float | None] = 1.0
    representation_paths: ClassVar[tuple[tuple[str, ...], ...] | None] = None

    def prepare(self, train: BasketRows, capacity: int | None = None) -> BasketShape:
        del capacity
        return BasketShape(train.n_items, train.max_history_baskets)

    def epoch_context(self, context, key: jax.Array):
        del key
        return context

    def logits(self, params, context, query: dict[str, jax.Array], key: jax.Array | None = None,
               n_steps: int | None = None) -> jax.Array:
        """Scores [b, n_items] of the query's histories; `n_steps` a static bound on their baskets
        (None: min(history width, max_history_baskets))."""
        raise NotImplementedError

    def scores(self, params, context, query: dict[str, jax.Array]) -> jax.Array:
        return self.logits(params, context, query, None)

    def output_loss_parts(self, params, context, batch: dict[str, jax.Array], key: jax.Array, n_steps: int | None = None):
        """(logits [b, n_items], row weights, None): `loss` is the weighted mean over rows of the
        multi-label soft-margin loss of these logits; the Gauss-Newton hook."""
        return self.logits(params, context, batch, key, n_steps), batch["weight"], None

    def loss(self, params, context, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
        """`loss_at` on the batch: a training batch with a "bucket" at its bucket's shape
        (`bucketed_loss`), a batch larger than one chunk in chunks of rows sorted by history length
        (`row_chunks.chunked_loss`, the unlearning methods' padded row sets), else in one piece."""
        if "bucket" in batch:
            return bucketed_loss(self.loss_at, params, context, batch, key)
        if row_chunks.is_large(batch, context.max_history_baskets):
            return row_chunks.chunked_loss(self.loss_at, params, context, batch, key)
        return self.loss_at(params, context, batch, key, None)

    def chunked_rows(self, context, batch: dict[str, jax.Array]) -> row_chunks.RowChunks | None:
        """The batch in chunks for the curvature products (`row_chunks.RowChunks`), None when it
        fits one chunk."""
        if not row_chunks.is_large(batch, context.max_history_baskets):
            return None
        return row_chunks.RowChunks.of(batch, context.max_history_baskets)

    def loss_at(self, params, context, batch: dict[str, jax.Array], key, n_steps: int | None) -> jax.Array:
        """The weighted mean over rows of the multi-label soft-margin loss (module docstring)."""
        logits = self.logits(params, context, batch, key, n_steps)
        return weighted_mean(multilabel_soft_margin(logits, multi_hot(batch["targets"], logits.shape[-1])), batch["weight"])

    def representation(self, params, context, batch: dict[str, jax.Array], key=None) -> jax.Array:
        """The user's representation whose inner products give the scores (Fanchuan); models override."""
        return self.logits(params, context, batch, key)


def bucketed_loss(loss_at, params, context, batch: dict[str, jax.Array], key) -> jax.Array:
    """`loss_at(params, context, cut, key, n_steps)` at the batch's bucket shape, differentiable once.

    Training epochs (`erase_jax.batching.baskets`) pad every batch to the widest history and
    give its bucket, an index into `bucket_shapes(width, context.max_history_baskets)`;
    `lax.switch` runs the loss on the history columns of the bucket's width with the bucket's
    step count as the static bound on baskets (histories are left-aligned, so cutting trailing
    padding changes nothing), and on the batch's first `rows_for_width` rows unless the batch is
    "mixed" (the batcher puts a wide bucket's examples there, the rest is padding of weight 0,
    so the weighted mean is unchanged). Each branch compiles once.

    Each branch computes its loss AND its gradient (a custom VJP whose residual is the
    gradient): differentiating through `lax.switch` itself would make every branch carry the
    union of all branches' residuals, zero-filled, so that every step cost what the widest
    branch's does (docs/notes/2026-12-07-next-basket.md). Training needs first derivatives only; the
    unlearning methods' batches carry no bucket and take the plain path (HVPs included).
    """
    shapes = bucket_shapes(batch["items"].shape[-1], context.max_history_baskets)
    n_rows = batch["items"].shape[0]
    mixed = "mixed" in batch
    inputs = {name: values for name, values in batch.items() if name not in ("bucket", "mixed")}

    def at_shape(width, steps):
        rows = n_rows if mixed else rows_for_width(n_rows, width)

        def value_and_grad(params, context, inputs, key):
            cut = {name: values[:rows] for name, values in inputs.items()}
            cut["items"], cut["baskets"] = cut["items"][:, :width], cut["baskets"][:, :width]
            return jax.value_and_grad(lambda p: loss_at(p, context, cut, key, steps))(params)

        return value_and_grad

    branches = [at_shape(w, t) for w, t in shapes]

    @jax.custom_vjp
    def loss(params, context, inputs, key):
        return jax.lax.switch(batch["bucket"], branches, params, context, inputs, key)[0]

    def forward(params, context, inputs, key):
        value, grad = jax.lax.switch(batch["bucket"], branches, params, context, inputs, key)
        return value, grad

    def backward(grad, cotangent):
        return jax.tree.map(lambda g: cotangent * g, grad), None, None, None

    loss.defvjp(forward, backward)
    return loss(params, context, inputs, key)


def multilabel_soft_margin(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per row: mean over columns of -[y log sigmoid(z) + (1 - y) log sigmoid(-z)]."""
    return jnp.mean(-(targets * jax.nn.log_sigmoid(logits) + (1.0 - targets) * jax.nn.log_sigmoid(-logits)), axis=-1)


def weighted_mean(values: jax.Array, weight: jax.Array) -> jax.Array:
    return jnp.sum(weight * values) / jnp.maximum(jnp.sum(weight), 1e-12)
