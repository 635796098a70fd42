"""The 30Music preparer on hand-made idomaar files.

Checked row by row: one row per played track at session start + playstart, users in numeric
order then time, ties in time in file order (a missing playstart counts as 0), a track played
twice kept twice (no de-duplication), two sessions of one user interleaving in time keeping their
own session ids, sessions without a user or tracks skipped and counted; the tag-id rule per
category, a track without a tracks.idomaar line, both JSON separators (space and tab), gzip
input, and errors naming file and line.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from erase_jax.data.atomic import DataFormatError, read_atomic
from erase_jax.data.prepare import prepare_dataset, read_stats, write_forget_sets
from erase_jax.data.prepare.thirtymusic import TAG_RULES
from tests.data.prepare.raw_files import idomaar_session, idomaar_track, write_thirtymusic

T0 = 1_390_000_000
EXPLICIT, HEALTH = "77138", "59294"  # tag ids of the original's rule (nsfw-like, depression)


SESSIONS = [
    idomaar_session(500, T0, 10, [(1, 0), (2, 200), (1, 400)]),  # track 1 twice: both rows kept
    idomaar_session(501, T0 + 100, 2, [(3, 0), (4, 0), (5, None)], separator="\t"),  # a tie in time: file order
    idomaar_session(502, T0 + 1000, 7, [(1, 0), (3, 300)]),
    idomaar_session(503, T0 + 1100, 7, [(2, 0)]),  # interleaves with session 502 of the same user
    idomaar_session(504, T0 + 50, 2, [(6, 0)]),  # earlier than 501: first in user 2's rows
    idomaar_session(505, T0, None, [(1, 0)]),  # no user: skipped
    idomaar_session(506, T0, 10, []),  # no tracks: skipped
]
TRACKS = [idomaar_track(1, [EXPLICIT, "12"]), idomaar_track(2, [HEALTH]), idomaar_track(3, ["193026", "15345"]),
          idomaar_track(4), idomaar_track(5, ["999"]), idomaar_track(99, [EXPLICIT])]  # no line for track 6; 99 never played


def thirtymusic_raw(folder, sessions=SESSIONS, tracks=TRACKS, compress=False):
    write_thirtymusic(folder, sessions, tracks)
    if compress:
        for path in folder.rglob("*.idomaar"):
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
    return folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("thirtymusic")
    prepare_dataset("30music", thirtymusic_raw(root / "raw"), root / "30music", quiet=True)
    return root / "30music"


def test_rows_one_by_one(prepared):
    header, *lines = (prepared / "30music.inter").read_text().splitlines()
    assert header.split("\t") == ["user_id:token", "session_id:token", "item_id:token", "timestamp:float"]
    rows = [line.split("\t") for line in lines]
    t = lambda offset: str(T0 + offset)
    assert rows == [
        ["2", "0", "6", t(50)],
        ["2", "1", "3", t(100)], ["2", "1", "4", t(100)], ["2", "1", "5", t(100)],  # tie: file order
        ["7", "2", "1", t(1000)], ["7", "3", "2", t(1100)], ["7", "2", "3", t(1300)],  # interleaved sessions
        ["10", "4", "1", t(0)], ["10", "4", "2", t(200)], ["10", "4", "1", t(400)],  # the repeat kept
    ]
    raw_ids = (prepared / "sessions.csv").read_text().splitlines()
    assert raw_ids == ["session_id,raw_session_id", "0,504", "1,501", "2,502", "3,503", "4,500"]


def test_sensitive_lists_item_file_and_reader(prepared):
    assert (prepared / "sensitive_asins_explicit.txt").read_text() == "1\n3\n"  # 99 is never played
    assert (prepared / "sensitive_asins_health.txt").read_text() == "2\n3\n"
    items = dict(line.split("\t") for line in (prepared / "30music.item").read_text().splitlines()[1:])
    assert items == {"6": "", "3": "explicit health", "4": "", "5": "", "1": "explicit", "2": "health"}
    inter = read_atomic(prepared)
    assert len(inter) == 10 and inter.ratings is None and len(np.unique(inter.sessions)) == 5
    assert sorted(inter.item_tokens[inter.category_items("explicit")].tolist()) == ["1", "3"]


def test_stats_and_notes(prepared):
    stats = read_stats(prepared)
    [step] = stats["steps"]
    assert (step["users"], step["items"], step["interactions"], step["sessions"]) == (3, 6, 10, 5)
    assert step["sensitive"]["explicit"] == {"items": 2, "interactions": 5, "share": 0.5}
    assert stats["notes"] == {"sessions_read": 7, "sessions_without_user": 1, "sessions_without_tracks": 1,
                              "tracks_without_playstart": 1, "items_without_metadata": 1}
    assert stats["sensitive"]["health"]["tag_ids"] == sorted(TAG_RULES["health"], key=int)
    assert stats["sensitive"]["explicit"]["tracks_matched"] == 2
    assert stats["forget_defaults"] == {"rule": "reach", "min_sensitive_rows": 3, "min_other_rows": 3}
    assert stats["task"] == "SBR" and stats["summary"].startswith("30music: 3 users, 6 items, 5 sessions")


def test_gzip_files_in_the_raw_folder_itself(tmp_path):
    raw = thirtymusic_raw(tmp_path / "nested", compress=True)
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in raw.rglob("*.gz"):
        path.rename(flat / path.name)
    prepare_dataset("30music", flat, tmp_path / "30music", options=["categories=[health]"], quiet=True)
    assert (tmp_path / "30music" / "sensitive_asins_health.txt").read_text() == "2\n3\n"
    assert not (tmp_path / "30music" / "sensitive_asins_explicit.txt").exists()


@pytest.mark.parametrize("bad, problem", [
    ("event.session\t507\t1390000000\n", "line 3: expected type, id, timestamp and JSON"),
    ("event.session\t507\tsoon\t{} {\"subjects\": [{\"id\": 1}], \"objects\": [{\"id\": 1}]}\n",
     "line 3: session timestamp 'soon' is not an integer"),
    ("event.session\t507\t1390000000\t{} {\"subjects\": [{\"id\": 1}], \"objects\": [{\"playstart\": 0}]}\n",
     "line 3: a played track without an id"),
    ("event.session\t507\t1390000000\t{\"numtracks\": 1} {\"subjects\": \n", "line 3: malformed JSON"),
])
def test_bad_lines_name_file_and_line(tmp_path, bad, problem):
    raw = thirtymusic_raw(tmp_path / "raw", sessions=[*SESSIONS[:2], bad, *SESSIONS[2:]])
    with pytest.raises(DataFormatError, match=f"sessions.idomaar, {problem}"):
        prepare_dataset("30music", raw, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_unknown_category_and_missing_tracks_file(tmp_path):
    with pytest.raises(ValueError, match="30music: unknown sensitive category 'violence'; known: explicit, health"):
        prepare_dataset("30music", tmp_path, tmp_path / "out", options=["categories=[violence]"], quiet=True)
    raw = thirtymusic_raw(tmp_path / "raw")
    (raw / "entities" / "tracks.idomaar").unlink()
    with pytest.raises(FileNotFoundError, match="tracks.idomaar"):
        prepare_dataset("30music", raw, tmp_path / "out", quiet=True)


def test_forget_set_only_draws_eligible_users(tmp_path):
    """Users 2 (two explicit rows) and 3 (two other rows) fail the original's filter; T = 6 is
    reached only with both eligible users, 1 (3 + 3 rows) and 4 (4 + 3), whichever comes first."""
    plays = {1: [1, 1, 1, 5, 5, 5], 2: [1, 1, 5, 5, 5, 5], 3: [1, 1, 1, 5, 5], 4: [3, 3, 3, 3, 6, 6, 6]}
    sessions = [idomaar_session(100 + user, T0, user, [(t, 10 * k) for k, t in enumerate(tracks)])
                for user, tracks in plays.items()]
    raw = write_thirtymusic(tmp_path / "raw", sessions, [idomaar_track(1, [EXPLICIT]), idomaar_track(3, [EXPLICIT])])
    prepare_dataset("30music", raw, tmp_path / "30music", quiet=True)
    [path] = write_forget_sets(tmp_path / "30music", "sensitive", [0.25], [2], category="explicit", quiet=True)
    assert path.name == "30music_unlearn_pairs_sensitive_category_explicit_seed_2_unlearning_fraction_0.25.inter"
    rows = sorted(tuple(line.split("\t")[0:3:2]) for line in path.read_text().splitlines()[1:])  # user, item
    assert rows == [("1", "1")] * 3 + [("4", "3")] * 4
