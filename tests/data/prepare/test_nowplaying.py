"""The #nowplaying preparer on a hand-made `sessions_2018.csv`.

Checked row by row: musicbrainz ids as items, UTC seconds, exact duplicates of (user, session,
item, timestamp) dropped while the same track at another time or in another session stays,
ties in time ordered by session then item as text, rows without user, item or session and short
lines skipped and counted, a header line anywhere skipped, single-quoted fields holding commas;
the keyword rules on the first "title artist" of each track (whole words for exact keywords,
substrings for relaxed ones); stats; gzip input; errors naming file and line.
"""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from erase_jax.data.atomic import DataFormatError, read_atomic
from erase_jax.data.prepare import prepare_dataset, read_stats

HEADER = "user_id,source,created_at,track_title,artist_name,musicbrainz_id,session_id\n"
T0 = 1_517_702_373  # 2018-02-03 23:59:33 UTC


def stamp(seconds: int) -> str:
    return str(np.datetime64(seconds, "s")).replace("T", " ")


def line(user, seconds, title, artist, mbid, session, source="twitter"):
    return f"{user},{source},{stamp(seconds)},{title},{artist},{mbid},{session}\n"


LINES = [
    HEADER,
    line("u2", T0 + 60, "Hells Bells", "AC/DC", "m-bells", "s20"),  # "hell" exact: not in "Hells"
    line("u1", T0, "Damn Right", "Buddy Guy", "m-damn", "s10"),  # explicit (exact "damn")
    line("u1", T0, "'Gun, Shy'", "Someone", "m-gun", "s10"),  # a quoted comma; violence ("gun" substring)
    line("u1", T0, "Gun Shy", "Someone", "m-gun", "s10"),  # exact duplicate of the row above: dropped
    line("u1", T0 + 30, "Quiet", "Nobody", "m-quiet", "s10"),
    line("u1", T0, "Damn Right", "Buddy Guy", "m-damn", "s09"),  # same item and time, another session: kept
    line("u1", T0 + 90, "Depressed", "Band", "m-damn", "s11"),  # later line of a known track: no new category
    line("u3", T0, "", "Artist", "", "s30"),  # no item: skipped
    line("", T0, "Die Another Day", "Madonna", "m-die", "s40"),  # no user: skipped, but its text is m-die's
    line("u3", T0 + 5, "Something", "Else", "m-die", "s30"),
    "u3,short,line\n",  # fewer than seven fields: skipped
    HEADER,  # a second header (concatenated files): skipped
    line("u2", T0 + 120, "Painkiller", "Judas Priest", "m-pain", "s20"),  # "pain" exact: not in "Painkiller"
    line("u2", T0 + 180, "Weed Song", "Smokers", "m-weed", "s21").rstrip() + ",extra\n",  # relaxed "weed"; an 8th field
]


def nowp_raw(folder, lines=LINES, compress=False):
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(lines).encode()
    if compress:
        (folder / "sessions_2018.csv.gz").write_bytes(gzip.compress(text))
    else:
        (folder / "sessions_2018.csv").write_bytes(text)
    return folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("nowp")
    prepare_dataset("nowp", nowp_raw(root / "raw"), root / "nowp", quiet=True)
    return root / "nowp"


def test_rows_one_by_one(prepared):
    header, *lines = (prepared / "nowp.inter").read_text().splitlines()
    assert header.split("\t") == ["user_id:token", "session_id:token", "item_id:token", "timestamp:float"]
    t = lambda offset: str(T0 + offset)
    assert [line.split("\t") for line in lines] == [
        ["u1", "0", "m-damn", t(0)],  # session s09 before s10 at the same time
        ["u1", "1", "m-damn", t(0)], ["u1", "1", "m-gun", t(0)],  # then items as text
        ["u1", "1", "m-quiet", t(30)], ["u1", "2", "m-damn", t(90)],
        ["u2", "3", "m-bells", t(60)], ["u2", "3", "m-pain", t(120)], ["u2", "4", "m-weed", t(180)],
        ["u3", "5", "m-die", t(5)],
    ]
    assert (prepared / "sessions.csv").read_text().splitlines()[1:] == [
        "0,s09", "1,s10", "2,s11", "3,s20", "4,s21", "5,s30"]


def test_keyword_rules_and_lists(prepared):
    assert (prepared / "sensitive_asins_explicit.txt").read_text() == "m-damn\nm-weed\n"
    assert (prepared / "sensitive_asins_health.txt").read_text() == "m-die\n"  # from the skipped line's title
    assert (prepared / "sensitive_asins_violence.txt").read_text() == "m-die\nm-gun\n"
    inter = read_atomic(prepared)
    assert len(inter) == 9 and inter.ratings is None and len(np.unique(inter.sessions)) == 6
    assert inter.item_tokens[inter.category_items("health")].tolist() == ["m-die"]


def test_stats_and_notes(prepared):
    stats = read_stats(prepared)
    assert [(s["users"], s["items"], s["interactions"], s["sessions"]) for s in stats["steps"]] == [
        (3, 7, 10, 6), (3, 7, 9, 6)]
    assert stats["steps"][-1]["sensitive"]["explicit"] == {"items": 2, "interactions": 4, "share": 4 / 9}
    assert stats["notes"] == {"lines_read": 13, "lines_with_fewer_than_7_fields": 1, "lines_with_more_than_7_fields": 1,
                              "rows_without_user_item_or_session": 2}
    assert stats["sensitive"]["health"]["signals"]["text"]["exact"] == ["die"]
    assert stats["forget_defaults"] == {"rule": "reach"} and stats["task"] == "SBR"


def test_gzip_and_one_category(tmp_path):
    prepare_dataset("nowp", nowp_raw(tmp_path / "raw", compress=True), tmp_path / "nowp",
                    options=["categories=[explicit]"], quiet=True)
    assert sorted(p.name for p in (tmp_path / "nowp").iterdir()) == [
        "nowp.inter", "nowp.item", "sensitive_asins_explicit.txt", "sessions.csv", "stats.json"]


def test_bad_timestamp_names_file_and_line(tmp_path):
    lines = [*LINES[:3], "u9,web,04/02/2018,Song,Artist,m-x,s90\n", *LINES[3:]]
    with pytest.raises(DataFormatError, match=r"sessions_2018.csv, line 4: timestamp '04/02/2018' is not"):
        prepare_dataset("nowp", nowp_raw(tmp_path / "raw", lines), tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


def test_truncated_gzip_names_the_file(tmp_path):
    raw = nowp_raw(tmp_path / "raw", LINES * 50, compress=True)
    path = raw / "sessions_2018.csv.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataFormatError, match="sessions_2018.csv.gz, line \\d+: truncated or corrupt gzip"):
        prepare_dataset("nowp", raw, tmp_path / "out", quiet=True)
