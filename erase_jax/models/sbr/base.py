"""The base of the session-based models: CE over all items on a sequence representation."""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from erase_jax.batching.sequences import bucket_widths
from erase_jax.data.sequences import SequenceRows


@struct.dataclass
class SequenceShape:
    """Context of a sequence model that needs only the sizes of its data."""

    n_items: int = struct.field(pytree_node=False)
    max_length: int = struct.field(pytree_node=False)


class SequenceModel:
    """Base of the SBR models: CE over all items on a sequence representation.

    A model defines `network(context, init_key)`, its Flax module, whose call on (items [n, L],
    lengths [n], dropout_key) is the sequence representation [n, d] (dropout active when the
    key is not None) and whose parameters hold the item embedding at "item_embedding", row
    `n_items` being the padding. `init` and `represent` are the module's `init` and `apply`;
    the parameters are the plain pytree `init` returns, {"params": {...}}. Scores are the inner
    products of the representation with `output_items` [n_items, d], as in RecBole's
    `full_sort_predict`; the padding id never enters them (RecBole scores its pad item 0 and
    masks it later).
    """

    task: ClassVar[str] = "SBR"
    trainable: ClassVar[bool] = True
    output_loss: ClassVar[str] = "softmax_cross_entropy"  # what `loss` is of `output_loss_parts`' outputs
    # What the unlearning methods ask of a model (`erase_jax.models.base`). A model sets
    # `influence_targets` to the original's SCIF `target_params` (item embedding, output layers);
    # None moves every parameter. Over these blocks the exact Hessian is strongly indefinite
    # (CG met negative curvature within 0-2 iterations), hence Gauss-Newton for "auto", SCIF's
    # larger damping and the removal step's 1e-2 (damping sweeps: docs/notes).
    influence_targets: ClassVar[tuple[tuple[str, ...], ...] | None] = None
    user_rows_are_local: ClassVar[bool] = False
    prefers_gauss_newton: ClassVar[bool] = True
    newton_damping: ClassVar[dict[str, float]] = {"gauss_newton": 1e-2, "hessian": 0.01}
    scif_damping: ClassVar[float | None] = 1.0
    representation_paths: ClassVar[tuple[tuple[str, ...], ...] | None] = None  # the sequence encoder reads all
    # Causal: the representation at position t depends on positions <= t only, so one pass gives
    # every prefix's (`represent_positions`; `sequence.objective: all_positions` needs it).
    causal: ClassVar[bool] = False

    def prepare(self, train: SequenceRows, capacity: int | None = None) -> SequenceShape:
        del capacity
        return SequenceShape(train.n_items, train.max_length)

    def epoch_context(self, context, key: jax.Array):
        del key
        return context

    def network(self, context: SequenceShape, init_key: jax.Array | None = None) -> nn.Module:
        """The model's Flax module; `init_key` (only when initialising) draws its parameters."""
        raise NotImplementedError

    def init(self, key: jax.Array, context: SequenceShape):
        """{"params": {...}}: every tensor drawn from its key of `jax.random.split(key, n)`
        (`erase_jax.models.layers.split_keys`). Flax's `lazy_init` creates them from the
        shapes of a one-item input, without running the forward on it."""
        items, lengths = jax.ShapeDtypeStruct((1, 1), jnp.int32), jax.ShapeDtypeStruct((1,), jnp.int32)
        return self.network(context, key).lazy_init(key, items, lengths, None)

    def represent(self, params, context, items: jax.Array, lengths: jax.Array, key: jax.Array | None) -> jax.Array:
        """The representation [n, d] of the prefixes `items` [n, L] of `lengths` (dropout when `key`)."""
        return self.network(context).apply(params, items, lengths, key)

    def represent_positions(self, params, context, items: jax.Array, lengths: jax.Array, key: jax.Array | None) -> jax.Array:
        """[n, L, d]: at position t the representation of the prefix items[:, :t + 1] (causal
        models only; positions at or past `lengths` are unspecified)."""
        raise NotImplementedError(f"{type(self).__name__} is not causal: it has no all-positions representation")

    def output_items(self, params) -> jax.Array:
        """The item embeddings [n_items, d] the representation is scored against (no padding row)."""
        return params["params"]["item_embedding"][:-1]

    def representation(self, params, context, batch: dict[str, jax.Array], key=None) -> jax.Array:
        """The sequence representation of the batch's prefixes (RecBole's `forward`; dropout when `key`)."""
        return self.represent(params, context, batch["items"], batch["lengths"], key)

    def scores(self, params, context, query: dict[str, jax.Array]) -> jax.Array:
        representation = self.represent(params, context, query["items"], query["lengths"], None)
        return representation @ self.output_items(params).T

    def loss(self, params, context, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
        """Weighted mean cross-entropy of the next item over all items (RecBole `CE` loss).

        A batch of all-positions rows (targets and weight [n, L], `erase_jax.data.positions`)
        gives the weighted mean over its (position, target) pairs: with unit weights, the mean of
        the prefix rows' losses of the same pairs.
        """
        if batch["targets"].ndim == 2:
            return self._all_positions_loss(params, context, batch, key)
        logits, weight, _ = self.output_loss_parts(params, context, batch, key)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(log_p, batch["targets"][:, None], axis=1)[:, 0]
        return jnp.sum(weight * nll) / jnp.maximum(jnp.sum(weight), 1e-12)

    def output_loss_parts(self, params, context, batch: dict[str, jax.Array], key: jax.Array):
        """(logits [n, n_items], row weights, None): `loss` is the weighted mean softmax cross-entropy
        of these logits at batch["targets"], with no penalty term. A bucketed batch runs at its
        bucket's width (`lax.switch`). Also the hook of the Gauss-Newton curvature
        (`erase_jax.unlearn.influence.gauss_newton_operator`), which needs the logits apart.
        """
        if batch["targets"].ndim == 2:  # all-positions rows: one output per position, full width
            representation = self.represent_positions(params, context, batch["items"], batch["lengths"], key)
            return representation.reshape(-1, representation.shape[-1]) @ self.output_items(params).T, batch["weight"].reshape(-1), None
        widths = bucket_widths(batch["items"].shape[-1])

        def at_width(width):
            return lambda params, batch, key: self.represent(params, context, batch["items"][:, :width], batch["lengths"], key)

        if "bucket" not in batch:
            representation = at_width(batch["items"].shape[-1])(params, batch, key)
        else:
            representation = jax.lax.switch(batch["bucket"], [at_width(w) for w in widths], params, batch, key)
        return representation @ self.output_items(params).T, batch["weight"], None

    def _all_positions_loss(self, params, context, batch: dict[str, jax.Array], key: jax.Array) -> jax.Array:
        """`loss` of all-positions rows; a bucketed batch runs at its bucket's width (`lax.switch`)."""
        widths = bucket_widths(batch["items"].shape[-1])

        def at_width(width):
            def weighted_nll(params, batch, key):
                representation = self.represent_positions(params, context, batch["items"][:, :width], batch["lengths"], key)
                log_p = jax.nn.log_softmax(representation @ self.output_items(params).T, axis=-1)
                nll = -jnp.take_along_axis(log_p, batch["targets"][:, :width, None], axis=2)[..., 0]
                weight = batch["weight"][:, :width]
                return jnp.sum(weight * nll), jnp.sum(weight)

            return weighted_nll

        if "bucket" not in batch:
            total, weight = at_width(batch["items"].shape[-1])(params, batch, key)
        else:
            total, weight = jax.lax.switch(batch["bucket"], [at_width(w) for w in widths], params, batch, key)
        return total / jnp.maximum(weight, 1e-12)
