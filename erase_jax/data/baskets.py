"""Next-basket examples: a user's history baskets -> the next basket, as padded host arrays.

A basket data set is an `Interactions` table with one row per (user, basket, item): `sessions`
holds the basket id (dense, global) and `timestamps` the basket's time (a day, or the basket's
position in the user's history when the source has no clock). Baskets are ordered by
(timestamp, basket id); an item appears at most once per basket (readers de-duplicate).
Removing rows (an unlearning request) can empty a basket, which then no longer exists.

`build_basket_examples` turns the table into one example per user and phase, the original's
temporal leave-one-out (next-basket spec 1.3, step 3): with n baskets, train predicts basket
n-3 from baskets 0..n-4, valid basket n-2 from 0..n-3, test basket n-1 from 0..n-2. Users with
fewer than `min_baskets` baskets give no example. Histories keep their last
`max_history_baskets` baskets (the original keeps H-2 of `MAX_NBR_HISTORY_BASKETS` = H: 48 for
DNNTSP, 98 for Sets2Sets) and each basket its first `max_basket_size` items in id order (None:
no cut; the original's -1 means the largest basket, which cuts nothing either).

A history is stored flat, as its item OCCURRENCES oldest basket first (items in id order inside
a basket): `items[r, :lengths[r]]` with `baskets[r, j]` the position (0-based, oldest first) of
the basket holding occurrence j. Padding is `n_items` in `items` and `targets` (never a real
item: ids are 0..n_items-1) and `max_history_baskets` in `baskets`.

A batch of examples (`basket_batch`) is the dict every NBR model and method receives:

    users      int32 [b]         the example's user (padding rows: 0)
    items      int32 [b, W]      history occurrences, padding n_items; W = an occurrence width
    baskets    int32 [b, W]      basket position of each occurrence, padding max_history_baskets
    lengths    int32 [b]         occurrences in the history (padding rows: 0)
    n_baskets  int32 [b]         baskets in the history (padding rows: 0)
    targets    int32 [b, K]      the target basket's items, padding n_items
    target_sizes int32 [b]       items in the target basket (padding rows: 0)
    weight     float32 [b]       1 for a real example, 0 for padding

Widths W come from `occurrence_widths` (powers of two from 8, then the rows' maximum), so that
a training epoch compiles once per width (`lax.switch`, as the session batches do).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.widths import doubling_widths

SMALLEST_WIDTH = 8
PHASE_OFFSETS = {"train": 3, "valid": 2, "test": 1}  # target = basket n - offset


@dataclasses.dataclass(frozen=True)
class BasketConfig:
    """The NBR task's config section (`basket:` in a run config).

    min_baskets: users with fewer baskets give no example (the original's MIN_NBR_BASKET_COUNT 4).
    max_history_baskets: the most recent history baskets kept (the original's H - 2).
    max_basket_size: items kept per basket (in id order); None keeps all.
    mix_lengths: training batches mix history widths, as the original's shuffle does (each
      runs at its widest example's width); False keeps a batch in one width bucket (cheaper).
    """

    min_baskets: int = 4
    max_history_baskets: int = 48
    max_basket_size: int | None = None
    mix_lengths: bool = False

    def __post_init__(self):
        if self.min_baskets < 4:
            raise ValueError(f"basket.min_baskets must be >= 4 (train, valid and test each need a target "
                             f"and train a history), got {self.min_baskets}")
        if self.max_history_baskets < 1:
            raise ValueError(f"basket.max_history_baskets must be >= 1, got {self.max_history_baskets}")
        if self.max_basket_size is not None and self.max_basket_size < 1:
            raise ValueError(f"basket.max_basket_size must be >= 1 or null, got {self.max_basket_size}")


@dataclasses.dataclass(frozen=True)
class BasketRows:
    """Examples of one phase: padded host arrays, one row per (user, phase) (module doc)."""

    users: np.ndarray  # int32 [n]
    items: np.ndarray  # int32 [n, M] history occurrences, padding n_items
    baskets: np.ndarray  # int32 [n, M] basket position per occurrence, padding max_history_baskets
    lengths: np.ndarray  # int32 [n] occurrences per history
    n_baskets: np.ndarray  # int32 [n] baskets per history
    targets: np.ndarray  # int32 [n, K] target items, padding n_items
    target_sizes: np.ndarray  # int32 [n]
    n_items: int
    n_users: int
    max_history_baskets: int

    def __post_init__(self):
        n = len(self.users)
        for name in ("items", "baskets", "lengths", "n_baskets", "targets", "target_sizes"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"BasketRows.{name} has {len(getattr(self, name))} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.users)

    @property
    def max_length(self) -> int:
        """The widest history (occurrences), at least 1."""
        return max(int(self.lengths.max()) if len(self) else 1, 1)

    def select(self, rows: np.ndarray) -> BasketRows:
        """The examples picked by an index array or boolean mask (widths kept)."""
        pick = lambda a: a[rows]
        return dataclasses.replace(
            self, users=pick(self.users), items=pick(self.items), baskets=pick(self.baskets),
            lengths=pick(self.lengths), n_baskets=pick(self.n_baskets), targets=pick(self.targets),
            target_sizes=pick(self.target_sizes),
        )

    def history_lists(self, r: int) -> list[list[int]]:
        """The history of example `r` as baskets of item ids, oldest first (for tests and baselines)."""
        n = int(self.lengths[r])
        out: list[list[int]] = [[] for _ in range(int(self.n_baskets[r]))]
        for item, basket in zip(self.items[r, :n], self.baskets[r, :n], strict=True):
            out[int(basket)].append(int(item))
        return out

    def target_list(self, r: int) -> list[int]:
        return [int(i) for i in self.targets[r, : int(self.target_sizes[r])]]

    def rows_of_users(self, users) -> np.ndarray:
        """Indices of the examples of `users` (e.g. a forget request's), ascending."""
        return np.flatnonzero(np.isin(self.users, np.asarray(users)))


@dataclasses.dataclass(frozen=True)
class BasketExamples:
    train: BasketRows
    valid: BasketRows
    test: BasketRows


def occurrence_widths(max_length: int) -> tuple[int, ...]:
    """Padded history widths: powers of two from 8 below `max_length`, then `max_length`."""
    return doubling_widths(max_length, SMALLEST_WIDTH)


def step_widths(max_steps: int) -> tuple[int, ...]:
    """Padded history lengths in baskets: powers of two from 1 below `max_steps`, then `max_steps`."""
    return doubling_widths(max_steps, 1)


def bucket_shapes(max_length: int, max_steps: int) -> tuple[tuple[int, int], ...]:
    """Every (occurrence width, basket steps) a batch of histories no wider than `max_length` can
    run at: each width of `occurrence_widths` with each step count of `step_widths` up to it (a
    history of W occurrences has at most W baskets). The step counts of a narrower width are a
    prefix of a wider one's, so the bucket of a mixed batch is (its widest, its longest)."""
    return tuple((w, t) for w in occurrence_widths(max_length) for t in step_widths(min(w, max_steps)))


FULL_BATCH_WIDTH = 64  # histories up to this many occurrences fill whole batches


def rows_for_width(batch_size: int, width: int) -> int:
    """Examples a training batch of `width`-wide histories holds: the batch size up to
    FULL_BATCH_WIDTH occurrences, then proportionally fewer (at least one), so that a batch's
    work and memory stay near those of a full batch of FULL_BATCH_WIDTH-wide histories."""
    return min(batch_size, max(1, batch_size * FULL_BATCH_WIDTH // width))


def bucket_index(lengths: np.ndarray, n_baskets: np.ndarray, max_length: int, max_steps: int) -> np.ndarray:
    """int32: the index into `bucket_shapes` of the smallest (width, steps) holding each history."""
    widths = np.asarray(occurrence_widths(max_length))
    shapes = bucket_shapes(max_length, max_steps)
    w = widths[np.searchsorted(widths, np.maximum(lengths, 1))]
    steps = np.asarray(step_widths(max_steps))
    t = np.minimum(steps[np.minimum(np.searchsorted(steps, np.maximum(n_baskets, 1)), len(steps) - 1)], w)
    lookup = {shape: index for index, shape in enumerate(shapes)}
    return np.array([lookup[(int(a), int(b))] for a, b in zip(w, t, strict=True)], np.int32)


def width_of(rows: BasketRows) -> int:
    """The narrowest of `occurrence_widths(rows.max_length)` that holds every history of `rows`."""
    widths = occurrence_widths(rows.max_length)
    longest = int(rows.lengths.max()) if len(rows) else 1
    return widths[int(np.searchsorted(np.asarray(widths), longest))]


def padded_rows(n: int) -> int:
    """`basket_batch`'s default padded row count: the next power of two (at least 1)."""
    return max(1, 1 << max(int(n) - 1, 0).bit_length())


def basket_batch(rows: BasketRows, size: int | None = None, width: int | None = None, target_width: int | None = None) -> dict:
    """Examples as one padded device batch (module doc); `size` defaults to the row count
    rounded up to a power of two, `width` to `width_of(rows)`, `target_width` to the rows' own."""
    n = len(rows)
    size = padded_rows(n) if size is None else size
    width = width_of(rows) if width is None else width
    if size < n or (n and width < int(rows.lengths.max())):
        raise ValueError(f"padded shape ({size}, {width}) is smaller than the rows ({n}, {int(rows.lengths.max())})")
    k = rows.targets.shape[1] if target_width is None else target_width
    if n and k < int(rows.target_sizes.max()):
        raise ValueError(f"target width {k} is smaller than the largest target basket ({int(rows.target_sizes.max())})")
    items = np.full((size, width), rows.n_items, np.int32)
    baskets = np.full((size, width), rows.max_history_baskets, np.int32)
    targets = np.full((size, k), rows.n_items, np.int32)
    users, lengths, n_baskets, target_sizes = (np.zeros(size, np.int32) for _ in range(4))
    m = min(width, rows.items.shape[1])
    items[:n, :m], baskets[:n, :m] = rows.items[:, :m], rows.baskets[:, :m]
    kk = min(k, rows.targets.shape[1])
    targets[:n, :kk], users[:n], lengths[:n], n_baskets[:n] = rows.targets[:, :kk], rows.users, rows.lengths, rows.n_baskets
    target_sizes[:n] = rows.target_sizes
    return {
        "users": jnp.asarray(users),
        "items": jnp.asarray(items),
        "baskets": jnp.asarray(baskets),
        "lengths": jnp.asarray(lengths),
        "n_baskets": jnp.asarray(n_baskets),
        "targets": jnp.asarray(targets),
        "target_sizes": jnp.asarray(target_sizes),
        "weight": jnp.asarray((np.arange(size) < n).astype(np.float32)),
    }


def multi_hot(targets, n_items: int):
    """float32 [b, n_items]: 1 at each target item (padding n_items dropped). Jittable."""
    b = targets.shape[0]
    hot = jnp.zeros((b, n_items + 1), jnp.float32).at[jnp.arange(b)[:, None], targets].set(1.0)
    return hot[:, :n_items]


def build_basket_examples(inter: Interactions, config: BasketConfig) -> BasketExamples:
    """One example per user and phase, the temporal leave-one-out of the module doc.

    `inter.sessions` are the basket ids; a basket's time is its earliest row's timestamp
    (all 0 without timestamps), baskets are ordered by (time, id), and duplicate items in a
    basket count once. Examples are in ascending user order. Item ids, `n_items` and `n_users`
    come from `inter`'s vocabularies, so data with rows removed (an unlearning request: empty
    baskets vanish, a user may drop below `min_baskets` and lose its examples) keeps the ids
    and shapes of the full data. The target width K is the largest target of all three phases
    (after `max_basket_size`), so that every phase pads to the same K.

    Deliberate differences from the original `NextBasketDataset` (next-basket spec 5.1-5.3):
    every item of every basket keeps its id (not only first target items), lengths are raw
    counts, and padding is `n_items`, never a real item. Basket readers:
    `erase_jax.data.basket_files` and `erase_jax.data.basket_csv`.
    """
    ordered = _ordered_baskets(inter, config.max_basket_size)
    counts = np.bincount(ordered.run_user, minlength=inter.n_users)
    first_run = np.concatenate([[0], np.cumsum(counts)])[:-1]
    users = np.flatnonzero(counts >= config.min_baskets)
    run_start = np.concatenate([[0], np.cumsum(ordered.run_size)])  # row range of each run, plus the end
    target_runs = {phase: first_run[users] + counts[users] - offset for phase, offset in PHASE_OFFSETS.items()}
    widest_target = max([int(ordered.run_size[runs].max()) for runs in target_runs.values() if len(runs)] or [1])
    phases = {}
    for phase, target_run in target_runs.items():
        oldest_run = np.maximum(first_run[users], target_run - config.max_history_baskets)
        history = _ranges(run_start[oldest_run], run_start[target_run])
        width = max(int(history.lengths.max()) if len(users) else 1, 1)
        positions = ordered.row_run[history.rows] - oldest_run[history.example]
        target = _ranges(run_start[target_run], run_start[target_run + 1])
        phases[phase] = BasketRows(
            users=users.astype(np.int32),
            items=_padded(history, ordered.items[history.rows], inter.n_items, width),
            baskets=_padded(history, positions, config.max_history_baskets, width),
            lengths=history.lengths,
            n_baskets=(target_run - oldest_run).astype(np.int32),
            targets=_padded(target, ordered.items[target.rows], inter.n_items, widest_target),
            target_sizes=target.lengths,
            n_items=inter.n_items,
            n_users=inter.n_users,
            max_history_baskets=config.max_history_baskets,
        )
    return BasketExamples(**phases)


@dataclasses.dataclass(frozen=True)
class _OrderedBaskets:
    """Rows sorted by (user, basket time, basket id, item), duplicates and over-size cut."""

    items: np.ndarray  # item per kept row
    row_run: np.ndarray  # the basket (run index, user by user, oldest first) of each kept row
    run_user: np.ndarray  # user of each run
    run_size: np.ndarray  # kept rows of each run


@dataclasses.dataclass(frozen=True)
class _Ranges:
    """The kept rows [start, end) of each example, flattened example by example."""

    example: np.ndarray  # the example of each gathered row
    column: np.ndarray  # its position within the example
    rows: np.ndarray  # its index among the kept rows
    lengths: np.ndarray  # int32 [n] rows per example


def _ordered_baskets(inter: Interactions, max_basket_size: int | None) -> _OrderedBaskets:
    if inter.sessions is None:
        raise ValueError(f"{inter.name}: next-basket examples need basket ids (Interactions.sessions); read the "
                         "data with a basket reader (erase_jax.data.basket_files / basket_csv)")
    basket_ids, basket = np.unique(inter.sessions, return_inverse=True)
    basket_time = np.zeros(len(basket_ids))
    if inter.timestamps is not None and len(inter):
        basket_time = np.full(len(basket_ids), np.inf)
        np.minimum.at(basket_time, basket, inter.timestamps)
    order = np.lexsort((inter.items, basket, basket_time[basket], inter.users))
    users, basket, items = inter.users[order], basket[order], inter.items[order]
    new_run = np.ones(len(order), bool)
    new_run[1:] = (users[1:] != users[:-1]) | (basket[1:] != basket[:-1])
    keep = new_run.copy()
    keep[1:] |= items[1:] != items[:-1]  # a repeated item of the same basket is dropped
    run = np.cumsum(new_run) - 1
    if len(run) and run[-1] + 1 != len(basket_ids):
        raise ValueError(f"{inter.name}: a basket id (session) holds rows of more than one user")
    users, run, items = users[keep], run[keep], items[keep]
    run_user = np.zeros(len(basket_ids), np.int64)
    run_user[run] = users
    run_size = np.bincount(run, minlength=len(basket_ids))
    if max_basket_size is not None:  # the first max_basket_size items of each basket, in id order
        position = np.arange(len(run)) - np.concatenate([[0], np.cumsum(run_size)])[run]
        small = position < max_basket_size
        run, items = run[small], items[small]
        run_size = np.minimum(run_size, max_basket_size)
    return _OrderedBaskets(items.astype(np.int32), run.astype(np.int64), run_user, run_size.astype(np.int64))


def _ranges(start: np.ndarray, end: np.ndarray) -> _Ranges:
    lengths = end - start
    example = np.repeat(np.arange(len(start)), lengths)
    column = np.arange(int(lengths.sum())) - (np.cumsum(lengths) - lengths)[example]
    return _Ranges(example, column, start[example] + column, lengths.astype(np.int32))


def _padded(ranges: _Ranges, values: np.ndarray, pad: int, width: int) -> np.ndarray:
    """int32 [n, width]: each example's values left-aligned, then `pad`."""
    out = np.full((len(ranges.lengths), width), pad, np.int32)
    out[ranges.example, ranges.column] = values
    return out
