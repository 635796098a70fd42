"""The request stream and the retain sampler of the sequential unlearning loop.

Unlearning-algorithms spec sections 5.2 (retain-user pool), 5.3 (ordering and batching),
5.4 step 7 (retain budget per method) and 5.5 (checkpoints); data-and-evaluation spec 4.3.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Iterator

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios import ForgetSet, quarter_checkpoints
from erase_jax.data.user_rows import UserRows

RETAIN_POOL_FACTOR = 3 * 32  # pool size = factor x number of requests (spec 5.2)
RETAIN_CAP_SHARE = 0.1  # at most 10 % of all interactions per request
_FIRST_CHUNK = 256  # pool entries looked at in one vectorised step; doubles per step




class RetainSampler:
    """Whole retain users drawn from one oversized, shuffled pool with a cursor (spec 5.2).

    The pool concatenates seeded permutations of all users until it holds at least
    `pool_factor * n_requests` entries (96 per request; 8x that for fanchuan, see
    `retain_pool_factor`). `sample` walks the cursor, skips excluded users (already unlearned,
    the current one included) and users without rows, and takes all rows of each user until
    at least `need` rows are collected. At the end of the pool it reshuffles the pool in
    place and starts again. Users scheduled for later requests may be drawn (as in the
    original). The state (pool, cursor, reshuffle count) is plain arrays, so a resumed run
    draws the same users.

    Which rows count: the original counts ALL rows of a retain user (train, valid and test)
    towards `need` and keeps only the user's training part afterwards. Pass
    `UserRows.from_rows(inter)` to reproduce that count, or the training rows
    (`UserRows.from_rows(inter, split.train)`) to count only what is trained on.

    Deliberate differences from the original: the generator is a seeded numpy `Generator`
    (the original uses numpy's global state), so the users drawn differ from the original's;
    each reshuffle uses a generator derived from (seed, reshuffle number), which keeps the
    state free of generator internals; within one call a user is never taken twice (the
    original can append a user again after a reshuffle), and `need` is lowered to the rows
    available, where the original would cycle forever.
    """

    def __init__(self, user_rows: UserRows, n_requests: int, seed: int, pool_factor: int = RETAIN_POOL_FACTOR):
        seed = operator.index(seed)
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        rng = np.random.default_rng(seed)
        n_copies = max(1, math.ceil(pool_factor * n_requests / max(user_rows.n_users, 1)))
        pool = np.concatenate([rng.permutation(user_rows.n_users) for _ in range(n_copies)])
        self._init(user_rows, pool, cursor=0, n_reshuffles=0, seed=seed)

    def _init(self, user_rows: UserRows, pool: np.ndarray, cursor: int, n_reshuffles: int, seed: int) -> None:
        self.user_rows = user_rows
        self._pool = np.asarray(pool, np.int64)
        self._cursor = int(cursor)
        self._n_reshuffles = int(n_reshuffles)
        self._seed = int(seed)

    @classmethod
    def from_state(cls, user_rows: UserRows, state: dict) -> RetainSampler:
        """A sampler that continues exactly where the one that produced `state` stopped."""
        pool = np.asarray(state["pool"], np.int64)
        cursor = int(state["cursor"])
        if len(pool) and (pool.min() < 0 or pool.max() >= user_rows.n_users):
            raise ValueError(f"retain pool names users outside [0, {user_rows.n_users})")
        if not 0 <= cursor <= len(pool):
            raise ValueError(f"retain pool cursor {cursor} outside [0, {len(pool)}]")
        sampler = cls.__new__(cls)
        sampler._init(user_rows, pool, cursor, int(state["n_reshuffles"]), int(state["seed"]))
        return sampler

    def state_dict(self) -> dict:
        """The sampler state as numpy values (a checkpointable pytree)."""
        return {
            "pool": self._pool.copy(),
            "cursor": np.int64(self._cursor),
            "n_reshuffles": np.int64(self._n_reshuffles),
            "seed": np.int64(self._seed),
        }

    def sample(self, need: int, excluded_users=()) -> np.ndarray:
        """int64 row indices of whole retain users, at least `need` rows (see the class)."""
        return self.user_rows.gather(self.sample_users(need, excluded_users))

    def sample_users(self, need: int, excluded_users=()) -> np.ndarray:
        """The retain users `sample` takes, in the order drawn."""
        counts = self.user_rows.counts
        eligible = counts > 0
        eligible[np.asarray(excluded_users, np.int64)] = False
        available = int(counts[eligible].sum())
        if available == 0:
            raise ValueError(
                "no retain user left: every user with rows is excluded (already unlearned) or has no "
                "candidate rows"
            )
        remaining = min(int(need), available)
        taken, chunk_size = [], _FIRST_CHUNK
        while remaining > 0:
            if self._cursor == len(self._pool):
                self._reshuffle()
            chunk = self._pool[self._cursor : self._cursor + chunk_size]
            usable = eligible[chunk] & _first_occurrences(chunk)
            sizes = np.where(usable, counts[chunk], 0)
            cumulative = np.cumsum(sizes)
            stop = len(chunk)
            if cumulative[-1] >= remaining:
                stop = int(np.searchsorted(cumulative, remaining, side="left")) + 1
            picked = chunk[:stop][usable[:stop]]
            eligible[picked] = False
            taken.append(picked)
            remaining -= int(cumulative[stop - 1])
            self._cursor += stop
            chunk_size *= 2
        return np.concatenate(taken) if taken else np.zeros(0, np.int64)

    def _reshuffle(self) -> None:
        self._n_reshuffles += 1
        np.random.default_rng((self._seed, self._n_reshuffles)).shuffle(self._pool)
        self._cursor = 0


def _first_occurrences(values: np.ndarray) -> np.ndarray:
    """bool mask of the first occurrence of each value."""
    first = np.zeros(len(values), bool)
    first[np.unique(values, return_index=True)[1]] = True
    return first


def retain_pool_factor(method) -> int:
    """Pool entries per request: 3 x 32, times the method's `retain_pool_multiplier` (Fanchuan: 8)."""
    return RETAIN_POOL_FACTOR * getattr(method, "retain_pool_multiplier", 1)


def retain_budget(method, n_forget_rows: int, n_total_rows: int) -> int:
    """Retain rows to request for one request: the method's own rule (`method.retain_budget`,
    of F_n, the number of training rows of the request's forget data), capped at
    int(0.1 * n_total_rows)."""
    return min(method.retain_budget(int(n_forget_rows)), int(RETAIN_CAP_SHARE * n_total_rows))


@dataclasses.dataclass(frozen=True)
class RequestBatch:
    """One step of the unlearning loop: consecutive requests (one user when batch_size = 1)."""

    index: int
    requests: np.ndarray  # int64 request indices into the forget set
    users: np.ndarray  # int32 user ids of those requests
    checkpoint: int | None  # k in 0..3 when a checkpoint is saved after this batch


class RequestStream:
    """The forget set's requests in batches of `batch_size` consecutive users (spec 5.3).

    Checkpoints fall after batches `quarter_checkpoints(n_batches)`; with batch_size 1 these
    are request indices and match retraining exactly (spec 5.5).
    """

    def __init__(self, forget_set: ForgetSet, batch_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.forget_set = forget_set
        self.batch_size = batch_size
        self.n_batches = math.ceil(len(forget_set) / batch_size)
        self.checkpoint_batches = quarter_checkpoints(self.n_batches)

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[RequestBatch]:
        return (self.batch(k) for k in range(self.n_batches))

    def batch(self, k: int) -> RequestBatch:
        if not 0 <= k < self.n_batches:
            raise IndexError(f"batch {k} outside [0, {self.n_batches})")
        requests = np.arange(k * self.batch_size, self.n_requests_through(k), dtype=np.int64)
        checkpoint = self.checkpoint_batches.index(k) if k in self.checkpoint_batches else None
        return RequestBatch(k, requests, self.forget_set.users[requests], checkpoint)

    def n_requests_through(self, k: int) -> int:
        """How many requests batches 0..k hold."""
        return min((k + 1) * self.batch_size, len(self.forget_set))

    def users_through(self, k: int) -> np.ndarray:
        """User ids unlearned once batch k is processed (the retrain prefix for checkpoint k)."""
        return self.forget_set.users[: self.n_requests_through(k)]

    def removal_mask_through(self, inter: Interactions, k: int) -> np.ndarray:
        """Rows removed once batch k is processed (the evaluation mask at a checkpoint)."""
        return self.forget_set.removal_mask(inter, self.n_requests_through(k))
