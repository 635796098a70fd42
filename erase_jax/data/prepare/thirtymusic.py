"""30Music (SBR): the benchmark's `30music` from its idomaar files (data-and-evaluation spec 1.3
item 5, 3.2.1, 3.2.2).

Raw files (from the ThirtyMusic archive, `.gz` accepted): `relations/sessions.idomaar` and
`entities/tracks.idomaar`, found in the `--raw` folder or its `relations/` and `entities/`
sub-folders. An idomaar line is `type <TAB> id <TAB> timestamp <TAB> JSON [JSON]`: the
properties object, then the linked entities (in `sessions.idomaar` the two objects are separated
by a space, in `tracks.idomaar` by a tab; both are read).

Rows, as the original's `convert_sessions_to_inter.py`: one per entry of a session's `objects`
(a played track): user = the session's first `subjects` id, session = the session's id, item =
the track id, timestamp = the session's timestamp + the track's `playstart` offset (seconds; a
missing or null offset counts as 0, as the original's default). Sessions without a user or
without tracks are skipped (counted in stats.json's notes). Rows are sorted by user (numerically)
then timestamp; ties keep the file's order (the original's stable sort). No de-duplication and no
k-core: a track played twice stays twice, as in the original.

Sensitive items (`create_forget_sets.py`): a track is sensitive when the `tags` of its linked
entities in `tracks.idomaar` include one of the category's tag ids (`TAG_RULES`). Tracks absent
from `tracks.idomaar` are not sensitive (counted in notes).

`data forget-set` defaults: the "reach" rule, and only users with >= 3 sensitive rows and
>= 3 other rows are drawn (the original's eligibility filter).

Deviations: a line that is not idomaar (fewer than four fields, malformed JSON, a track without an
id, a non-integer timestamp) is an error naming file and line; the original skipped the whole
session silently. Session ids are written renumbered 0, 1, ... down the file (the grouping is
the original's); the raw ids are in `sessions.csv` (session_id, raw_session_id).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.prepare.base import Prepared, check_categories, find_raw_file, register
from erase_jax.data.prepare.session_rows import SessionRows, renumbered_sessions
from erase_jax.data.prepare.steps import StepLog, by_user_then_time
from erase_jax.data.prepare.streams import text_lines

TAG_RULES = {  # category: {tag id: tag name}, create_forget_sets.py
    "explicit": {"77138": "explicit", "193026": "profanity", "174963": "nsfw"},
    "health": {"154395": "mental", "15345": "anxiety", "233689": "suicide", "214036": "self-harm",
               "59294": "depression"},
}
RULE_SOURCE = "30music/create_forget_sets.py: a track whose tags (entities/tracks.idomaar) hold one of the tag ids"


@register
@dataclasses.dataclass(frozen=True)
class ThirtyMusic:
    """`30music`: idomaar listening sessions; explicit (the benchmark's) and health by track tags."""

    name = "30music"
    task = "SBR"
    source = ("30Music (Turrin et al., RecSys 2015 poster, https://ceur-ws.org/Vol-1441/recsys2015_poster13.pdf, "
              "which gives the download address): ThirtyMusic.tar.gz")
    raw_files = "relations/sessions.idomaar and entities/tracks.idomaar (or .gz; in --raw or its sub-folders)"
    known_categories = tuple(TAG_RULES)
    forget_defaults = {"rule": "reach", "min_sensitive_rows": 3, "min_other_rows": 3}  # spec 3.2.2

    categories: tuple[str, ...] = ("explicit", "health")

    def __post_init__(self):
        object.__setattr__(self, "categories", check_categories(self, self.categories))

    def build(self, raw: Path, log: StepLog) -> Prepared:
        sessions = find_raw_file(raw, *_candidates("relations", "sessions.idomaar"))
        tracks = find_raw_file(raw, *_candidates("entities", "tracks.idomaar"))
        rows, notes = read_sessions(sessions, log.quiet)
        inter = rows.interactions(log.name)
        tags = {c: TAG_RULES[c] for c in self.categories}
        matched, described = match_tracks(tracks, set(rows.item_ids.index), tags, log.quiet)
        inter = dataclasses.replace(inter, item_categories={
            c: np.flatnonzero(np.isin(inter.item_tokens, list(matched[c]))).astype(np.int32) for c in self.categories})
        inter, tables = renumbered_sessions(by_user_then_time(inter), rows)
        log.record(f"read ({sessions.name}), sorted by user then time", inter)
        sensitive = {c: {"source": RULE_SOURCE, "tag_ids": sorted(tags[c], key=int), "tag_names": list(tags[c].values()),
                         "tracks_matched": len(matched[c])} for c in self.categories}
        notes["items_without_metadata"] = int(np.count_nonzero(~np.isin(inter.item_tokens, list(described))))
        return Prepared(inter, sensitive, "atomic", notes=notes, tables=tables)


def _candidates(folder: str, name: str) -> tuple[str, ...]:
    return name, f"{name}.gz", f"{folder}/{name}", f"{folder}/{name}.gz"


def idomaar_lines(path: Path, quiet: bool = False) -> Iterator[tuple[int, str, str, list[dict]]]:
    """(line number, id, timestamp text, [properties, linked entities]) per non-blank line."""
    decoder = json.JSONDecoder()
    for number, line in text_lines(path, quiet):
        if not line.strip():
            continue
        fields = line.rstrip("\r\n").split("\t", 3)
        if len(fields) < 4:
            raise DataFormatError(path, number, "expected type, id, timestamp and JSON separated by tabs")
        rest, position, objects = fields[3], 0, []
        while True:
            while position < len(rest) and rest[position].isspace():
                position += 1
            if position == len(rest):
                break
            try:
                value, position = decoder.raw_decode(rest, position)
            except json.JSONDecodeError as error:
                raise DataFormatError(path, number, f"malformed JSON: {error.msg} (column {error.colno})") from None
            if not isinstance(value, dict):
                raise DataFormatError(path, number, f"expected JSON objects, got {type(value).__name__}")
            objects.append(value)
        if not objects:
            raise DataFormatError(path, number, "no JSON after the timestamp")
        yield number, fields[1], fields[2], objects


def read_sessions(path: Path, quiet: bool = False) -> tuple[SessionRows, dict]:
    """The rows of `sessions.idomaar` in file order, and the counts of what was skipped."""
    rows = SessionRows()
    notes = {"sessions_read": 0, "sessions_without_user": 0, "sessions_without_tracks": 0,
             "tracks_without_playstart": 0}
    for number, session, stamp, objects in idomaar_lines(path, quiet):
        notes["sessions_read"] += 1
        start = _integer(path, number, stamp, "session timestamp")
        linked = objects[-1] if len(objects) > 1 else {}
        subjects, played = linked.get("subjects") or [], linked.get("objects") or []
        if not subjects or not isinstance(subjects[0], dict) or subjects[0].get("id") is None:
            notes["sessions_without_user"] += 1
            continue
        if not played:
            notes["sessions_without_tracks"] += 1
            continue
        user = str(subjects[0]["id"])
        for track in played:
            if not isinstance(track, dict) or track.get("id") is None:
                raise DataFormatError(path, number, "a played track without an id")
            offset = track.get("playstart")
            if offset is None:
                notes["tracks_without_playstart"] += 1
                offset = 0
            rows.add(user, str(track["id"]), session, start + _integer(path, number, offset, "playstart"))
    return rows, notes


def match_tracks(path: Path, wanted: set[str], tags: dict[str, dict], quiet: bool = False):
    """(category -> wanted track ids holding one of its tag ids, wanted track ids with a line)."""
    matched = {category: set() for category in tags}
    described = set()
    for number, track, _, objects in idomaar_lines(path, quiet):
        if track not in wanted:
            continue
        described.add(track)
        linked = objects[-1] if len(objects) > 1 else {}
        held = {str(tag.get("id")) for tag in linked.get("tags") or [] if isinstance(tag, dict)}
        for category, ids in tags.items():
            if held & ids.keys():
                matched[category].add(track)
    return matched, described


def _integer(path: Path, line: int, value, what: str) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
        if number != int(number):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise DataFormatError(path, line, f"{what} {value!r} is not an integer") from None
    return int(number)
