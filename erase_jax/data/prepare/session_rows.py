"""Rows of session data sets whose sessions come with the raw file (30Music, #nowplaying).

`SessionRows` gathers (user, item, session, timestamp) as they are read, tokens turned into
dense ids on arrival (`streams.TokenIds`), numbers into typed arrays, so memory grows with the
rows, not the text. `interactions` gives them as `Interactions` without ratings, the session
column holding dense ids in order of first appearance in the rows as given; `renumbered_sessions`
renumbers them after a reordering, so that the written session ids count up down the file.
"""

from __future__ import annotations

import dataclasses
from array import array

import numpy as np

from erase_jax.data.interactions import Interactions
from erase_jax.data.prepare.streams import TokenIds


class SessionRows:
    """(user, item, session, timestamp) rows, tokens as dense ids in first-seen order."""

    def __init__(self):
        self.user_ids, self.item_ids, self.session_ids = TokenIds(), TokenIds(), TokenIds()
        self._columns = (array("q"), array("q"), array("q"), array("d"))

    def __len__(self) -> int:
        return len(self._columns[0])

    def add(self, user: str, item: str, session: str, timestamp: float) -> None:
        users, items, sessions, timestamps = self._columns
        users.append(self.user_ids.id(user))
        items.append(self.item_ids.id(item))
        sessions.append(self.session_ids.id(session))
        timestamps.append(timestamp)

    def add_chunk(self, users: np.ndarray, items: np.ndarray, sessions: np.ndarray, timestamps: np.ndarray) -> None:
        """Many rows: token arrays and float timestamps."""
        for column, values in zip(self._columns, (self.user_ids.ids(users), self.item_ids.ids(items),
                                                  self.session_ids.ids(sessions), timestamps)):
            column.extend(np.asarray(values, np.int64 if column.typecode == "q" else np.float64).tolist())

    def interactions(self, name: str) -> Interactions:
        users, items, sessions, timestamps = (np.frombuffer(c, np.int64 if c.typecode == "q" else np.float64)
                                              for c in self._columns)
        return Interactions(users=users.astype(np.int32), items=items.astype(np.int32),
                            user_tokens=self.user_ids.vocabulary(), item_tokens=self.item_ids.vocabulary(),
                            timestamps=timestamps.copy(), sessions=sessions.copy(), name=name)

    def session_tokens(self, inter: Interactions) -> np.ndarray:
        """The raw session token of each row of `inter` (read ids, before `renumbered_sessions`)."""
        return self.session_ids.vocabulary()[inter.sessions]


def renumbered_sessions(inter: Interactions) -> Interactions:
    """Session ids 0, 1, ... in order of each session's first row (the grouping is unchanged)."""
    _, first, inverse = np.unique(inter.sessions, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return dataclasses.replace(inter, sessions=rank[inverse.ravel()])
