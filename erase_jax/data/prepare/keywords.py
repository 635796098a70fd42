"""Keyword rules that identify sensitive items (data-and-evaluation spec 3.2.1).

Matching is case-insensitive. An "exact" keyword matches as a whole word (no letter, digit or
underscore on either side), a "relaxed" keyword as a plain substring, so "therapy" also matches
"physiotherapy". A rule is a set of named signals, each a `Keywords` applied to one text field
of an item (its title, its tags, ...); an item is sensitive when at least `min_signals` of them
fire, each counted once, as the original's multi-signal detectors count them. The grocery
detector is the one-signal case: every field joined into one text, min_signals 1.

`describe()` gives the rule as data; the preparers write it next to the lists (stats.json), so
what made an item sensitive can be read without the code.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.prepare.streams import json_records

MATCHING = "case-insensitive; exact keywords match whole words, relaxed keywords any substring"


@dataclasses.dataclass(frozen=True)
class Keywords:
    """Keywords of one signal: `exact` (whole words) and `relaxed` (substrings)."""

    exact: tuple[str, ...] = ()
    relaxed: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.exact and not self.relaxed:
            raise ValueError("a signal needs at least one keyword")
        parts = [rf"(?<!\w)(?:{_alternatives(self.exact)})(?!\w)"] if self.exact else []
        parts += [_alternatives(self.relaxed)] if self.relaxed else []
        object.__setattr__(self, "_pattern", re.compile("|".join(parts), re.IGNORECASE))

    def matches(self, texts: str | Iterable[str]) -> bool:
        """Whether any keyword occurs in the text (or in any of several texts)."""
        if isinstance(texts, str):
            texts = (texts,)
        return any(self._pattern.search(text) for text in texts if text)

    def describe(self) -> dict:
        return {"exact": list(self.exact), "relaxed": list(self.relaxed)}


@dataclasses.dataclass(frozen=True)
class SignalRule:
    """Signals by name (the item field each reads) and how many must fire."""

    signals: dict[str, Keywords]
    min_signals: int = 1
    source: str = ""  # the original script the rule follows (recorded with the lists)

    def __post_init__(self):
        if not 1 <= self.min_signals <= len(self.signals):
            raise ValueError(f"min_signals must lie in [1, {len(self.signals)}], got {self.min_signals}")

    def fired(self, texts: dict[str, str | Iterable[str]]) -> set[str]:
        """The signals whose keywords occur in their field's text (fields absent: no signal)."""
        return {name for name, keywords in self.signals.items() if name in texts and keywords.matches(texts[name])}

    def matches(self, texts: dict[str, str | Iterable[str]]) -> bool:
        return self.decides(self.fired(texts))

    def decides(self, fired: set[str]) -> bool:
        """Whether a set of fired signals makes an item sensitive."""
        return len(fired) >= self.min_signals

    def describe(self) -> dict:
        return {
            "source": self.source,
            "matching": MATCHING,
            "min_signals": self.min_signals,
            "signals": {name: keywords.describe() for name, keywords in self.signals.items()},
        }


def match_records(
    path: Path, id_field: str, wanted: set[str], rules: dict[str, SignalRule], texts: Callable[[dict], dict],
    quiet: bool = False,
) -> tuple[dict[str, set[str]], set[str]]:
    """(category -> ids whose record the category's rule matches, ids that have a record) over
    a JSON-lines metadata file, reading only the records of `wanted` ids. `texts(record)` gives
    the record's text per signal; a ValueError it raises becomes a DataFormatError on that line."""
    matched: dict[str, set[str]] = {category: set() for category in rules}
    described: set[str] = set()
    for number, record in json_records(path, (id_field,), quiet):
        key = str(record[id_field])
        if key not in wanted:
            continue
        described.add(key)
        try:
            record_texts = texts(record)
        except ValueError as error:
            raise DataFormatError(path, number, str(error)) from None
        for category, rule in rules.items():
            if rule.matches(record_texts):
                matched[category].add(key)
    return matched, described


def _alternatives(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
