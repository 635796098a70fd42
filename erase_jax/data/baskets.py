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

SMALLEST_WIDTH = 8


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


@dataclasses.dataclass(frozen=True)
class BasketExamples:
    train: BasketRows
    valid: BasketRows
    test: BasketRows


def occurrence_widths(max_length: int) -> tuple[int, ...]:
    """Padded history widths: powers of two from 8 below `max_length`, then `max_length`."""
    widths, width = [], SMALLEST_WIDTH
    while width < max_length:
        widths.append(width)
        width *= 2
    return (*widths, max_length)


def width_of(rows: BasketRows) -> int:
    """The narrowest of `occurrence_widths(rows.max_length)` that holds every history of `rows`."""
    widths = occurrence_widths(rows.max_length)
    longest = int(rows.lengths.max()) if len(rows) else 1
    return widths[int(np.searchsorted(np.asarray(widths), longest))]


def basket_batch(rows: BasketRows, size: int | None = None, width: int | None = None) -> dict:
    """Examples as one padded device batch (module doc); `size` defaults to the row count
    rounded up to a power of two, `width` to `width_of(rows)`."""
    n = len(rows)
    size = max(1, 1 << max(n - 1, 0).bit_length()) if size is None else size
    width = width_of(rows) if width is None else width
    if size < n or (n and width < int(rows.lengths.max())):
        raise ValueError(f"padded shape ({size}, {width}) is smaller than the rows ({n}, {int(rows.lengths.max())})")
    k = rows.targets.shape[1]
    items = np.full((size, width), rows.n_items, np.int32)
    baskets = np.full((size, width), rows.max_history_baskets, np.int32)
    targets = np.full((size, k), rows.n_items, np.int32)
    users, lengths, n_baskets, target_sizes = (np.zeros(size, np.int32) for _ in range(4))
    m = min(width, rows.items.shape[1])
    items[:n, :m], baskets[:n, :m] = rows.items[:, :m], rows.baskets[:, :m]
    targets[:n], users[:n], lengths[:n], n_baskets[:n] = rows.targets, rows.users, rows.lengths, rows.n_baskets
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
