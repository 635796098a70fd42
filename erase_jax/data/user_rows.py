"""Each user's rows (training interactions, or a task's training examples) as a CSR index."""

from __future__ import annotations

import dataclasses

import numpy as np

from erase_jax.data.interactions import Interactions


@dataclasses.dataclass(frozen=True)
class UserRows:
    """Each user's candidate row indices (e.g. training rows), as CSR over dense user ids."""

    offsets: np.ndarray  # int64 [n_users + 1]
    rows: np.ndarray  # int64, grouped by user, ascending within a user

    @classmethod
    def from_rows(cls, inter: Interactions, rows: np.ndarray | None = None) -> UserRows:
        """The given row indices of `inter` (all rows by default) grouped by user."""
        rows = np.arange(len(inter)) if rows is None else np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = np.sort(rows.astype(np.int64))
        grouped = cls.from_groups(inter.users[rows], inter.n_users)
        return cls(grouped.offsets, rows[grouped.rows])

    @classmethod
    def from_groups(cls, owners: np.ndarray, n_users: int) -> UserRows:
        """Rows 0..len(owners)-1 grouped by their owner (e.g. SBR prefix rows by user)."""
        owners = np.asarray(owners, np.int64)
        by_user = np.argsort(owners, kind="stable").astype(np.int64)
        counts = np.bincount(owners, minlength=n_users)
        return cls(np.concatenate([[0], np.cumsum(counts)]).astype(np.int64), by_user)

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def gather(self, users: np.ndarray) -> np.ndarray:
        """All rows of `users`, user by user in the given order."""
        users = np.asarray(users, np.int64)
        starts, counts = self.offsets[users], self.counts[users]
        ends = np.cumsum(counts)
        return self.rows[np.repeat(starts - (ends - counts), counts) + np.arange(ends[-1] if len(ends) else 0)]
