"""The forget set: unlearning requests in processing order, one per user, and its checkpoints.

A forget set is a list of requests, one per user (data-and-evaluation spec section 3.0): the
request of user u removes EVERY row of u whose item is in u's forget items, whatever split
the row later falls into, because the original removes rows before splitting. Requests are
processed in ascending order of the user token as the original parses it (spec 4.2,
`request_order`), and the unlearning loop checkpoints after the requests given by
`quarter_checkpoints` (spec 4.4; unlearning-algorithms spec 5.5).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from erase_jax.data.interactions import Interactions

SCENARIOS = ("sensitive", "spam", "random")


@dataclasses.dataclass(frozen=True)
class ForgetSet:
    """Unlearning requests in processing order, one per user, as CSR.

    Request r forgets, for user `users[r]`, the items `items[item_offsets[r]:item_offsets[r+1]]`
    (sorted, unique). `target_items` is set for the spam scenario only (the attacked items).
    """

    users: np.ndarray  # int32 [N], dense user ids in request order
    item_offsets: np.ndarray  # int64 [N + 1]
    items: np.ndarray  # int32 [item_offsets[-1]]
    scenario: str
    category: str | None
    fraction: float
    seed: int
    target_items: np.ndarray | None = None

    def __post_init__(self):
        set_field = lambda name, value: object.__setattr__(self, name, value)
        set_field("users", np.asarray(self.users, np.int32))
        set_field("item_offsets", np.asarray(self.item_offsets, np.int64))
        set_field("items", np.asarray(self.items, np.int32))
        if self.target_items is not None:
            set_field("target_items", np.asarray(self.target_items, np.int32))
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario {self.scenario!r} is not one of {SCENARIOS}")
        n = len(self.users)
        offsets = self.item_offsets
        if offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != len(self.items):
            raise ValueError(f"item_offsets must have {n + 1} entries from 0 to {len(self.items)}")
        if np.any(np.diff(offsets) <= 0):
            raise ValueError("every request must forget at least one item")
        if len(np.unique(self.users)) != n:
            raise ValueError("a user appears in more than one request")

    def __len__(self) -> int:
        return len(self.users)

    def request_items(self, r: int) -> np.ndarray:
        """The item ids request `r` forgets (sorted, unique)."""
        return self.items[self.item_offsets[r] : self.item_offsets[r + 1]]

    def removal_mask(self, inter: Interactions, n_requests: int | None = None) -> np.ndarray:
        """bool[len(inter)]: the rows removed once requests 0..n_requests-1 are processed.

        A row is removed when its user made one of those requests and its item is among that
        user's forget items: all such rows, train, valid and test alike (spec 4.4; the
        original removes before splitting). `n_requests` defaults to all requests.
        """
        n_requests = len(self) if n_requests is None else n_requests
        if not 0 <= n_requests <= len(self):
            raise ValueError(f"n_requests must lie in [0, {len(self)}], got {n_requests}")
        self._check_ids(inter)
        end = self.item_offsets[n_requests]
        users = np.repeat(self.users[:n_requests], np.diff(self.item_offsets[: n_requests + 1]))
        forget_keys = _pair_keys(users, self.items[:end], inter.n_items)
        return np.isin(_pair_keys(inter.users, inter.items, inter.n_items), forget_keys)

    def rows_of_request(self, inter: Interactions, r: int) -> np.ndarray:
        """int64 indices of the rows request `r` removes (its user's rows with a forget item).

        The algorithm's forget data is more than this: ALL rows of the user (spec 4.3).
        """
        self._check_ids(inter)
        user_rows = np.flatnonzero(inter.users == self.users[r])
        return user_rows[np.isin(inter.items[user_rows], self.request_items(r))]

    def _check_ids(self, inter: Interactions) -> None:
        if len(self) and self.users.max() >= inter.n_users:
            raise ValueError(f"forget set names user id {self.users.max()} but {inter.name} has {inter.n_users} users")
        if len(self.items) and self.items.max() >= inter.n_items:
            raise ValueError(f"forget set names item id {self.items.max()} but {inter.name} has {inter.n_items} items")


def request_order(user_tokens) -> np.ndarray:
    """Indices that put user tokens in the original's processing order (spec 4.2).

    The original reads the forget file with pandas, so a column of integers is ordered
    numerically (MovieLens, Goodreads, 30music) and anything else as strings (Amazon, nowp).
    Like pandas, a column whose tokens all parse as decimal numbers is ordered numerically
    too. Equal numbers ("7", "07") are ordered by their text so the order is total.
    """
    tokens = np.asarray(user_tokens).astype(str)
    numbers = _parse_numbers(tokens)
    if numbers is None:
        return np.argsort(tokens, kind="stable")
    return np.lexsort((tokens, numbers))


def forget_set_from_pairs(
    inter: Interactions,
    users: np.ndarray,
    items: np.ndarray,
    *,
    scenario: str,
    category: str | None,
    fraction: float,
    seed: int,
    target_items: np.ndarray | None = None,
) -> ForgetSet:
    """Groups (user, item) pairs into one request per user, in `request_order` of the tokens.

    Repeated pairs collapse; each request's items come out sorted.
    """
    keys = np.unique(_pair_keys(users, items, inter.n_items))
    pair_users, pair_items = keys // inter.n_items, keys % inter.n_items
    request_users, starts, counts = np.unique(pair_users, return_index=True, return_counts=True)
    order = request_order(inter.user_tokens[request_users])
    counts, starts = counts[order], starts[order]
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    gather = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1])
    return ForgetSet(
        users=request_users[order],
        item_offsets=offsets,
        items=pair_items[gather],
        scenario=scenario,
        category=category,
        fraction=fraction,
        seed=seed,
        target_items=target_items,
    )


def quarter_checkpoints(n_requests: int) -> list[int]:
    """0-based request (or batch) indices after which checkpoints 0..3 are saved (spec 4.4).

    [N//4, N//2, 3N//4, N-1]; checkpoint k has processed c_k + 1 requests.
    Example: N = 10 -> [2, 5, 7, 9].
    """
    if n_requests < 5:
        raise ValueError(
            f"{n_requests} requests are too few for four checkpoints: the original's formula "
            "[N//4, N//2, 3N//4, N-1] repeats indices below 5 requests (N = 4 -> [1, 2, 3, 3]); "
            "use a larger forget fraction so that the forget set has at least 5 users"
        )
    return [n_requests // 4, n_requests // 2, 3 * n_requests // 4, n_requests - 1]


def _pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    return np.asarray(users, np.int64) * n_items + np.asarray(items, np.int64)


def parse_integers(tokens: np.ndarray) -> np.ndarray | None:
    try:
        return tokens.astype(np.int64)
    except (ValueError, OverflowError):
        return None


def _parse_numbers(tokens: np.ndarray) -> np.ndarray | None:
    """int64 when every token is an integer, float64 when every token is a finite decimal
    number (what pandas would parse), else None."""
    integers = parse_integers(tokens)
    if integers is not None:
        return integers
    try:
        numbers = tokens.astype(np.float64)
    except ValueError:
        return None
    return numbers if np.all(np.isfinite(numbers)) else None
