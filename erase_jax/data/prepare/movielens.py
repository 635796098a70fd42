"""MovieLens (CF) from a GroupLens release folder: the benchmark's `movielens` (spec 1.2, 3.2.1).

Every release the GroupLens site publishes is read, its format recognised by file name:

| release | ratings | movies (genres) | tags |
|---|---|---|---|
| ml-100k | `u.data` (tab) | `u.item` (pipe, 19 genre flags; names from `u.genre`) | - |
| ml-1m, ml-10m | `ratings.dat` (`::`) | `movies.dat` (`::`, genres `|`) | `tags.dat` (ml-10m) |
| ml-20m, ml-25m, ml-32m, ml-latest | `ratings.csv` | `movies.csv` | `tags.csv` |
| Kaggle's ml-20m | `rating.csv` (dates) | `movie.csv` | `tag.csv` |

Rows are (userId, movieId, rating, timestamp in Unix seconds), then the original's
`deduplicate.py` chain (`steps.original_cf_steps`: exact duplicates, sort, 5-core). Genres become
item categories (a space in a genre name becomes "_"; "(no genres listed)" is none). The
sensitive category `health` follows `identify_sensitive_movies.py`: a title signal (exact or
relaxed keywords) and a tag signal (any user tag containing a keyword), one signal suffices.
Movies rated but absent from the movies file get no genres and no title signal (counted in
stats.json's notes).

Deviations from the original: it read only Kaggle's ml-20m and converted the date strings to
Unix seconds in the machine's local time zone; here the dates are read as UTC, so the result
does not depend on where it runs. Its other categories (violence, extreme_violence, explicit)
have keyword lists the spec does not give, so only `health` is offered.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.prepare.base import Prepared, check_categories, register
from erase_jax.data.prepare.keywords import Keywords, SignalRule
from erase_jax.data.prepare.steps import K_CORE, StepLog, original_cf_steps
from erase_jax.data.prepare.streams import InteractionRows, numbers, require_columns, table_chunks, tokens

HEALTH = SignalRule(
    signals={
        "title": Keywords(
            exact=("suicide", "depression", "ptsd", "schizophrenia"),
            relaxed=("mental health", "mental illness", "psychiatric", "psychiatrist", "bipolar", "self harm",
                     "self-harm", "overdose", "addiction", "rehab", "insanity", "insane", "asylum",
                     "institutionalized", "psychosis", "psychotic", "mental hospital", "mental institution"),
        ),
        "tag": Keywords(relaxed=("mental health", "mental illness", "suicide", "suicidal", "depression", "depressing",
                                 "addiction", "alcoholism", "drug abuse", "psychological", "psychiatry", "therapy",
                                 "ptsd", "trauma", "schizophrenia", "bipolar")),
    },
    min_signals=1,
    source="identify_sensitive_movies.py --category health",
)
RULES = {"health": HEALTH}
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")
NO_GENRE = "(no genres listed)"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"  # Kaggle's ml-20m timestamps


@dataclasses.dataclass(frozen=True)
class _Release:
    """Where one release keeps its tables: file, separator, column names (None: a header line)."""

    name: str
    ratings: str
    movies: str
    tags: str | None
    sep: str
    names: bool  # True: files without a header, columns by position
    dates: bool = False  # timestamps as DATE_FORMAT text (Kaggle)


RELEASES = (
    _Release("ml-100k", "u.data", "u.item", None, "\t", True),
    _Release("ml-1m / ml-10m", "ratings.dat", "movies.dat", "tags.dat", "::", True),
    _Release("ml-20m / ml-25m / ml-32m / ml-latest", "ratings.csv", "movies.csv", "tags.csv", ",", False),
    _Release("ml-20m (Kaggle)", "rating.csv", "movie.csv", "tag.csv", ",", False, dates=True),
)
COLUMNS = ("userId", "movieId", "rating", "timestamp")  # the CSV header names; positional files get them too


@register
@dataclasses.dataclass(frozen=True)
class MovieLens:
    """`movielens`: ratings, genres and the health category from any MovieLens release."""

    name = "movielens"
    task = "CF"
    source = "GroupLens, https://grouplens.org/datasets/movielens/ (any release; or Kaggle's ml-20m CSVs)"
    raw_files = ("an unzipped release: u.data + u.item, ratings.dat + movies.dat [+ tags.dat], "
                 "ratings.csv + movies.csv [+ tags.csv], or rating.csv + movie.csv [+ tag.csv]")
    known_categories = tuple(RULES)
    forget_defaults = {"rule": "fit", "rating_threshold": 3.5}  # spec 3.2.2
    downloads = {"ml-20m.zip": "https://files.grouplens.org/datasets/movielens/ml-20m.zip"}  # the benchmark's release

    categories: tuple[str, ...] = ("health",)
    k_core: int = K_CORE
    genres: bool = True  # genres as item categories

    def __post_init__(self):
        object.__setattr__(self, "categories", check_categories(self, self.categories))

    def build(self, raw: Path, log: StepLog) -> Prepared:
        release = find_release(raw)
        files = [raw / name for name in (release.ratings, release.movies, release.tags, "u.genre")
                 if name and (raw / name).is_file()]
        inter, found = log.resumable("read", files, lambda: self.read(raw, release, log.name, log.quiet))
        inter = original_cf_steps(inter, log, self.k_core)
        no_metadata = int(np.count_nonzero(~np.isin(inter.item_tokens, found["titled"])))
        return Prepared(inter, found["sensitive"], "atomic", notes={"release": release.name,
                                                                    "items_without_movie_metadata": no_metadata})

    def read(self, raw: Path, release: _Release, name: str, quiet: bool):
        """The resumable step: the ratings with genres and sensitive movies as categories, and
        extras `titled` (movieIds with a title) and `sensitive` (each category's rule record)."""
        inter = read_ratings(raw, release, quiet).interactions(name)
        titles, genres = read_movies(raw, release)
        tagged = {c: tagged_movies(raw / release.tags, RULES[c], quiet)
                  for c in self.categories if release.tags and (raw / release.tags).is_file()}
        categories: dict[str, set[str]] = {}
        if self.genres:
            for movie, movie_genres in genres.items():
                for genre in movie_genres:
                    categories.setdefault(genre, set()).add(movie)
        sensitive = {}
        for category in self.categories:
            rule, with_tag = RULES[category], tagged.get(category, set())
            with_title = {m for m, title in titles.items() if rule.signals["title"].matches(title)}
            found = {m for m in with_title | with_tag
                     if rule.decides({s for s, hits in (("title", with_title), ("tag", with_tag)) if m in hits})}
            categories[category] = found
            sensitive[category] = {**rule.describe(), "tags_read": category in tagged,
                                   "movies_matched": len(found)}
        item_index = pd.Index(inter.item_tokens)
        inter = dataclasses.replace(inter, item_categories={
            name: np.unique(ids[ids >= 0]).astype(np.int32)
            for name, members in categories.items()
            for ids in [item_index.get_indexer(sorted(members))]
        })
        label = f"read ({release.name}: {release.ratings})"
        return label, inter, {"titled": np.asarray(list(titles), dtype=str), "sensitive": sensitive}


def find_release(raw: Path) -> _Release:
    """The release whose ratings and movies files are in `raw` (first match of RELEASES)."""
    if not raw.is_dir():
        raise FileNotFoundError(f"raw data folder {raw} does not exist")
    for release in RELEASES:
        if (raw / release.ratings).is_file() and (raw / release.movies).is_file():
            return release
    wanted = "; ".join(f"{r.ratings} + {r.movies} ({r.name})" for r in RELEASES)
    raise FileNotFoundError(f"no MovieLens release in {raw}: looked for {wanted}")


def read_ratings(raw: Path, release: _Release, quiet: bool = False) -> InteractionRows:
    """(userId, movieId, rating, Unix-seconds timestamp) rows in file order."""
    path = raw / release.ratings
    rows = InteractionRows()
    if release.sep == "::":  # a one-character separator keeps pandas' fast parser; "::" leaves empty fields
        chunks = table_chunks(path, names=[COLUMNS[0], "_1", COLUMNS[1], "_2", COLUMNS[2], "_3", COLUMNS[3]],
                              sep=":", quiet=quiet)
    else:
        chunks = table_chunks(path, names=list(COLUMNS) if release.names else None, sep=release.sep, quiet=quiet)
    for chunk, lines in chunks:
        require_columns(path, chunk, COLUMNS)
        for gap in ("_1", "_2", "_3"):
            if gap in chunk.columns and (chunk[gap] != "").any():
                raise DataFormatError(path, int(lines[int(np.argmax((chunk[gap] != "").to_numpy()))]),
                                      "expected four fields separated by '::'")
        times = _dates(path, chunk, lines) if release.dates else numbers(path, chunk, lines, "timestamp", integral=True)
        rows.add_chunk(tokens(path, chunk, lines, "userId"), tokens(path, chunk, lines, "movieId"),
                       numbers(path, chunk, lines, "rating"), times)
    return rows


def read_movies(raw: Path, release: _Release) -> tuple[dict[str, str], dict[str, list[str]]]:
    """movieId -> title, and movieId -> genre names (spaces as "_")."""
    path = raw / release.movies
    if release.movies == "u.item":
        names = _ml100k_genres(raw)
        chunks = table_chunks(path, names=["movieId", "title", "release", "video", "url", *names], sep="|")
    elif release.sep == "::":
        chunks = table_chunks(path, names=["movieId", "title", "genres"], sep="::", engine="python")
    else:
        chunks = table_chunks(path)
    titles, genres = {}, {}
    for chunk, lines in chunks:
        require_columns(path, chunk, ("movieId", "title"))
        movies = tokens(path, chunk, lines, "movieId")
        if "genres" in chunk.columns:
            lists = [g.split("|") for g in chunk["genres"].tolist()]
        else:
            flags = chunk[list(names)].to_numpy() == "1"
            lists = [[n for n, f in zip(names, row) if f] for row in flags]
        for movie, title, movie_genres in zip(movies, chunk["title"].tolist(), lists):
            titles[movie] = title
            genres[movie] = [g.strip().replace(" ", "_") for g in movie_genres if g.strip() and g.strip() != NO_GENRE]
    return titles, genres


def tagged_movies(path: Path, rule: SignalRule, quiet: bool = False) -> set[str]:
    """movieIds with a user tag that fires the rule's tag signal, read chunk by chunk."""
    names = ["userId", "movieId", "tag", "timestamp"] if path.suffix == ".dat" else None
    chunks = table_chunks(path, names=names, sep="::" if names else ",", engine="python" if names else "c", quiet=quiet)
    found: set[str] = set()
    for chunk, lines in chunks:
        require_columns(path, chunk, ("movieId", "tag"))
        unique_tags = chunk["tag"].unique()
        hits = {tag for tag in unique_tags if rule.signals["tag"].matches(tag)}
        found.update(tokens(path, chunk, lines, "movieId")[chunk["tag"].isin(hits).to_numpy()])
    return found


def _ml100k_genres(raw: Path) -> tuple[str, ...]:
    """Genre names in flag order from `u.genre` (`name|index` lines), else ML100K_GENRES."""
    path = raw / "u.genre"
    if not path.is_file():
        return ML100K_GENRES
    lines = [line.rsplit("|", 1) for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]
    return tuple(name for name, _ in sorted(lines, key=lambda pair: int(pair[1])))


def _dates(path: Path, chunk: pd.DataFrame, lines: np.ndarray) -> np.ndarray:
    """Kaggle's `YYYY-MM-DD HH:MM:SS` timestamps as Unix seconds, read as UTC."""
    parsed = pd.to_datetime(chunk["timestamp"].str.strip(), format=DATE_FORMAT, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataFormatError(path, int(lines[row]), f"timestamp {chunk['timestamp'].iat[row]!r} is not {DATE_FORMAT}")
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)
