"""Goodreads (CF, UCSD Book Graph): the benchmark's `goodreads` (data-and-evaluation spec 1.2, 3.2.1).

Raw files: `goodreads_interactions.csv` (user_id, book_id, is_read, rating, is_reviewed; the
anonymised csv ids, in the file's order, which is the temporal order), `book_id_map.csv`
(book_id_csv -> book_id, the real Goodreads id) and `goodreads_books.json[.gz]` (one book a
line: book_id, title, description, popular_shelves).

Rows are those rated > 0 and >= `min_rating` (3.0, the wrapper's default of
`preprocess_goodreads.py`); there is no real timestamp, so timestamp := the running index of the
kept row (0, 1, ...), then the original's `deduplicate.py` chain (`steps.original_cf_steps`).
The `.inter` keeps the csv ids, as the original's; `.item` adds each book's real id
(`goodreads_book_id`).

Sensitive `mental_health` (`identify_sensitive_books.py`): signals title and description
(exact or relaxed keywords) and shelf (any popular shelf name matching), at least two. The
original's optional genre signal needs a genre file it does not pass by default, so it is left out.

Deviation from the original (spec section 7 item 4): its sensitive list holds real book ids
while its interactions hold csv ids, so nothing matched; here the real ids matched in the
metadata are mapped back to csv ids through `book_id_map.csv`. Books missing from the map or
from the metadata are not sensitive (counted in stats.json's notes).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.prepare.base import Prepared, check_categories, find_raw_file, register
from erase_jax.data.prepare.keywords import Keywords, SignalRule, match_records
from erase_jax.data.prepare.steps import K_CORE, StepLog, original_cf_steps
from erase_jax.data.prepare.streams import (
    InteractionRows,
    numbers,
    require_columns,
    table_chunks,
    tokens,
)

_EXACT = ("suicide", "depression", "anxiety", "trauma", "ptsd")
_RELAXED = ("mental health", "mental illness", "self harm", "self-harm", "therapy", "psychiatric", "breakdown",
            "bipolar", "schizophrenia", "medication", "overdose", "cutting", "grief", "bereavement",
            "disorder", "anorexia", "bulimia", "eating disorder")
MENTAL_HEALTH = SignalRule(
    {name: Keywords(_EXACT, _RELAXED) for name in ("title", "description", "shelf")},
    2, "identify_sensitive_books.py --category mental_health",
)
RULES = {"mental_health": MENTAL_HEALTH}
DOWNLOAD_BASE = "https://datarepo.eng.ucsd.edu/mcauley_group/gdrive/goodreads"  # the Book Graph page's links


@register
@dataclasses.dataclass(frozen=True)
class Goodreads:
    """`goodreads`: ratings >= 3 in file order, mental_health by title, description and shelves."""

    name = "goodreads"
    task = "CF"
    source = "UCSD Book Graph, https://mengtingwan.github.io/data/goodreads (complete data)"
    raw_files = "goodreads_interactions.csv, book_id_map.csv, goodreads_books.json.gz"
    known_categories = tuple(RULES)
    forget_defaults = {"rule": "fit", "rating_threshold": 3.0}  # spec 3.2.2
    downloads = {f: f"{DOWNLOAD_BASE}/{f}" for f in ("goodreads_interactions.csv", "book_id_map.csv", "goodreads_books.json.gz")}

    categories: tuple[str, ...] = ("mental_health",)
    min_rating: float = 3.0
    k_core: int = K_CORE

    def __post_init__(self):
        object.__setattr__(self, "categories", check_categories(self, self.categories))

    def build(self, raw: Path, log: StepLog) -> Prepared:
        interactions = find_raw_file(raw, "goodreads_interactions.csv", "goodreads_interactions.csv.gz")
        book_map = find_raw_file(raw, "book_id_map.csv")
        books = find_raw_file(raw, "goodreads_books.json.gz", "goodreads_books.json")
        read, found = log.resumable("read", (interactions, book_map, books),
                                    lambda: self.read(interactions, book_map, books, log.name, log.quiet))
        inter = original_cf_steps(read, log, self.k_core)
        kept_real = found["real_ids"][pd.Index(read.item_tokens).get_indexer(inter.item_tokens)]
        sensitive = {c: {**RULES[c].describe(), "books_matched": found["matched"][c]} for c in self.categories}
        notes = {"items_without_book_id": int(np.count_nonzero(kept_real == "")),
                 "items_without_metadata": int(np.count_nonzero(~np.isin(kept_real, found["described"])))}
        fields = {"goodreads_book_id": np.where(kept_real == "", "-", kept_real)}
        return Prepared(inter, sensitive, "atomic", item_fields=fields, notes=notes)

    def read(self, interactions: Path, book_map: Path, books: Path, name: str, quiet: bool):
        """The resumable step: the kept rows with the sensitive books as categories, and extras
        `real_ids` (real book id per read item id, "" where unmapped), `described` (real ids with
        a metadata record), `matched` (books matched per category)."""
        rows, n_read = self.read_interactions(interactions, quiet)
        inter = rows.interactions(name)
        real_ids = read_book_map(book_map, inter.item_tokens, quiet)
        rules = {c: RULES[c] for c in self.categories}
        matched, described = match_records(books, "book_id", set(real_ids[real_ids != ""]), rules, self.texts, quiet)
        inter = dataclasses.replace(inter, item_categories={
            c: np.flatnonzero(np.isin(real_ids, list(matched[c]))).astype(np.int32) for c in self.categories})
        found = {"real_ids": real_ids, "described": np.asarray(sorted(described), dtype=str),
                 "matched": {c: len(matched[c]) for c in self.categories}}
        return f"read ({interactions.name}: {n_read:,} rows; kept rating > 0 and >= {self.min_rating:g})", inter, found

    def read_interactions(self, path: Path, quiet: bool) -> tuple[InteractionRows, int]:
        """Rows rated > 0 and >= min_rating, timestamp = their running index; and the rows read."""
        rows, n_read = InteractionRows(), 0
        for chunk, lines in table_chunks(path, quiet=quiet):
            require_columns(path, chunk, ("user_id", "book_id", "rating"))
            ratings = numbers(path, chunk, lines, "rating")
            kept = (ratings > 0) & (ratings >= self.min_rating)
            users, books = tokens(path, chunk, lines, "user_id"), tokens(path, chunk, lines, "book_id")
            rows.add_chunk(users[kept], books[kept], ratings[kept], len(rows) + np.arange(int(kept.sum())))
            n_read += len(chunk)
        return rows, n_read

    @staticmethod
    def texts(record: dict) -> dict:
        """A book record's text per signal: title, description, popular shelf names."""
        shelves = record.get("popular_shelves") or []
        if not isinstance(shelves, list):
            raise ValueError(f"popular_shelves is a {type(shelves).__name__}, expected a list")
        return {"title": str(record.get("title") or ""), "description": str(record.get("description") or ""),
                "shelf": [str(s.get("name", "")) for s in shelves if isinstance(s, dict)]}


def read_book_map(path: Path, csv_ids: np.ndarray, quiet: bool = False) -> np.ndarray:
    """The real book id of each csv id in `csv_ids` ("" where the map has none)."""
    wanted = {str(t): k for k, t in enumerate(csv_ids)}
    real = np.full(len(csv_ids), "", dtype=object)
    for chunk, lines in table_chunks(path, quiet=quiet):
        require_columns(path, chunk, ("book_id_csv", "book_id"))
        for csv_id, real_id in zip(tokens(path, chunk, lines, "book_id_csv"), tokens(path, chunk, lines, "book_id")):
            if csv_id in wanted:
                real[wanted[csv_id]] = real_id
    return real.astype(str)
