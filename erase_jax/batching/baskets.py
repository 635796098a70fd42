"""Width-bucketed batches of next-basket examples, one epoch at a time on device.

Examples (`erase_jax.data.baskets.BasketRows`) store their histories as item occurrences
padded to the widest history. Most histories are far narrower and shorter than the widest
(docs/notes/2026-12-07-next-basket.md), so each example belongs to
the smallest (occurrence width, basket steps) of `bucket_shapes` that holds it and a batch runs
at its bucket's shape: `lax.scan` needs one shape for every step, so batches stay
[batch, max_length] and carry their bucket index, and a model's loss picks the shape with
`lax.switch` (`erase_jax.models.nbr.base.at_bucket_shape`), whose branches compile once each.
Without `mix_lengths` (the default) a batch never mixes buckets and only the order of the
batches is shuffled; a bucket wider than `FULL_BATCH_WIDTH` occurrences puts fewer examples in a
batch (`rows_for_width`: 32 at width 128, 8 at 512 for batches of 64), its first rows, and the
model runs on those rows only, so wide histories cost what a full batch of narrow ones does
(and fit in memory: a full batch of the widest Ta-Feng histories did not). With
`mix_lengths` (the original's shuffle of all examples) a batch mixes histories and runs, whole,
at (its widest, its longest) bucket.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.data.baskets import BasketRows, bucket_index, bucket_shapes, rows_for_width


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BasketBatcher:
    """One epoch of [batch, max_length] example batches (module doc).

    Examples are stored sorted by bucket, plus one all-padding example at the end (index
    n_rows, weight 0) that fills the last batch of every bucket. The host draws the order
    (`shuffled_order`, from static bucket sizes only); gathering runs under jit.
    """

    users: jax.Array  # int32 [n_rows + 1]
    items: jax.Array  # int32 [n_rows + 1, max_length]
    baskets: jax.Array  # int32 [n_rows + 1, max_length]
    lengths: jax.Array  # int32 [n_rows + 1]
    n_baskets: jax.Array  # int32 [n_rows + 1]
    targets: jax.Array  # int32 [n_rows + 1, K]
    target_sizes: jax.Array  # int32 [n_rows + 1]
    row_weight: jax.Array  # float32 [n_rows + 1]
    row_bucket: jax.Array  # int32 [n_rows + 1]: index into bucket_shapes(max_length, max_steps)
    row_width: jax.Array  # int32 [n_rows + 1]: the bucket's width
    row_steps: jax.Array  # int32 [n_rows + 1]: the bucket's steps
    bucket_sizes: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))
    shapes: tuple[tuple[int, int], ...] = dataclasses.field(metadata=dict(static=True))
    batch_size: int = dataclasses.field(metadata=dict(static=True))
    mix_lengths: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @classmethod
    def build(cls, train: BasketRows, batch_size: int, mix_lengths: bool = False) -> BasketBatcher:
        if len(train) == 0:
            raise ValueError("no training examples: no user has enough baskets (basket.min_baskets)")
        width = train.max_length
        shapes = bucket_shapes(width, train.max_history_baskets)
        buckets = bucket_index(train.lengths, train.n_baskets, width, train.max_history_baskets)
        order = np.argsort(buckets, kind="stable")
        shape_of = np.asarray(shapes, np.int32)[np.r_[buckets[order], 0]]
        items = np.full((len(train) + 1, width), train.n_items, np.int32)
        baskets = np.full((len(train) + 1, width), train.max_history_baskets, np.int32)
        targets = np.full((len(train) + 1, train.targets.shape[1]), train.n_items, np.int32)
        m = min(width, train.items.shape[1])
        items[:-1, :m], baskets[:-1, :m], targets[:-1] = train.items[order, :m], train.baskets[order, :m], train.targets[order]
        return cls(
            users=jnp.asarray(np.r_[train.users[order], 0].astype(np.int32)),
            items=jnp.asarray(items),
            baskets=jnp.asarray(baskets),
            lengths=jnp.asarray(np.r_[train.lengths[order], 0].astype(np.int32)),
            n_baskets=jnp.asarray(np.r_[train.n_baskets[order], 0].astype(np.int32)),
            targets=jnp.asarray(targets),
            target_sizes=jnp.asarray(np.r_[train.target_sizes[order], 0].astype(np.int32)),
            row_weight=jnp.asarray(np.r_[np.ones(len(train)), 0.0].astype(np.float32)),
            row_bucket=jnp.asarray(np.r_[buckets[order], 0].astype(np.int32)),
            row_width=jnp.asarray(shape_of[:, 0]),
            row_steps=jnp.asarray(shape_of[:, 1]),
            bucket_sizes=tuple(int(c) for c in np.bincount(buckets, minlength=len(shapes))),
            shapes=shapes,
            batch_size=batch_size,
            mix_lengths=mix_lengths,
        )

    @property
    def n_rows(self) -> int:
        return sum(self.bucket_sizes)

    @property
    def n_batches(self) -> int:
        if self.mix_lengths:
            return -(-self.n_rows // self.batch_size)
        return sum(-(-size // rows_for_width(self.batch_size, width)) for (width, _), size in zip(self.shapes, self.bucket_sizes, strict=True))

    def shuffled_order(self, seed: int, epoch: int) -> np.ndarray:
        """Example indices [n_batches * batch_size]: shuffled within buckets, batches shuffled
        (with `mix_lengths`: one shuffle of all examples)."""
        rng = np.random.default_rng([seed, epoch])
        if self.mix_lengths:
            order = np.full(self.n_batches * self.batch_size, self.n_rows, np.int32)
            order[: self.n_rows] = rng.permutation(self.n_rows)
            return order
        batches, start = [], 0
        for (width, _), size in zip(self.shapes, self.bucket_sizes, strict=True):
            rows = start + rng.permutation(size)
            per_batch = rows_for_width(self.batch_size, width)
            padded = np.full((-(-size // per_batch), self.batch_size), self.n_rows, np.int64)
            for b in range(len(padded)):
                chunk = rows[b * per_batch : (b + 1) * per_batch]
                padded[b, : len(chunk)] = chunk
            batches.extend(padded)
            start += size
        batches = np.asarray(batches, np.int32).reshape(-1, self.batch_size)
        return batches[rng.permutation(len(batches))].reshape(-1)

    def epoch(self, key: jax.Array, order: jax.Array) -> dict[str, jax.Array]:
        del key  # nothing is sampled: the losses score every item
        shape = (self.n_batches, self.batch_size)
        return {
            "users": self.users[order].reshape(shape),
            "items": self.items[order].reshape(*shape, -1),
            "baskets": self.baskets[order].reshape(*shape, -1),
            "lengths": self.lengths[order].reshape(shape),
            "n_baskets": self.n_baskets[order].reshape(shape),
            "targets": self.targets[order].reshape(*shape, -1),
            "target_sizes": self.target_sizes[order].reshape(shape),
            "weight": self.row_weight[order].reshape(shape),
            "bucket": self.batch_buckets(order),
            **({"mixed": jnp.zeros(self.n_batches, bool)} if self.mix_lengths else {}),  # rows are not cut
        }

    def batch_buckets(self, order: jax.Array) -> jax.Array:
        """The bucket of each batch: its rows' own (bucket-pure batches), else the bucket of
        (the widest width, the most steps) among its rows (`bucket_shapes`)."""
        shape = (self.n_batches, self.batch_size)
        if not self.mix_lengths:
            return jnp.max(self.row_bucket[order].reshape(shape), axis=1)
        widths = sorted({w for w, _ in self.shapes})
        steps = sorted({t for _, t in self.shapes})
        lookup = np.zeros((len(widths), len(steps)), np.int32)
        for index, (w, t) in enumerate(self.shapes):
            lookup[widths.index(w), steps.index(t)] = index
        width = jnp.max(self.row_width[order].reshape(shape), axis=1)
        step = jnp.max(self.row_steps[order].reshape(shape), axis=1)
        return jnp.asarray(lookup)[jnp.searchsorted(jnp.asarray(widths), width), jnp.searchsorted(jnp.asarray(steps), step)]
