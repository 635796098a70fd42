"""Rows of session data sets whose sessions come with the raw file (30Music, #nowplaying).

`SessionRows` gathers (user, item, session, timestamp) as they are read, tokens turned into
dense ids on arrival (`streams.TokenIds`), numbers into typed arrays, so memory grows with the
rows, not the text. `interactions` gives them as `Interactions` without ratings, the session
column holding dense ids in order of first appearance in the rows as given; `renumbered_sessions`
renumbers them after a reordering, so that the written session ids count up down the file, and
gives the table of written id -> raw id (`sessions.csv`).
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


SESSION_TABLE = "sessions.csv"


def renumbered_sessions(inter: Interactions, rows: SessionRows) -> tuple[Interactions, dict[str, dict]]:
    """Session ids 0, 1, ... in order of each session's first row (the grouping is unchanged), and
    the `Prepared.tables` entry naming each one's raw id. `inter.sessions` must hold read ids."""
    read_ids, first, inverse = np.unique(inter.sessions, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(first), np.int64)
    rank[order] = np.arange(len(first))
    raw = rows.session_ids.vocabulary()[read_ids[order]]
    table = {SESSION_TABLE: {"session_id": np.arange(len(first)), "raw_session_id": raw}}
    return dataclasses.replace(inter, sessions=rank[inverse.ravel()]), table
