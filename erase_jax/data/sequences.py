"""Session-based (SBR) task data: chronological sequences -> prefix -> next-item rows -> split.

The original (data-and-evaluation spec 1.3) builds one chronological sequence per USER
(sessions concatenated; `session_id` is carried but unused) and augments it into one row per
prefix: for items i1..in sorted by time, <i1..ik> -> i(k+1) for k = 1..n-1, prefixes cut to
their last `max_length` (50) items. Each sequence's rows, in time order, are then split with
the same per-user ratio rule as CF (`splits.ratio_counts`, 80/10/10): 3 interactions -> 2 rows
-> 1/0/1, 4 -> 1/1/1. No k-core or length filter: one-item sequences give no rows.

Grouping per session instead of per user is an option (`SequenceConfig.group_by`): the
session ids are then the sequence ids, cut by an inactivity gap (`sessions_by_gap`) when the
data has none. Diginetica click files (`read_diginetica`) carry sessions and almost no users,
so their "users" are their sessions.

Item ids in prefixes are the `Interactions` ids; positions past a row's length hold the
padding id `n_items`, one past the last item, so a model's (n_items + 1)-row embedding table
can gather them safely. Nothing here needs JAX.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.interactions import Interactions, from_tokens
from erase_jax.data.splits import TEST, TRAIN, VALID, _cut_each_user

MAX_LENGTH = 50  # RecBole's MAX_ITEM_LIST_LENGTH default, used by every ERASE SBR config
GROUP_BY = ("user", "session")
OBJECTIVES = ("prefixes", "all_positions")
DIGINETICA_HEADER = ("session_id", "user_id", "item_id", "timeframe", "eventdate")


@dataclasses.dataclass(frozen=True)
class SequenceConfig:
    """How interactions become sequences.

    group_by: "user" (the original: one sequence per user) or "session".
    session_gap: seconds of inactivity that start a new session when sessions are asked for
      and the data has no session ids (the original's `add_sessions.py` uses 1 h).
    max_length: prefixes keep their last `max_length` items.
    mix_lengths: training batches draw rows of any length together, as RecBole's do (default;
      a batch runs at its longest row's width). False: each batch holds one length bucket,
      cheaper per epoch but slower to learn (GRU4Rec on ml-100k ends epoch 1 at loss 6.72
      against 6.63 mixed and RecBole's 6.61; `erase_jax.sbr.SequenceBatcher`).
    objective: "prefixes" (the original: every prefix row is its own example) or
      "all_positions" (causal models only: one pass over each chunk of a sequence scores every
      position, `erase_jax.data.positions`; used alike by the original run, its retrains and
      the unlearning requests).
    """

    group_by: str = "user"
    session_gap: float | None = None
    max_length: int = MAX_LENGTH
    mix_lengths: bool = True
    objective: str = "prefixes"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"sequence objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.group_by not in GROUP_BY:
            raise ValueError(f"sequence group_by must be one of {GROUP_BY}, got {self.group_by!r}")
        if self.max_length < 1:
            raise ValueError(f"sequence max_length must be >= 1, got {self.max_length}")
        if self.session_gap is not None and self.session_gap <= 0:
            raise ValueError(f"sequence session_gap must be positive seconds, got {self.session_gap}")


@dataclasses.dataclass(frozen=True)
class SequenceRows:
    """Prefix -> next-item rows, ordered by sequence, then time.

    sequences: int32 [n_rows], the sequence (user or session) each row comes from.
    prefixes: int32 [n_rows, max_length], left-aligned, padded with `n_items`.
    lengths: int32 [n_rows], in [1, max_length].
    targets: int32 [n_rows], the next item.
    target_rows: int64 [n_rows], the `Interactions` row of the target (for removal masks).
    target_times: float64 [n_rows], the target's timestamp (recency for session-kNN).
    ranks: int32 [n_rows], the target's position in its sequence (1: the sequence's second item).
    """

    n_items: int
    sequences: np.ndarray
    prefixes: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray
    target_rows: np.ndarray
    target_times: np.ndarray
    ranks: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def max_length(self) -> int:
        return self.prefixes.shape[1]

    def select(self, rows) -> SequenceRows:
        return dataclasses.replace(
            self,
            sequences=self.sequences[rows],
            prefixes=self.prefixes[rows],
            lengths=self.lengths[rows],
            targets=self.targets[rows],
            target_rows=self.target_rows[rows],
            target_times=self.target_times[rows],
            ranks=self.ranks[rows],
        )

    def prefix_lists(self) -> list[list[int]]:
        """The prefixes as Python lists without padding (for tests and messages)."""
        return [p[:n].tolist() for p, n in zip(self.prefixes, self.lengths)]


@dataclasses.dataclass(frozen=True)
class SequenceSplit:
    train: SequenceRows
    valid: SequenceRows
    test: SequenceRows


def augment(inter: Interactions, groups: np.ndarray | None = None, max_length: int = MAX_LENGTH) -> SequenceRows:
    """Every prefix -> next-item row of every sequence (spec 1.3), prefixes truncated.

    `groups` (int per interaction row) names the sequence of each row; default the users.
    Rows are sorted stably by (group, timestamp): equal timestamps keep their file order, as
    RecBole's stable sort does.
    """
    if inter.timestamps is None:
        raise ValueError(f"{inter.name}: sequences need timestamps to order the interactions")
    groups = inter.users if groups is None else np.asarray(groups)
    if groups.shape != (len(inter),):
        raise ValueError(f"{inter.name}: one sequence id per interaction is needed, got shape {groups.shape}")
    order = np.lexsort((inter.timestamps, groups))
    sorted_groups = groups[order]
    sorted_items = inter.items[order]
    n = len(order)
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]) if n else np.zeros(0, np.int64)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    is_target = rank >= 1  # the first interaction of a sequence has no prefix
    positions = np.flatnonzero(is_target)
    lengths = np.minimum(rank[positions], max_length)
    columns = np.arange(max_length)
    source = (positions - lengths)[:, None] + columns[None, :]
    valid = columns[None, :] < lengths[:, None]
    prefixes = np.where(valid, sorted_items[np.where(valid, source, 0)], inter.n_items).astype(np.int32)
    return SequenceRows(
        n_items=inter.n_items,
        sequences=sorted_groups[positions].astype(np.int32),
        prefixes=prefixes.reshape(len(positions), max_length),
        lengths=lengths.astype(np.int32),
        targets=sorted_items[positions].astype(np.int32),
        target_rows=order[positions].astype(np.int64),
        target_times=np.asarray(inter.timestamps, np.float64)[order[positions]],
        ranks=rank[positions].astype(np.int32),
    )


def split_rows(rows: SequenceRows, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> SequenceSplit:
    """Each sequence's rows, in time order, cut with the per-user ratio rule (spec 1.3).

    The cut is `splits.ratio_counts` applied to the number of rows (n - 1 for n
    interactions), the same rule as the CF split: the earliest rows train, the latest test.
    """
    part = _cut_each_user(rows.sequences, np.arange(len(rows)), ratios)
    return SequenceSplit(*(rows.select(part == p) for p in (TRAIN, VALID, TEST)))


def build_sequences(inter: Interactions, config: SequenceConfig = SequenceConfig(),
                    ratios: Sequence[float] = (0.8, 0.1, 0.1), sessions: np.ndarray | None = None) -> SequenceSplit:
    """Interactions -> sequences (per user or per session) -> augmented rows -> split.

    `sessions` are the data's own session ids per row (default: `inter.sessions`, read from a
    `session_id` column); grouping by session without them cuts sessions by `config.session_gap`.
    """
    groups = None
    if config.group_by == "session":
        sessions = inter.sessions if sessions is None else sessions
        if sessions is None:
            if config.session_gap is None:
                raise ValueError(
                    f"{inter.name}: group_by 'session' needs session ids in the data or a session_gap (seconds)"
                )
            sessions = sessions_by_gap(inter.users, inter.timestamps, config.session_gap)
        groups = np.asarray(sessions)
    return split_rows(augment(inter, groups, config.max_length), ratios)


def sessions_by_gap(users: np.ndarray, timestamps: np.ndarray | None, gap: float) -> np.ndarray:
    """Session id per row: per user in time order, a new session starts after more than `gap`.

    The rule of the original's `add_sessions.py` (spec 1.3, Amazon Books): a gap that exceeds
    the window starts a session. Ids are dense int64, numbered by (user, start time).
    """
    if timestamps is None:
        raise ValueError("cutting sessions by an inactivity gap needs timestamps")
    order = np.lexsort((timestamps, users))
    sorted_users, sorted_times = users[order], np.asarray(timestamps)[order]
    new_session = np.r_[True, (sorted_users[1:] != sorted_users[:-1]) | (np.diff(sorted_times) > gap)]
    sessions = np.empty(len(users), np.int64)
    sessions[order] = np.cumsum(new_session) - 1
    return sessions


def read_diginetica(path: str | Path) -> Interactions:
    """A Diginetica (CIKM Cup 2016) item-view file: `session_id;user_id;item_id;timeframe;eventdate`.

    Returns interactions whose "users" are the sessions (user ids are mostly "NA" in this
    data; grouping by user would merge unrelated sessions). Timestamp = the event date
    (midnight UTC, seconds) + timeframe (milliseconds) / 1000, the order SR-GNN's
    preprocessing uses within a session. Malformed lines raise `DataFormatError` naming the
    file and line. No filtering: one-click sessions simply produce no rows.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "train-item-views.csv"
    if not path.is_file():
        raise FileNotFoundError(f"Diginetica click file not found: {path}")
    sessions, items, times = [], [], []
    dates: dict[str, float] = {}
    with open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter=";")
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != DIGINETICA_HEADER:
            raise DataFormatError(path, 1, f"expected the header {';'.join(DIGINETICA_HEADER)}, got {header!r}")
        for line_number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) != len(DIGINETICA_HEADER):
                raise DataFormatError(path, line_number, f"expected {len(DIGINETICA_HEADER)} fields, got {len(fields)}")
            session, _, item, timeframe, date = (f.strip() for f in fields)
            if not session or not item:
                raise DataFormatError(path, line_number, "empty session_id or item_id")
            try:
                milliseconds = float(timeframe)
            except ValueError:
                raise DataFormatError(path, line_number, f"timeframe {timeframe!r} is not a number") from None
            if date not in dates:
                try:
                    day = datetime.datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
                except ValueError:
                    raise DataFormatError(path, line_number, f"eventdate {date!r} is not YYYY-MM-DD") from None
                dates[date] = day.timestamp()
            sessions.append(session)
            items.append(item)
            times.append(dates[date] + milliseconds / 1000.0)
    if not sessions:
        raise DataFormatError(path, None, "no clicks after the header")
    return from_tokens(np.asarray(sessions), np.asarray(items), timestamps=np.asarray(times), name=path.parent.name)
