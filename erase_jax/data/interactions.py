"""The `Interactions` container: the one host-side representation of a data set.

Every reader produces it, every filter and split consumes it, and everything downstream
(device batches, forget sets, evaluation) is built from it. Ids are dense int32 in
`[0, n_users)` / `[0, n_items)`; unlike RecBole there is no padding id 0 (sequence models
that need a padding item add it themselves).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class Interactions:
    """User-item interaction rows plus the vocabularies that name them.

    Attributes:
      users, items: int32 arrays, one entry per interaction row.
      timestamps: optional float64 per row (seconds, or any monotone clock).
      ratings: optional float32 per row.
      sessions: optional int64 session id per row (dense, from a `session_id` column); session-
        based tasks group by it when asked for sessions (`sequence.group_by: session`).
      user_tokens, item_tokens: the original token of each dense id (`user_tokens[u]`).
      item_categories: optional map category name -> sorted int32 array of item ids.
      user_features: optional map feature name -> per-user array (from `.user` files).
      name: a label for messages and result files.
    """

    users: np.ndarray
    items: np.ndarray
    user_tokens: np.ndarray
    item_tokens: np.ndarray
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    sessions: np.ndarray | None = None
    item_categories: Mapping[str, np.ndarray] | None = None
    user_features: Mapping[str, np.ndarray] | None = None
    name: str = "interactions"

    def __post_init__(self):
        n = len(self.users)
        if len(self.items) != n:
            raise ValueError(f"{self.name}: {n} users but {len(self.items)} items per row")
        for field in ("timestamps", "ratings", "sessions"):
            column = getattr(self, field)
            if column is not None and len(column) != n:
                raise ValueError(f"{self.name}: {field} has {len(column)} rows, expected {n}")
        if n and (self.users.min() < 0 or self.users.max() >= self.n_users):
            raise ValueError(f"{self.name}: user id outside [0, {self.n_users})")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise ValueError(f"{self.name}: item id outside [0, {self.n_items})")

    @property
    def n_users(self) -> int:
        return len(self.user_tokens)

    @property
    def n_items(self) -> int:
        return len(self.item_tokens)

    def __len__(self) -> int:
        return len(self.users)

    def select(self, rows: np.ndarray) -> Interactions:
        """The rows picked by a boolean mask or an index array; vocabularies are kept."""
        take = lambda a: None if a is None else a[rows]
        return dataclasses.replace(
            self,
            users=self.users[rows],
            items=self.items[rows],
            timestamps=take(self.timestamps),
            ratings=take(self.ratings),
            sessions=take(self.sessions),
        )

    def user_ids(self, tokens) -> np.ndarray:
        """Dense ids of user tokens; raises KeyError naming the first unknown token."""
        return _lookup(self.user_tokens, tokens, f"{self.name}: unknown user")

    def item_ids(self, tokens) -> np.ndarray:
        """Dense ids of item tokens; raises KeyError naming the first unknown token."""
        return _lookup(self.item_tokens, tokens, f"{self.name}: unknown item")

    def category_items(self, category: str) -> np.ndarray:
        """Item ids of one category; raises KeyError listing the known categories."""
        if not self.item_categories or category not in self.item_categories:
            known = sorted(self.item_categories or {})
            raise KeyError(f"{self.name}: category {category!r} not present; known: {known}")
        return self.item_categories[category]

    def compact(self) -> Interactions:
        """Re-index so that only users and items that occur keep an id (after filtering)."""
        used_users, users = np.unique(self.users, return_inverse=True)
        used_items, items = np.unique(self.items, return_inverse=True)
        new_item_id = np.full(self.n_items, -1, np.int64)
        new_item_id[used_items] = np.arange(len(used_items))
        categories = None
        if self.item_categories is not None:
            categories = {}
            for name, ids in self.item_categories.items():
                kept = new_item_id[ids]
                categories[name] = np.sort(kept[kept >= 0]).astype(np.int32)
        features = None
        if self.user_features is not None:
            features = {k: np.asarray(v)[used_users] for k, v in self.user_features.items()}
        return dataclasses.replace(
            self,
            users=users.astype(np.int32),
            items=items.astype(np.int32),
            user_tokens=self.user_tokens[used_users],
            item_tokens=self.item_tokens[used_items],
            item_categories=categories,
            user_features=features,
        )


def _lookup(vocabulary: np.ndarray, tokens, what: str) -> np.ndarray:
    index = {str(t): i for i, t in enumerate(vocabulary)}
    out = np.empty(len(tokens), np.int32)
    for k, token in enumerate(tokens):
        try:
            out[k] = index[str(token)]
        except KeyError:
            raise KeyError(f"{what} {token!r}") from None
    return out


def from_tokens(
    user_tokens,
    item_tokens,
    *,
    timestamps=None,
    ratings=None,
    session_tokens=None,
    item_vocabulary=None,
    name: str = "interactions",
) -> Interactions:
    """Builds `Interactions` from raw token columns, assigning dense ids in first-seen order.

    `item_vocabulary` (optional) fixes the item ids up front, e.g. when items are declared in
    an `.item` file; tokens absent from it raise a KeyError. `session_tokens` (optional) become
    dense session ids in first-seen order.
    """
    user_vocab, users = _factorize(np.asarray(user_tokens))
    if item_vocabulary is None:
        item_vocab, items = _factorize(np.asarray(item_tokens))
    else:
        item_vocab = np.asarray(item_vocabulary)
        items = _lookup(item_vocab, item_tokens, f"{name}: unknown item")
    return Interactions(
        users=users.astype(np.int32),
        items=items.astype(np.int32),
        user_tokens=user_vocab,
        item_tokens=item_vocab,
        timestamps=None if timestamps is None else np.asarray(timestamps, np.float64),
        ratings=None if ratings is None else np.asarray(ratings, np.float32),
        sessions=None if session_tokens is None else _factorize(np.asarray(session_tokens))[1].astype(np.int64),
        name=name,
    )


def _factorize(tokens: np.ndarray):
    """Dense ids in order of first appearance (stable, like pandas.factorize)."""
    vocab, first, inverse = np.unique(tokens, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return vocab[order], rank[inverse]
