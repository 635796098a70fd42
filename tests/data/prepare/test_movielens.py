"""The MovieLens preparer on hand-made raw files in every release format.

One small table of ratings is written as ml-100k, ml-1m / ml-10m (`::`), ml-20m and later
(CSV) and Kaggle's ml-20m (dates); each must give the same `.inter`, row by row. The table holds
the edge cases of the original's chain (spec 1.2): an exact duplicate row (dropped), the same
pair again at another time (kept), two rows of one user at the same time (file order kept),
users ordered numerically ("9" before "10"), a user and an item below the 5-core, a movie
without metadata, and titles and tags that do or do not fire the health rule (spec 3.2.1).
"""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest

from erase_jax.data.atomic import DataFormatError, read_atomic
from erase_jax.data.prepare import prepare_dataset, read_stats

USERS = ("10", "9", "2", "31", "4", "5")  # every one rates movies 1-5: 30 rows, all in the 5-core
T0 = 978_300_000
MOVIES = {  # movieId: (title, genres); movie 5 is rated but has no metadata
    "1": ("Suicide Kings (1997)", ("Crime", "Drama")),  # health: exact title keyword
    "2": ("Depressions, Storms and Fronts (1999)", ("Documentary",)),  # "depression" is exact-only: no match
    "3": ("Insanely Twisted (2001)", ("Comedy",)),  # relaxed "insane" is a substring: health
    "4": ("Quiet Days (1990)", ("Sci-Fi", "Film-Noir")),  # health only through a tag (where tags exist)
    "6": ("Never Rated (1980)", ("War",)),
    "99": ("Rare Movie (1995)", ("Horror",)),  # below the 5-core
}
TAGS = [("2", "4", "suicidal thoughts"), ("9", "2", "boring"), ("4", "3", "funny")]


def ratings() -> list[tuple[str, str, int, int]]:
    rows = []
    for u, user in enumerate(USERS):
        for movie in ("1", "2", "3", "4", "5"):
            rows.append((user, movie, 1 + (u + int(movie)) % 5, T0 + 100 * u + int(movie)))
    rows.insert(3, rows[0])  # an exact duplicate of user 10's first row
    rows.append(("10", "1", 5, T0 + 999))  # the same pair at another time and rating: kept
    rows.append(("9", "3", 4, T0 + 50))  # ties in time with the next row (user 9): file order is kept
    rows.append(("9", "4", 2, T0 + 50))
    rows += [("77", "1", 5, T0), ("77", "2", 5, T0)]  # user 77: 2 rows, below the 5-core
    rows += [("2", "99", 3, T0 + 7), ("31", "99", 3, T0 + 8)]  # movie 99: 2 rows, below the 5-core
    return rows


def write_release(folder, release: str, rows=None):
    """The ratings, movies and tags as the files of `release`."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ratings() if rows is None else rows
    if release == "ml-100k":
        genre_names = ["unknown", "Action", "Comedy", "Crime", "Documentary", "Drama", "Film-Noir", "Horror",
                       "Sci-Fi", "War"]
        (folder / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(genre_names)), encoding="latin-1")
        (folder / "u.data").write_text("".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in rows))
        (folder / "u.item").write_text("".join(
            f"{m}|{title}|01-Jan-1995||http://x|" + "|".join("1" if g in genres else "0" for g in genre_names) + "\n"
            for m, (title, genres) in MOVIES.items()), encoding="latin-1")
    elif release == "ml-1m":
        (folder / "ratings.dat").write_text("".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows))
        (folder / "movies.dat").write_text("".join(f"{m}::{title}::{'|'.join(g)}\n" for m, (title, g) in MOVIES.items()),
                                           encoding="latin-1")
        (folder / "tags.dat").write_text("".join(f"{u}::{m}::{tag}::{T0}\n" for u, m, tag in TAGS))
    elif release in ("ml-32m", "kaggle"):
        kaggle = release == "kaggle"
        stamp = (lambda t: datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")) \
            if kaggle else str
        names = ("rating.csv", "movie.csv", "tag.csv") if kaggle else ("ratings.csv", "movies.csv", "tags.csv")
        (folder / names[0]).write_text("userId,movieId,rating,timestamp\n" +
                                       "".join(f"{u},{m},{r}.0,{stamp(t)}\n" for u, m, r, t in rows))
        (folder / names[1]).write_text("movieId,title,genres\n" + "".join(
            f'{m},"{title}",{"|".join(g) or "(no genres listed)"}\n' for m, (title, g) in MOVIES.items()))
        (folder / names[2]).write_text("userId,movieId,tag,timestamp\n" +
                                       "".join(f"{u},{m},{tag},{stamp(T0)}\n" for u, m, tag in TAGS))
    return folder


def inter_lines(folder) -> list[str]:
    return (folder / f"{folder.name}.inter").read_text().splitlines()


RELEASES = ("ml-100k", "ml-1m", "ml-32m", "kaggle")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Each release prepared into `<tmp>/<release>/movielens`."""
    root = tmp_path_factory.mktemp("movielens")
    out = {}
    for release in RELEASES:
        raw = write_release(root / release / "raw", release)
        out[release] = root / release / "movielens"
        prepare_dataset("movielens", raw, out[release], quiet=True)
    return out


def test_inter_row_by_row(prepared):
    lines = inter_lines(prepared["ml-1m"])
    assert lines[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    rows = [line.split("\t") for line in lines[1:]]
    users = [r[0] for r in rows]
    assert list(dict.fromkeys(users)) == ["2", "4", "5", "9", "10", "31"]  # numeric order; 77 left the 5-core
    assert all(r[1] != "99" for r in rows)  # movie 99 left the 5-core
    assert len(rows) == 30 + 1 + 2  # the block, the repeated pair, the two tied rows; the duplicate is gone
    user10 = [(r[1], r[2], r[3]) for r in rows if r[0] == "10"]
    assert user10 == [("1", "2", str(T0 + 1)), ("2", "3", str(T0 + 2)), ("3", "4", str(T0 + 3)),
                      ("4", "5", str(T0 + 4)), ("5", "1", str(T0 + 5)), ("1", "5", str(T0 + 999))]
    user9 = [r[1] for r in rows if r[0] == "9"]
    assert user9 == ["3", "4", "1", "2", "3", "4", "5"]  # the tie at T0 + 50 in file order, then by time
    for user in set(users):  # timestamps ascending within each user
        times = [int(r[3]) for r in rows if r[0] == user]
        assert times == sorted(times)


@pytest.mark.parametrize("release", RELEASES[1:])
def test_every_release_gives_the_same_rows(prepared, release):
    assert inter_lines(prepared[release]) == inter_lines(prepared["ml-100k"])


def test_item_categories_and_health_list(prepared):
    categories = {}
    for line in (prepared["ml-1m"] / "movielens.item").read_text().splitlines()[1:]:
        item, labels = line.split("\t")
        categories[item] = labels.split()
    assert categories == {"1": ["Crime", "Drama", "health"], "2": ["Documentary"], "3": ["Comedy", "health"],
                          "4": ["Film-Noir", "Sci-Fi", "health"], "5": []}
    assert (prepared["ml-1m"] / "sensitive_asins_health.txt").read_text() == "1\n3\n4\n"
    assert (prepared["ml-100k"] / "sensitive_asins_health.txt").read_text() == "1\n3\n"  # ml-100k has no tags
    assert (prepared["kaggle"] / "sensitive_asins_health.txt").read_text() == "1\n3\n4\n"


def test_stats_after_each_step(prepared):
    stats = read_stats(prepared["ml-32m"])
    steps = [(s["users"], s["items"], s["interactions"], s["sensitive"]["health"]["interactions"]) for s in stats["steps"]]
    assert steps == [(7, 6, 38, 23), (7, 6, 37, 22), (6, 5, 33, 21)]  # health: movies 1, 3 and 4
    assert stats["steps"][-1]["density"] == pytest.approx(33 / 30)
    assert stats["summary"] == ("movielens: 6 users, 5 items, 33 interactions (density 110 %); "
                                "sensitive: health 63.6 %")
    health = stats["sensitive"]["health"]
    assert health["file"] == "sensitive_asins_health.txt" and health["min_signals"] == 1
    assert health["movies_matched"] == 3 and health["tags_read"] is True
    assert "suicide" in health["signals"]["title"]["exact"]
    assert stats["notes"] == {"release": "ml-20m / ml-25m / ml-32m / ml-latest", "items_without_movie_metadata": 1}
    assert stats["forget_defaults"] == {"rule": "fit", "rating_threshold": 3.5}
    assert stats["options"] == {"categories": ["health"], "k_core": 5, "genres": True}


def test_the_loader_reads_the_prepared_folder(prepared):
    inter = read_atomic(prepared["ml-1m"])
    assert (inter.n_users, inter.n_items, len(inter)) == (6, 5, 33)
    assert inter.item_tokens[inter.category_items("health")].tolist() == ["1", "3", "4"]
    assert inter.item_tokens[inter.category_items("Comedy")].tolist() == ["3"]


@pytest.mark.parametrize("release, file, bad_line, line, problem", [
    ("ml-1m", "ratings.dat", "7::1::x::978300000\n", 3, "rating 'x' is not a number"),
    ("ml-1m", "ratings.dat", "7:1::4::978300000\n", 3, "expected four fields separated by '::'"),
    ("ml-32m", "ratings.csv", "7,,4.0,978300000\n", 4, "empty movieId"),
    ("ml-32m", "ratings.csv", "7,1,4.0,97830.5\n", 4, "timestamp '97830.5' is not an integer"),
    ("kaggle", "rating.csv", "7,1,4.0,2001-13-01 00:00:00\n", 4, "is not %Y-%m-%d %H:%M:%S"),
])
def test_bad_rows_name_file_and_line_and_write_nothing(tmp_path, release, file, bad_line, line, problem):
    raw = write_release(tmp_path / "raw", release, rows=ratings()[:2])
    path = raw / file
    text = path.read_text().splitlines(keepends=True)
    text.insert(line - 1, bad_line)
    path.write_text("".join(text))
    with pytest.raises(DataFormatError, match=f"{file}, line {line}: .*{problem}"):
        prepare_dataset("movielens", raw, tmp_path / "movielens", quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no output folder, no temporary one


def test_unknown_category_and_missing_files(tmp_path):
    raw = write_release(tmp_path / "raw", "ml-1m")
    with pytest.raises(ValueError, match="unknown sensitive category 'violence'; known: health"):
        prepare_dataset("movielens", raw, tmp_path / "out", options=["categories=[violence]"])
    with pytest.raises(ValueError, match=r"unknown config keys \['movielens option kcore'\]"):
        prepare_dataset("movielens", raw, tmp_path / "out", options=["kcore=3"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no MovieLens release in .*empty: looked for u.data"):
        prepare_dataset("movielens", tmp_path / "empty", tmp_path / "out", quiet=True)
    with pytest.raises(ValueError, match="unknown data set preparer 'movielenz'; available: .*'movielens'"):
        prepare_dataset("movielenz", raw, tmp_path / "out")


def test_a_movies_file_without_its_columns(tmp_path):
    raw = write_release(tmp_path / "raw", "ml-32m")
    (raw / "movies.csv").write_text("id,name\n1,x\n")
    with pytest.raises(DataFormatError, match=r"movies.csv, line 1: header lacks column\(s\) \['movieId', 'title'\]"):
        prepare_dataset("movielens", raw, tmp_path / "movielens", quiet=True)


def test_options_and_overwrite(tmp_path):
    raw = write_release(tmp_path / "raw", "ml-1m")
    out = tmp_path / "ml-1m"
    prepare_dataset("movielens", raw, out, options=["k_core=0", "genres=false"], quiet=True)
    assert len(inter_lines(out)) - 1 == 37  # no 5-core: only the duplicate is gone
    labels = dict(line.split("\t") for line in (out / "ml-1m.item").read_text().splitlines()[1:])
    assert labels == {"1": "health", "2": "", "3": "health", "4": "health", "5": "", "99": ""}
    with pytest.raises(FileExistsError, match="already exists; pass --overwrite"):
        prepare_dataset("movielens", raw, out, quiet=True)
    prepare_dataset("movielens", raw, out, overwrite=True, quiet=True)
    assert len(inter_lines(out)) - 1 == 33
    assert json.loads((out / "stats.json").read_text())["dataset"] == "ml-1m"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-1m", "raw"]


def test_a_failed_overwrite_keeps_the_previous_folder(tmp_path, monkeypatch):
    from erase_jax.data.prepare import output

    raw = write_release(tmp_path / "raw", "ml-1m")
    out = tmp_path / "movielens"
    prepare_dataset("movielens", raw, out, quiet=True)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(output, "write_sensitive_lists", fail)  # after the .inter and .item are written
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset("movielens", raw, out, overwrite=True, quiet=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".movielens.steps", "movielens", "raw"]  # + the read step, for a rerun


def test_ratings_scale_and_kaggle_dates_are_utc(tmp_path):
    rows = [("1", m, 4, 1_000_000_000 + k) for k, m in enumerate(("1", "2", "3", "4", "5"))]
    raw = write_release(tmp_path / "raw", "kaggle", rows=rows * 5)
    prepare_dataset("movielens", raw, tmp_path / "movielens", options=["k_core=0"], quiet=True)
    inter = read_atomic(tmp_path / "movielens")
    assert inter.timestamps.tolist() == [1_000_000_000.0 + k for k in range(5)]  # duplicates gone, UTC seconds
    assert np.all(inter.ratings == 4.0)
