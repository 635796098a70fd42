"""Device-side construction of one epoch of training batches.

A batcher turns a row order (drawn on the host, one small transfer per epoch) and a PRNG
key into a whole epoch of fixed-shape batches stacked along a leading axis, under `jit`:
gathering the rows and sampling negatives happen on device, so the trainer can `lax.scan`
over the batches without touching the host. The last partial batch is padded and its
padding rows get weight 0.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.data.cf import CFTrainData

SAMPLERS = ("rows", "users")
BITMAP_LIMIT_BYTES = 256 * 2**20  # above this the membership test searches sorted lists instead


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PositiveIndex:
    """Each user's training items as a membership test on device.

    A bitmap (one bit per user x item, packed in uint32 words) answers with one gather; it
    is used while it fits in `BITMAP_LIMIT_BYTES` (ML-1M: 2.8 MB). Larger data fall back to
    a binary search over each user's sorted items (CSR), log2(n_pairs) gathers per query.
    """

    offsets: jax.Array  # int32 [n_users + 1]
    items: jax.Array  # int32 [n_pairs], sorted within each user
    bitmap: jax.Array | None  # uint32 [n_users, ceil(n_items / 32)], or None

    @classmethod
    def build(cls, n_users: int, users: np.ndarray, items: np.ndarray, n_items: int | None = None) -> PositiveIndex:
        order = np.lexsort((items, users))
        counts = np.bincount(users, minlength=n_users)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
        bitmap = None
        n_items = int(items.max(initial=0)) + 1 if n_items is None else n_items
        n_words = -(-n_items // 32)
        if n_users * n_words * 4 <= BITMAP_LIMIT_BYTES:
            words = np.zeros(n_users * n_words, np.uint32)
            flat = users.astype(np.int64) * n_words + (items >> 5)
            np.bitwise_or.at(words, flat, (np.uint32(1) << (items & 31).astype(np.uint32)))
            bitmap = jnp.asarray(words.reshape(n_users, n_words))
        return cls(jnp.asarray(offsets), jnp.asarray(items[order].astype(np.int32)), bitmap)

    def contains(self, users: jax.Array, items: jax.Array) -> jax.Array:
        """Whether `items[j]` is one of `users[j]`'s positives, elementwise."""
        if self.bitmap is not None:
            words = self.bitmap[users, items >> 5]
            return ((words >> (items & 31).astype(jnp.uint32)) & 1).astype(bool)
        return self._search(users, items)

    def _search(self, users: jax.Array, items: jax.Array) -> jax.Array:
        """Vectorised binary search of `items[j]` among `users[j]`'s sorted positives."""
        lo, hi = self.offsets[users], self.offsets[users + 1]
        # ceil(log2(n_pairs + 1)) halvings always close the widest interval.
        steps = max(int(self.items.shape[0]).bit_length(), 1)

        def halve(_, bounds):
            lo, hi = bounds
            mid = (lo + hi) // 2
            go_right = (lo < hi) & (self.items[jnp.minimum(mid, self.items.shape[0] - 1)] < items)
            return jnp.where(go_right, mid + 1, lo), jnp.where(go_right | (lo >= hi), hi, mid)

        lo, hi = jax.lax.fori_loop(0, steps, halve, (lo, hi))
        found = self.items[jnp.minimum(lo, self.items.shape[0] - 1)] == items
        return found & (lo < self.offsets[users + 1])

    def without_bitmap(self) -> PositiveIndex:
        """The same index answering by binary search (for tests of the large-data path)."""
        return dataclasses.replace(self, bitmap=None)


@dataclasses.dataclass(frozen=True)
class UserUniformRows:
    """Rows grouped by user, on the host: the "users" sampler's draw.

    `draw(rng, n)` gives n row positions as the NGCF-family TF code the RecEraser paper
    trained with samples them: a uniformly drawn user, then one of that user's rows
    uniformly, so every user weighs the same in the loss whatever their activity. The users
    come from back-to-back permutations of the users who have rows, so n consecutive draws
    hold no user twice except where two permutations meet (the original draws each batch's
    users without replacement). Used by `CFBatcher` and by each shard of `unlearn.shards`.
    """

    offsets: np.ndarray  # [n_users + 1] into `rows`
    rows: np.ndarray  # row positions grouped by user
    active: np.ndarray  # users with at least one row

    @classmethod
    def build(cls, users: np.ndarray, n_users: int) -> UserUniformRows:
        counts = np.bincount(users, minlength=n_users)
        return cls(np.concatenate([[0], np.cumsum(counts)]), np.argsort(users, kind="stable").astype(np.int32),
                   np.flatnonzero(counts > 0))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        rounds = -(-n // len(self.active))
        users = np.concatenate([rng.permutation(self.active) for _ in range(rounds)])[:n]
        start, count = self.offsets[users], self.offsets[users + 1] - self.offsets[users]
        return self.rows[start + (rng.random(n) * count).astype(np.int64)]


# `user_draw` is host-only and never read under jit: it is left out of the pytree, so it
# neither travels to the device nor splits the compile cache (a batcher over other data of
# the same shapes reuses the compiled epoch). A batcher rebuilt from its leaves (inside a
# traced function) has it None, and `shuffled_order` then refuses to draw. The fields are
# listed because jax 0.10's inference would count a dropped field as data.
@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=("users", "items", "row_weight", "positives"),
    meta_fields=("n_items", "batch_size", "max_redraws", "sampler"),
    drop_fields=("user_draw",),
)
@dataclasses.dataclass(frozen=True)
class CFBatcher:
    """BPR-style batches: each training pair with one uniform negative the user never had.

    Negatives follow RecBole's uniform sampler for pairwise training: an item is redrawn
    while it is one of the user's training positives (here up to `max_redraws` times, after
    which a remaining collision is kept; with realistic densities that has probability
    density^max_redraws).

    Which rows an epoch holds is the host-side order's business (`shuffled_order`), by
    `sampler`: "rows" (RecBole) visits every training row once in a shuffled order; "users"
    (the RecEraser paper's code) draws as many rows as there are, user-uniformly
    (`UserUniformRows`). A row whose `row_weight` is 0 is still drawn, with weight 0.
    """

    users: jax.Array  # int32 [n_train]
    items: jax.Array  # int32 [n_train]
    row_weight: jax.Array  # float32 [n_train]; 0 for rows removed by unlearning
    positives: PositiveIndex
    n_items: int = dataclasses.field(metadata=dict(static=True))
    batch_size: int = dataclasses.field(metadata=dict(static=True))
    max_redraws: int = dataclasses.field(default=8, metadata=dict(static=True))
    sampler: str = dataclasses.field(default="rows", metadata=dict(static=True))
    user_draw: UserUniformRows | None = None  # the "users" sampler's index (`build` makes it)

    @classmethod
    def build(cls, train: CFTrainData, batch_size: int, max_redraws: int = 8, sampler: str = "rows") -> CFBatcher:
        if len(train) == 0:
            raise ValueError("no training interactions")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
        return cls(
            users=jnp.asarray(train.users, jnp.int32),
            items=jnp.asarray(train.items, jnp.int32),
            row_weight=jnp.ones(len(train), jnp.float32),
            positives=PositiveIndex.build(train.n_users, train.users, train.items, train.n_items),
            n_items=train.n_items,
            batch_size=batch_size,
            max_redraws=max_redraws,
            sampler=sampler,
            user_draw=UserUniformRows.build(train.users, train.n_users) if sampler == "users" else None,
        )

    @property
    def n_batches(self) -> int:
        return -(-self.users.shape[0] // self.batch_size)

    def shuffled_order(self, seed: int, epoch: int) -> np.ndarray:
        """The epoch's row order, drawn on the host and padded to whole batches.

        Shuffling on the host costs 10.6 ms for 650k rows plus one transfer per epoch; XLA's
        sort-based `jax.random.permutation` took 0.9 s for the same on 2 (busy) CPU cores.
        """
        n = self.users.shape[0]
        order = np.zeros(self.n_batches * self.batch_size, np.int32)
        rng = np.random.default_rng([seed, epoch])
        if self.sampler == "rows":
            order[:n] = rng.permutation(n)
        elif self.user_draw is None:
            raise ValueError('this "users" batcher has no host index (rebuilt from pytree leaves?): make it with CFBatcher.build')
        else:
            order[:n] = self.user_draw.draw(rng, n)
        return order

    def epoch(self, key: jax.Array, order: jax.Array) -> dict[str, jax.Array]:
        """All batches of one epoch in `order`, stacked: arrays [n_batches, batch_size]."""
        n = self.users.shape[0]
        weight = self.row_weight[order] * (jnp.arange(order.shape[0]) < n)
        users = self.users[order]
        batch = {
            "users": users,
            "pos": self.items[order],
            "neg": self.sample_negatives(key, users),
            "weight": weight.astype(jnp.float32),
        }
        return {name: value.reshape(self.n_batches, self.batch_size) for name, value in batch.items()}

    def sample_negatives(self, key: jax.Array, users: jax.Array) -> jax.Array:
        return sample_negatives(key, users, self.positives, self.n_items, self.max_redraws)


def sample_negatives(key, users, positives: PositiveIndex, n_items: int, max_redraws: int = 8) -> jax.Array:
    """One uniform item per user, redrawn while it is one of the user's positives."""

    def redraw(i, negatives):
        fresh = jax.random.randint(jax.random.fold_in(key, i + 1), users.shape, 0, n_items)
        return jnp.where(positives.contains(users, negatives), fresh, negatives)

    first = jax.random.randint(jax.random.fold_in(key, 0), users.shape, 0, n_items)
    return jax.lax.fori_loop(0, max_redraws, redraw, first)


@functools.partial(jax.jit, static_argnames=("n_items",))
def _negatives_for_rows(key, users, positives, n_items):
    return sample_negatives(key, users, positives, n_items)


def positive_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """The sorted distinct user * n_items + item keys of the positive pairs (`host_negatives`'s index)."""
    return np.unique(users.astype(np.int64) * n_items + items)


def host_negatives(rng: np.random.Generator, users: np.ndarray, keys: np.ndarray, n_items: int,
                   max_redraws: int = 8) -> np.ndarray:
    """`sample_negatives` on the host: one uniform item per user, redrawn (at most `max_redraws`
    times) while it is one of the user's positives (`keys`: `positive_keys`). A request's few
    thousand rows take well under a millisecond, where the device draw costs a compiled program
    of its own (seconds of XLA compilation per process)."""
    negatives = rng.integers(0, n_items, len(users))
    for _ in range(max_redraws):
        wanted = users.astype(np.int64) * n_items + negatives
        at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        positive = keys[at] == wanted
        if not positive.any():
            break
        negatives[positive] = rng.integers(0, n_items, int(positive.sum()))
    return negatives.astype(np.int32)


def bucket_size(n: int, minimum: int = 64) -> int:
    """The padded length for n rows: the next power of two (at least `minimum`)."""
    return max(minimum, 1 << max(int(n) - 1, 0).bit_length())


def cf_rows_batch(
    users: np.ndarray, items: np.ndarray, positives: PositiveIndex, n_items: int, key, size: int | None = None
) -> dict:
    """A flat padded CF batch (users/pos/neg/weight) of the given rows, negatives on device.

    The length is bucketed to a power of two (or `size`, at least the row count) so that
    whatever consumes it compiles once per bucket, not once per request.
    """
    rows = padded_rows(users, items, size)
    users_on_device = jax.device_put(rows["users"])
    return {"users": users_on_device, "pos": jax.device_put(rows["pos"]),
            "neg": _negatives_for_rows(key, users_on_device, positives, n_items), "weight": jax.device_put(rows["weight"])}


def padded_rows(users: np.ndarray, items: np.ndarray, size: int | None = None) -> dict[str, np.ndarray]:
    """Host arrays users / pos / weight of the given rows padded to `size` rows (default: their
    power-of-two bucket); padding rows are user 0, item 0, weight 0."""
    size = bucket_size(len(users)) if size is None else size
    if size < len(users):
        raise ValueError(f"padded size {size} is smaller than the {len(users)} rows")
    padded_users = np.zeros(size, np.int32)
    padded_items = np.zeros(size, np.int32)
    padded_users[: len(users)] = users
    padded_items[: len(items)] = items
    return {"users": padded_users, "pos": padded_items, "weight": (np.arange(size) < len(users)).astype(np.float32)}
