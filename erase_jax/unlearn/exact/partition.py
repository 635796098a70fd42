"""K-shard partitions of the training interactions, for exact unlearning by sharded retraining.

* `random_partition`: SISA's shards (Bourtoule et al., "Machine Unlearning", S&P 2021): each
  interaction (or, with `unit="users"`, each user with all its interactions) goes to a shard
  drawn uniformly, in equal-size groups.
* `balanced_partition`: RecEraser's balanced partitions (Chen et al., "Recommendation
  Unlearning", WWW'22, Section 4.2, Algorithms 1-2): UBP groups users, IBP items, InBP single
  interactions by similarity of pre-trained embeddings, under a per-shard capacity.

Balanced partition, one round (spec `receraser.md`): the distance of every unit to every
anchor is computed (squared Euclidean for UBP / IBP; for InBP the product of the squared user
and item distances, Eq. 3, squared as the public code does); the (unit, anchor) pairs are
visited by increasing distance and a unit joins the anchor's shard if it is still unassigned
and the shard holds fewer than t = ceil(1.2 x units / K) units; each anchor then moves to the
mean embedding of its shard (Eq. 2 / Eq. 4). Rounds repeat T times or until the assignment no
longer changes (then the anchors stop moving too).

Deliberate differences from the public code: the anchor update is per dimension (the code
averages all numbers of the stacked embeddings into one scalar; `scalar_mean_anchors=True`
reproduces that); t is rounded up, so that K x t >= units also for tiny data.

The greedy assignment is exact but vectorised: `capacity_greedy` walks the sorted pairs in
chunks and only falls back to a finer step when a shard fills inside a chunk (at most K times
per round), so a round is a few vectorised passes, not a Python loop over the pairs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PARTITIONS = ("random", "ubp", "ibp", "inbp")
CAPACITY_FACTOR = 1.2  # t = 1.2 x units / K (public code)
GREEDY_CHUNK = 1 << 16


@dataclasses.dataclass(frozen=True)
class Partition:
    """The shard of every training interaction, and how it was obtained."""

    shard_of_row: np.ndarray  # int32 [n_train_rows], values in 0..n_shards-1
    n_shards: int
    method: str
    capacity: int | None  # t, in units (users, items or interactions); None for random
    rounds: int  # assignment rounds run (0 for random)

    def rows_of_shard(self, shard: int) -> np.ndarray:
        return np.nonzero(self.shard_of_row == shard)[0]

    def shard_sizes(self) -> np.ndarray:
        """Interactions per shard."""
        return np.bincount(self.shard_of_row, minlength=self.n_shards)

    def summary(self) -> dict:
        sizes = self.shard_sizes()
        return {
            "partition": self.method,
            "n_shards": self.n_shards,
            "capacity_units": self.capacity,
            "rounds": self.rounds,
            "shard_sizes": sizes.tolist(),
            "shard_size_min": int(sizes.min()),
            "shard_size_max": int(sizes.max()),
        }


def capacity(n_units: int, n_shards: int) -> int:
    """t = ceil(1.2 x units / K): the most units a balanced shard may hold."""
    return max(1, int(np.ceil(CAPACITY_FACTOR * n_units / n_shards)))


def random_partition(users: np.ndarray, n_shards: int, seed: int, unit: str = "interactions") -> Partition:
    """SISA shards: a random permutation cut into K near-equal groups of interactions or users."""
    rng = np.random.default_rng([seed, 0x5150])
    if unit == "interactions":
        order = rng.permutation(len(users))
        shard_of_row = np.empty(len(users), np.int32)
        shard_of_row[order] = np.arange(len(users)) % n_shards
    elif unit == "users":
        distinct = np.unique(users)
        shard_of_user = np.empty(int(users.max(initial=0)) + 1, np.int32)
        shard_of_user[distinct[rng.permutation(len(distinct))]] = np.arange(len(distinct)) % n_shards
        shard_of_row = shard_of_user[users]
    else:
        raise ValueError(f"random partition unit must be 'interactions' or 'users', got {unit!r}")
    return Partition(shard_of_row.astype(np.int32), n_shards, f"random_{unit}", None, 0)


def unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (an all-zero row stays zero)."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms > 0, norms, 1.0)


def balanced_partition(
    method: str,
    users: np.ndarray,
    items: np.ndarray,
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
    n_shards: int,
    seed: int,
    max_rounds: int = 30,
    scalar_mean_anchors: bool = False,
) -> Partition:
    """RecEraser's UBP / IBP / InBP partition of the training pairs (users[r], items[r]).

    `user_embeddings` [n_users, d] and `item_embeddings` [n_items, d] come from a pre-trained
    model. UBP and IBP assign the users (items) that occur in the pairs; every pair follows its
    user (item). InBP assigns pairs. `scalar_mean_anchors` reproduces the public code's anchor
    update (one scalar mean for the whole anchor); the default is the paper's per-dimension mean.
    """
    method = method.lower()
    rng = np.random.default_rng([seed, 0xE2A5E])
    user_embeddings = np.asarray(user_embeddings, np.float64)
    item_embeddings = np.asarray(item_embeddings, np.float64)
    if method in ("ubp", "ibp"):
        keys = users if method == "ubp" else items
        table = user_embeddings if method == "ubp" else item_embeddings
        units, unit_of_row = np.unique(keys, return_inverse=True)
        unit_of_row = unit_of_row.reshape(-1)  # numpy >= 2 keeps the input's shape here
        points = table[units]
        anchors = points[rng.choice(len(units), n_shards, replace=False)]
        t = capacity(len(units), n_shards)

        def distances(anchors):
            return _squared_distances(points, anchors)

        def move(assignment, previous):
            return _shard_means(points, assignment, n_shards, previous, scalar_mean_anchors)

    elif method == "inbp":
        unit_of_row = np.arange(len(users))
        chosen = rng.choice(len(users), n_shards, replace=False)
        anchors = np.concatenate([user_embeddings[users[chosen]], item_embeddings[items[chosen]]], axis=1)
        d = user_embeddings.shape[1]
        t = capacity(len(users), n_shards)

        def distances(anchors):
            # Eq. 3 on the distinct users and items first, then one gather per pair.
            to_user = _squared_distances(user_embeddings, anchors[:, :d])
            to_item = _squared_distances(item_embeddings, anchors[:, d:])
            return to_user[users] * to_item[items]

        def move(assignment, previous):
            user_means = _shard_means(user_embeddings[users], assignment, n_shards, previous[:, :d], scalar_mean_anchors)
            item_means = _shard_means(item_embeddings[items], assignment, n_shards, previous[:, d:], scalar_mean_anchors)
            return np.concatenate([user_means, item_means], axis=1)

    else:
        raise ValueError(f"balanced partition must be one of ubp, ibp, inbp, got {method!r}")

    assignment, rounds = None, 0
    for rounds in range(1, max_rounds + 1):
        new_assignment = capacity_greedy(distances(anchors), t)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        anchors = move(assignment, anchors)  # an empty shard keeps its anchor
    return Partition(assignment[unit_of_row].astype(np.int32), n_shards, method, t, rounds)


def capacity_greedy(distance: np.ndarray, shard_capacity: int) -> np.ndarray:
    """Algorithm 1's assignment: pairs by increasing distance, each unit to the first shard
    that still has room when its pair comes up. `distance` is [n_units, K]; returns [n_units].

    Sequential semantics, evaluated in chunks of the sorted pairs: inside a chunk where no
    shard fills, each still-unassigned unit simply takes its first pair to an open shard. When
    a shard would overflow, everything before the overflowing pair is committed, the shard is
    closed and the walk resumes right after that pair; this happens at most K times.
    """
    n_units, n_shards = distance.shape
    if n_shards * shard_capacity < n_units:
        raise ValueError(f"{n_shards} shards of capacity {shard_capacity} cannot hold {n_units} units")
    order = np.argsort(distance, axis=None, kind="stable")
    pair_units, pair_shards = np.divmod(order, n_shards)
    assignment = np.full(n_units, -1, np.int64)
    counts = np.zeros(n_shards, np.int64)
    start, n_assigned = 0, 0
    while n_assigned < n_units:
        stop = min(start + GREEDY_CHUNK, len(order))
        units, shards = pair_units[start:stop], pair_shards[start:stop]
        eligible = (assignment[units] < 0) & (counts[shards] < shard_capacity)
        positions = np.nonzero(eligible)[0]
        _, first = np.unique(units[positions], return_index=True)
        positions = np.sort(positions[first])  # each unit's first eligible pair in the chunk
        taken_shards = shards[positions]
        # Rank of each candidate within its shard, in walk order.
        rank = _rank_within_groups(taken_shards, n_shards)
        overflow = counts[taken_shards] + rank >= shard_capacity
        if overflow.any():
            cut = int(np.argmax(overflow))
            commit = positions[:cut]
            counts += np.bincount(shards[commit], minlength=n_shards)
            assignment[units[commit]] = shards[commit]
            n_assigned += len(commit)
            # The overflowing pair found its shard full: it is rejected, and the walk goes on.
            start = start + int(positions[cut]) + 1
            continue
        counts += np.bincount(taken_shards, minlength=n_shards)
        assignment[units[positions]] = taken_shards
        n_assigned += len(positions)
        start = stop
        if start >= len(order) and n_assigned < n_units:
            raise AssertionError("pairs exhausted before every unit was assigned")
    return assignment


def _rank_within_groups(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """For each element, how many earlier elements share its group."""
    order = np.argsort(groups, kind="stable")
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(groups), np.int64)
    rank[order] = np.arange(len(groups)) - np.repeat(starts, counts)
    return rank


def _squared_distances(points: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """||x - a||^2 for every point x and anchor a: [n_points, K]."""
    return np.maximum(
        np.sum(points**2, axis=1)[:, None] - 2 * points @ anchors.T + np.sum(anchors**2, axis=1)[None, :], 0.0
    )


def _shard_means(points: np.ndarray, assignment: np.ndarray, n_shards: int, fallback: np.ndarray, scalar: bool) -> np.ndarray:
    """Per-shard mean of the points (Eq. 2 / 4); with `scalar`, the public code's mean over all
    numbers of the shard's points, broadcast to every dimension."""
    counts = np.bincount(assignment, minlength=n_shards)
    sums = np.stack([points[assignment == k].sum(axis=0) for k in range(n_shards)])
    means = sums / np.maximum(counts, 1)[:, None]
    if scalar:
        means = np.repeat(means.mean(axis=1, keepdims=True), points.shape[1], axis=1)
    return np.where(counts[:, None] > 0, means, fallback)
