"""#nowplaying (SBR): the benchmark's `nowp` from `sessions_2018.csv` (data-and-evaluation spec
1.3 item 6, 3.2.1, 3.2.2).

Raw file: `sessions_2018.csv` (`.gz` accepted), comma separated, fields quoted with single quotes
(`'...'`, the original reads it with `csv.reader(quotechar="'")`), by position: user id (a hash),
source, timestamp (`YYYY-MM-DD HH:MM:SS`), track title, artist name, musicbrainz id, session id.
A header line (last field `session_id`) is skipped wherever it is.

Rows, as the original's `preprocess_nowp.py`: item = the musicbrainz id, timestamp = Unix
seconds. Skipped and counted in stats.json's notes, as the original skips them: lines with fewer
than seven fields and rows without user, item or session. Then exact duplicates of (user,
session, item, timestamp) are dropped, the first kept (the original's `sort -u`). Rows are
written by user, then time, then session and item id as text: the order RecBole sees after its
stable time sort of the original's lexicographically sorted file. No k-core.

Sensitive items (`create_forget_sets.py`): per musicbrainz id, the text "title artist" of its first
line in the file; a category matches when any of its exact keywords (whole words) or relaxed
keywords (substrings) occurs, case-insensitive (`RULES`).

Deviations: timestamps are read as UTC (the original used the machine's time zone) and one that
does not parse is an error naming file and line (the original wrote 0); the sensitive lists are
named `sensitive_asins_{category}.txt`, the name evaluation reads (the original wrote
`sensitive_tracks_*`, spec section 7 item 5). Session ids are written renumbered 0, 1, ...
down the file; the raw ids are in `sessions.csv` (session_id, raw_session_id).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.interactions import Interactions
from erase_jax.data.prepare.base import Prepared, check_categories, find_raw_file, register
from erase_jax.data.prepare.keywords import Keywords, SignalRule
from erase_jax.data.prepare.session_rows import SessionRows, renumbered_sessions
from erase_jax.data.prepare.steps import StepLog
from erase_jax.data.prepare.streams import text_lines
from erase_jax.data.scenarios import request_order

FIELDS = 7  # user, source, timestamp, title, artist, musicbrainz id, session id
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CHUNK = 200_000  # rows parsed before their timestamps are converted at once


def _rule(exact: tuple[str, ...], relaxed: tuple[str, ...]) -> SignalRule:
    return SignalRule({"text": Keywords(exact, relaxed)}, 1, "nowp/create_forget_sets.py (track title + artist name)")


RULES = {
    "explicit": _rule(("ass", "hell", "damn", "sex"),
                      ("fuck", "shit", "bitch", "drugs", "explicit", "parental advisory", "nsfw", "uncensored", "xxx",
                       "cocaine", "heroin", "weed", "marijuana", "drunk", "alcohol")),
    "health": _rule(("die",), ("depress", "anxiety", "suicide", "self harm", "therapy", "ptsd", "trauma", "breakdown",
                               "bipolar", "schizo", "medication", "overdose", "cutting", "death wish", "end it all",
                               "kill myself")),
    "violence": _rule(("die", "pain", "kill", "hell"),
                      ("murder", "blood", "violence", "gun", "shoot", "weapon", "war", "fight", "attack", "revenge",
                       "torture", "suffer", "massacre", "slaughter", "death", "corpse", "brutal")),
}


@register
@dataclasses.dataclass(frozen=True)
class NowPlaying:
    """`nowp`: #nowplaying listening sessions; explicit (the benchmark's), health, violence by keywords."""

    name = "nowp"
    task = "SBR"
    source = ("#nowplaying listening sessions (Zangerle et al., 2014; #nowplaying-RS, Poddar et al., 2018): "
              "the session file the original reads, which names no download address")
    raw_files = "sessions_2018.csv (or .csv.gz)"
    known_categories = tuple(RULES)
    forget_defaults = {"rule": "reach"}  # spec 3.2.2: no rating threshold, no eligibility filter

    categories: tuple[str, ...] = ("explicit", "health", "violence")

    def __post_init__(self):
        object.__setattr__(self, "categories", check_categories(self, self.categories))

    def build(self, raw: Path, log: StepLog) -> Prepared:
        path = find_raw_file(raw, "sessions_2018.csv", "sessions_2018.csv.gz")
        rules = {c: RULES[c] for c in self.categories}
        rows, matched, notes = read_sessions(path, rules, log.quiet)
        inter = rows.interactions(log.name)
        inter = dataclasses.replace(inter, item_categories={
            c: np.flatnonzero(np.isin(inter.item_tokens, list(matched[c]))).astype(np.int32) for c in self.categories})
        log.record(f"read ({path.name}: {notes['lines_read']:,} lines)", inter)
        inter = log.record("deduplicated (identical user, session, item, timestamp)", deduplicated(inter))
        inter, tables = renumbered_sessions(ordered(inter, rows.session_ids.vocabulary()), rows)
        sensitive = {c: {**RULES[c].describe(), "tracks_matched": len(matched[c])} for c in self.categories}
        return Prepared(inter, sensitive, "atomic", notes=notes, tables=tables)


def read_sessions(path: Path, rules: dict[str, SignalRule], quiet: bool = False):
    """(rows in file order, category -> matched musicbrainz ids, skip counts) of `sessions_2018.csv`."""
    rows = SessionRows()
    matched = {category: set() for category in rules}
    seen: set[str] = set()
    notes = {"lines_read": 0, "lines_with_fewer_than_7_fields": 0, "lines_with_more_than_7_fields": 0,
             "rows_without_user_item_or_session": 0}
    pending: list[tuple[str, str, str, str, int]] = []
    reader = csv.reader((line for _, line in text_lines(path, quiet)), quotechar="'")
    try:
        for fields in reader:
            if not fields or fields[6:7] == ["session_id"]:
                continue
            notes["lines_read"] += 1
            if len(fields) < FIELDS:
                notes["lines_with_fewer_than_7_fields"] += 1
                continue
            notes["lines_with_more_than_7_fields"] += len(fields) > FIELDS
            user, stamp, title, artist, item, session = fields[0], fields[2], fields[3], fields[4], fields[5], fields[6]
            if item and item not in seen:  # the first line of a track decides its categories
                seen.add(item)
                for category, rule in rules.items():
                    if rule.matches({"text": f"{title} {artist}"}):
                        matched[category].add(item)
            if not (user and item and session):
                notes["rows_without_user_item_or_session"] += 1
                continue
            pending.append((user, item, session, stamp, reader.line_num))
            if len(pending) >= CHUNK:
                _flush(path, rows, pending)
    except csv.Error as error:
        raise DataFormatError(path, reader.line_num, f"malformed CSV ({error})") from None
    _flush(path, rows, pending)
    return rows, matched, notes


def _flush(path: Path, rows: SessionRows, pending: list) -> None:
    if not pending:
        return
    users, items, sessions, stamps, lines = (np.asarray(column, dtype=object) for column in zip(*pending))
    parsed = pd.to_datetime(pd.Series(stamps, dtype=str), format=TIME_FORMAT, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFormatError(path, int(lines[row]), f"timestamp {stamps[row]!r} is not {TIME_FORMAT}")
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    rows.add_chunk(users, items, sessions, seconds)
    pending.clear()


def deduplicated(inter: Interactions) -> Interactions:
    """The rows without exact repeats of (user, session, item, timestamp); the first is kept."""
    repeated = pd.DataFrame({"u": inter.users, "s": inter.sessions, "i": inter.items,
                             "t": inter.timestamps}).duplicated().to_numpy()
    return inter.select(~repeated).compact() if repeated.any() else inter


def ordered(inter: Interactions, session_tokens: np.ndarray) -> Interactions:
    """Rows by user (`request_order`), timestamp, then session and item token as text."""
    def rank(order: np.ndarray) -> np.ndarray:
        ranks = np.empty(len(order), np.int64)
        ranks[order] = np.arange(len(order))
        return ranks

    users = rank(request_order(inter.user_tokens))[inter.users]
    sessions = rank(np.argsort(session_tokens.astype(str), kind="stable"))[inter.sessions]
    items = rank(np.argsort(inter.item_tokens.astype(str), kind="stable"))[inter.items]
    return inter.select(np.lexsort((items, sessions, inter.timestamps, users)))
