"""Amazon Reviews 2023 (McAuley lab): the benchmark's Grocery (CF) and Books (SBR) data sets
(data-and-evaluation spec 1.2, 1.3, 3.2.1).

Raw files: the review file `<Category>.jsonl[.gz]` (fields user_id, asin, parent_asin, rating,
timestamp in ms) and the metadata file `meta_<Category>.jsonl[.gz]` (parent_asin, main_category,
title, features, description, categories, details, store), streamed line by line. Rows are
(user_id, asin, rating, timestamp), then the original's `deduplicate.py` chain
(`steps.original_cf_steps`); Books then cuts sessions per user where the gap to the previous
interaction exceeds one hour (`add_sessions.py`, timestamps and window in ms).

Sensitive items: a metadata record (a parent_asin) is matched by the data set's rule
(`GROCERY_RULES`: any whole-word keyword anywhere in the record, `identify_sensitive_items.py`;
`BOOKS_RULES`: the multi-signal detector with per-category min_signals), then every review
`asin` whose parent_asin matched is sensitive (the grocery's
`get_sensitive_asins_from_sensitive_parent_asins.py`). Items whose parent has no metadata
record are not sensitive (counted in stats.json's notes).

Deviations from the original: the Books detector wrote parent_asins, which the interactions
(asins) never match (spec section 7 item 4); here Books maps them to asins as the grocery
chain does. Books' session ids are written as dense integers in the `session_id` column (second,
as the original's), not as `{user_id}_session_{k}`: the grouping is the same.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.interactions import Interactions
from erase_jax.data.prepare.base import Prepared, check_categories, find_raw_file, register
from erase_jax.data.prepare.keywords import Keywords, SignalRule, match_records
from erase_jax.data.prepare.steps import K_CORE, StepLog, original_cf_steps
from erase_jax.data.prepare.streams import InteractionRows, json_records

REVIEW_FIELDS = ("user_id", "asin", "parent_asin", "rating", "timestamp")
META_TEXT_FIELDS = ("main_category", "categories", "title", "description", "features", "details", "store")
SESSION_GAP_MS = 3_600_000.0  # add_sessions.py's default window, one hour in ms
DOWNLOAD_BASE = "https://datarepo.eng.ucsd.edu/mcauley_group/data/amazon_2023/raw"  # the 2023 site's links


def _grocery_rule(*keywords: str) -> SignalRule:
    return SignalRule({"text": Keywords(exact=keywords)}, 1, "identify_sensitive_items.py (grocery)")


GROCERY_RULES = {  # the keyword lists of generate_sensitive_forget_sets.sh
    "meat": _grocery_rule("meat", "beef", "pork", "chicken", "lamb", "turkey", "bacon", "ham", "sausage", "salami"),
    "alcohol": _grocery_rule("alcohol", "beer", "wine", "liquor", "whisky", "whiskey", "vodka", "gin", "rum",
                             "bourbon", "tequila", "brandy", "cognac", "IPA", "pilsner", "champagne", "prosecco"),
}


def _books_rule(exact: tuple[str, ...], relaxed: tuple[str, ...], min_signals: int) -> SignalRule:
    """Title and description: exact or relaxed; categories and features/details: exact only."""
    both, only_exact = Keywords(exact, relaxed), Keywords(exact)
    signals = {"title": both, "description": both, "categories": only_exact, "features": only_exact}
    return SignalRule(signals, min_signals, "identify_sensitive_items.py --category (books)")


BOOKS_RULES = {
    "health": _books_rule(("suicide", "depression", "anxiety", "trauma", "ptsd"),
                          ("mental health", "mental illness", "self harm", "self-harm", "therapy", "psychiatric",
                           "breakdown", "bipolar", "schizophrenia", "medication", "overdose", "cutting", "grief",
                           "bereavement"), 2),
    "violence": _books_rule(("murder", "violence", "war", "torture", "abuse", "assault"),
                            ("weapon", "blood", "kill", "death", "gun", "shoot", "attack", "revenge", "massacre",
                             "slaughter", "rape", "sexual assault"), 2),
    "explicit": _books_rule(("sex", "erotic", "porn", "nude"),
                            ("explicit", "adult", "sexual", "xxx", "nsfw", "uncensored", "sensual", "nudity",
                             "erotica"), 1),
}


@dataclasses.dataclass(frozen=True)
class AmazonReviews:
    """What the Amazon Reviews 2023 data sets share; a subclass names the category files."""

    file_stem: ClassVar[str]
    rules: ClassVar[dict[str, SignalRule]]
    source: ClassVar[str] = "McAuley lab, Amazon Reviews 2023, https://amazon-reviews-2023.github.io/ (raw/review_categories, raw/meta_categories)"

    categories: tuple[str, ...] = ()
    k_core: int = K_CORE
    session_gap_ms: float | None = None  # cut sessions where the gap exceeds this (Books)

    def __init_subclass__(cls, **kwargs):
        """A subclass's raw files and known categories follow from its file stem and rules."""
        super().__init_subclass__(**kwargs)
        cls.raw_files = f"{cls.file_stem}.jsonl.gz and meta_{cls.file_stem}.jsonl.gz (or .jsonl)"
        cls.known_categories = tuple(cls.rules)
        cls.downloads = {f"{cls.file_stem}.jsonl.gz": f"{DOWNLOAD_BASE}/review_categories/{cls.file_stem}.jsonl.gz",
                         f"meta_{cls.file_stem}.jsonl.gz": f"{DOWNLOAD_BASE}/meta_categories/meta_{cls.file_stem}.jsonl.gz"}

    def __post_init__(self):
        object.__setattr__(self, "categories", check_categories(self, self.categories))

    def build(self, raw: Path, log: StepLog) -> Prepared:
        reviews = find_raw_file(raw, f"{self.file_stem}.jsonl.gz", f"{self.file_stem}.jsonl")
        meta = find_raw_file(raw, f"meta_{self.file_stem}.jsonl.gz", f"meta_{self.file_stem}.jsonl")
        read, found = log.resumable("read", (reviews, meta), lambda: self.read(reviews, meta, log.name, log.quiet))
        inter = original_cf_steps(read, log, self.k_core)
        if self.session_gap_ms is not None:
            inter = log.record(f"sessions (gap > {self.session_gap_ms:g} ms)", with_sessions(inter, self.session_gap_ms))
        kept_parents = found["parents"][pd.Index(read.item_tokens).get_indexer(inter.item_tokens)]
        sensitive = {c: {**self.rules[c].describe(), "parent_asins_matched": found["matched"][c]} for c in self.categories}
        notes = {"asins_with_two_parent_asins": found["conflicts"],
                 "items_without_metadata": int(np.count_nonzero(~np.isin(kept_parents, found["described"])))}
        return Prepared(inter, sensitive, "atomic", item_fields={"parent_asin": kept_parents}, notes=notes)

    def read(self, reviews: Path, meta: Path, name: str, quiet: bool) -> tuple[str, Interactions, dict]:
        """The resumable step: the reviews' rows with the sensitive items as categories, and
        extras: `parents` (parent_asin per read item id), `described` (parent_asins with a
        metadata record), `matched` (parent_asins matched per category), `conflicts`."""
        rows, parents, conflicts = read_reviews(reviews, quiet)
        inter = rows.interactions(name)
        rules = {c: self.rules[c] for c in self.categories}
        matched, described = match_records(meta, "parent_asin", set(parents), rules, self.texts, quiet)
        parents = np.asarray(parents, dtype=str)
        inter = dataclasses.replace(inter, item_categories={
            category: np.flatnonzero(np.isin(parents, list(matched[category]))).astype(np.int32)
            for category in self.categories
        })
        found = {"parents": parents, "described": np.asarray(sorted(described), dtype=str),
                 "matched": {c: len(matched[c]) for c in self.categories}, "conflicts": conflicts}
        return f"read ({reviews.name})", inter, found

    def texts(self, record: dict) -> dict[str, str]:
        """The metadata record's text per signal of the rules."""
        return {"text": " ".join(_text(record.get(field)) for field in META_TEXT_FIELDS)}


@register
@dataclasses.dataclass(frozen=True)
class Grocery(AmazonReviews):
    """`amazon_reviews_grocery_and_gourmet_food` (CF): meat and alcohol."""

    name = "amazon_reviews_grocery_and_gourmet_food"
    task = "CF"
    file_stem = "Grocery_and_Gourmet_Food"
    rules = GROCERY_RULES
    forget_defaults = {"rule": "fit", "rating_threshold": 3.5}  # spec 3.2.2

    categories: tuple[str, ...] = ("meat", "alcohol")


@register
@dataclasses.dataclass(frozen=True)
class Books(AmazonReviews):
    """`amazon_reviews_books` (SBR): health (the benchmark's), violence, explicit."""

    name = "amazon_reviews_books"
    task = "SBR"
    file_stem = "Books"
    rules = BOOKS_RULES
    forget_defaults = {"rule": "reach", "rating_threshold": 3.0}  # spec 3.2.2

    categories: tuple[str, ...] = ("health", "violence", "explicit")
    session_gap_ms: float | None = SESSION_GAP_MS

    def texts(self, record: dict) -> dict[str, str]:
        return {
            "title": _text(record.get("title")),
            "description": _text(record.get("description")),
            "categories": _text([record.get("main_category"), record.get("categories")]),
            "features": _text([record.get("features"), record.get("details")]),
        }


def read_reviews(path: Path, quiet: bool = False) -> tuple[InteractionRows, list[str], int]:
    """(rows, parent_asin per item id, how many asins appeared with a second parent_asin).
    An asin's parent is the one of its first review."""
    rows, parents, conflicts = InteractionRows(), [], 0
    for number, record in json_records(path, REVIEW_FIELDS, quiet):
        asin, parent = str(record["asin"]), str(record["parent_asin"])
        rows.add(str(record["user_id"]), asin, _number(path, number, record, "rating"),
                 _number(path, number, record, "timestamp"))
        if len(parents) < len(rows.item_ids.index):
            parents.append(parent)
        elif parents[rows.item_ids.index[asin]] != parent:
            conflicts += 1
    return rows, parents, conflicts


def with_sessions(inter, gap: float):
    """Session ids (dense, in row order) for rows sorted by user then time: a new session at
    every user's first row and wherever the gap to the previous row exceeds `gap`."""
    new = np.ones(len(inter), bool)
    new[1:] = (inter.users[1:] != inter.users[:-1]) | (np.diff(inter.timestamps) > gap)
    return dataclasses.replace(inter, sessions=np.cumsum(new).astype(np.int64) - 1)


def _number(path: Path, line: int, record: dict, field: str) -> float:
    value = record[field]
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise DataFormatError(path, line, f"{field} {value!r} is not a number") from None
    if not np.isfinite(number):
        raise DataFormatError(path, line, f"{field} {value!r} is not a finite number")
    return number


def _text(value) -> str:
    """Every string in a (nested) metadata value, joined by spaces; dict values, not keys."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return " ".join(_text(v) for v in value)
    return str(value)
