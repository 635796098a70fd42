"""Basket data sets: the merged basket JSON, item category files and the RC preprocessing filter.

Every basket reader (here and in `erase_jax.data.basket_csv`) returns an `Interactions` with
one row per (user, basket, item): `sessions` is the dense global basket id (int64, ascending in
row order), `timestamps` the basket's time (float64: a day number where the source has dates,
else the basket's position in the user's list), user and item tokens the raw tokens as strings.
Items are de-duplicated within a basket and rows are ordered by user (first appearance in the
source), then basket order, then the item's first appearance in the basket. Users and items get
dense ids in the order of those rows. Empty baskets do not exist (no rows).

`filter_baskets` is the "reality check" (RC) preprocessing filter (next-basket spec 1.2): the
raw CSV readers return everything, the merged JSON is already RC-filtered.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.interactions import Interactions

UNKNOWN_EXAMPLES = 5  # unknown category tokens named in the warning
CATEGORY_FILE_PREFIXES = ("sensitive_products_", "sensitive_asins_")  # the original's list names (spec 1.1)


def read_merged_json(path: str | Path) -> Interactions:
    """RC's "mergedata" file `{"<user>": [[item, ...], ...]}`, baskets oldest first (spec 1.1).

    Items must be JSON integers (their decimal text becomes the token). Empty baskets are
    dropped, as the original's `NextBasketDataset` does; a user left without baskets has no
    rows and no id. The timestamp of a basket is its index in the user's list in the file.
    Malformed content raises a `DataFormatError` naming the file, the user key and the basket
    index (a JSON syntax error names its line). The RC files are already filtered (3-50 baskets
    per user, rare items dropped): do not apply `filter_baskets` to them again.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise DataFormatError(path, error.lineno, f"malformed JSON: {error.msg} (column {error.colno})") from None
    if not isinstance(data, dict):
        raise DataFormatError(path, None, f"expected an object {{user: [[item, ...], ...]}}, got a {type(data).__name__}")
    users, times, items, basket_sizes = [], [], [], []
    for number, (user, baskets) in enumerate(data.items()):
        if not isinstance(baskets, list):
            raise DataFormatError(path, None, f"user {user!r}: expected a list of baskets, got {type(baskets).__name__}")
        for index, basket in enumerate(baskets):
            if not isinstance(basket, list):
                raise DataFormatError(path, None, f"user {user!r}, basket {index}: expected a list of items, "
                                                  f"got {type(basket).__name__}")
            bad = next((item for item in basket if type(item) is not int), None)
            if bad is not None:
                raise DataFormatError(path, None, f"user {user!r}, basket {index}: item {bad!r} is not an integer")
            unique = list(dict.fromkeys(basket))
            if unique:
                users.append(number)
                times.append(index)
                basket_sizes.append(len(unique))
                items.extend(unique)
    sizes = np.asarray(basket_sizes, np.int64)
    inter = basket_interactions(
        users=np.repeat(np.asarray(users, np.int64), sizes),
        baskets=np.repeat(np.arange(len(sizes)), sizes),
        times=np.repeat(np.asarray(times, np.float64), sizes),
        items=np.asarray(items, np.int64),
        name=path.stem.removesuffix("_merged"),
    )
    keys = np.asarray(list(data), dtype=str)
    return dataclasses.replace(inter, user_tokens=keys[inter.user_tokens.astype(np.int64)])


def basket_interactions(users, baskets, times, items, name: str, positions: bool = False) -> Interactions:
    """The module's `Interactions` from raw rows (any order): user token, basket key (unique per
    basket over the whole data set), the basket's time and item token per row. Tokens may be
    integers (faster); the vocabularies hold their text.

    Baskets are ordered per user by their earliest time, ties by first appearance; duplicate
    items in a basket are dropped (the first kept). `positions`: replace the times by each
    basket's 0-based position in its user's list. Raises `ValueError` when a basket key has
    rows of two users.
    """
    n = len(users)
    user_rank = pd.factorize(np.asarray(users), sort=False)[0]
    basket_rank = pd.factorize(np.asarray(baskets), sort=False)[0]
    n_baskets = int(basket_rank.max()) + 1 if n else 0
    times = np.asarray(times, np.float64)
    basket_time = np.full(n_baskets, np.inf)
    np.minimum.at(basket_time, basket_rank, times)
    owner = np.full(n_baskets, -1, np.int64)
    owner[basket_rank] = user_rank
    if n and np.any(owner[basket_rank] != user_rank):
        row = int(np.argmax(owner[basket_rank] != user_rank))
        raise ValueError(f"{name}: basket {baskets[row]} holds rows of user {str(users[row])!r} and of another user")
    order = np.lexsort((np.arange(n), basket_rank, basket_time[basket_rank], user_rank))
    frame = pd.DataFrame({"basket": basket_rank[order], "item": np.asarray(items)[order]})
    kept = order[~frame.duplicated().to_numpy()]
    user_ids, user_tokens = pd.factorize(np.asarray(users)[kept], sort=False)
    item_ids, item_tokens = pd.factorize(np.asarray(items)[kept], sort=False)
    user_tokens, item_tokens = (np.asarray(tokens).astype(str) for tokens in (user_tokens, item_tokens))
    sessions = pd.factorize(basket_rank[kept], sort=False)[0].astype(np.int64)
    row_times = basket_time[basket_rank[kept]]
    if positions:
        first = np.r_[0, np.flatnonzero(np.diff(user_ids)) + 1] if len(kept) else np.zeros(0, np.int64)
        row_times = (sessions - np.repeat(sessions[first], np.diff(np.r_[first, len(kept)]))).astype(np.float64)
    return Interactions(
        users=user_ids.astype(np.int32),
        items=item_ids.astype(np.int32),
        user_tokens=user_tokens,
        item_tokens=item_tokens,
        timestamps=row_times,
        sessions=sessions,
        name=name,
    )


def filter_baskets(
    inter: Interactions, min_baskets: int = 3, max_baskets: int | None = 50, min_item_count: int = 0
) -> Interactions:
    """RC's preprocessing filter (next-basket spec 1.2), one pass in RC's order, compacted.

    1. keep users with `min_baskets` to `max_baskets` baskets (None: no upper bound);
    2. count each item's occurrences in the kept users' baskets other than their last one and
       drop items seen fewer than `min_item_count` times (RC: 17 for Instacart and Dunnhumby,
       3 for Ta-Feng). Baskets emptied by this vanish; users are NOT re-checked (as in RC).
    Basket ids are made dense again; row order and item categories are kept (compacted).
    The merged JSON files are already filtered this way.
    """
    if inter.sessions is None:
        raise ValueError(f"{inter.name}: filter_baskets needs basket ids (Interactions.sessions)")
    basket_ids, basket_of_row = np.unique(inter.sessions, return_inverse=True)
    basket_user = np.zeros(len(basket_ids), np.int64)
    basket_user[basket_of_row] = inter.users
    counts = np.bincount(basket_user, minlength=inter.n_users)
    user_ok = (counts >= min_baskets) & (counts <= (max_baskets if max_baskets is not None else np.inf))
    keep = user_ok[inter.users]
    if min_item_count > 1:
        last = _last_basket_per_user(inter, basket_of_row, len(basket_ids))
        history = keep & (basket_of_row != last[inter.users])
        item_counts = np.bincount(inter.items[history], minlength=inter.n_items)
        keep &= item_counts[inter.items] >= min_item_count
    kept = inter.select(keep).compact()
    return dataclasses.replace(kept, sessions=pd.factorize(kept.sessions, sort=False)[0].astype(np.int64))


def _last_basket_per_user(inter: Interactions, basket_of_row: np.ndarray, n_baskets: int) -> np.ndarray:
    """Per user, the index (into the sorted basket ids) of the latest basket: by time, then id."""
    times = inter.timestamps if inter.timestamps is not None else np.zeros(len(inter))
    order = np.lexsort((basket_of_row, times, inter.users))
    last = np.full(inter.n_users, -1, np.int64)
    last[inter.users[order]] = basket_of_row[order]  # later writes win: the last in order
    return last


def read_category_file(path: str | Path, item_tokens, category: str | None = None) -> tuple[dict[str, np.ndarray], list[str]]:
    """Item categories from a file, in the id space of `item_tokens` (an Interactions' vocabulary).

    `.csv`: rows `item,category` (an optional header line `item,category` is skipped); any
    other suffix: one raw item token per line, all of category `category` (default: the file
    stem without a `sensitive_products_` / `sensitive_asins_` prefix, e.g. `alcohol.txt` ->
    "alcohol"). Blank lines are skipped. Returns ({category: sorted int32 ids}, unknown tokens):
    tokens absent from the vocabulary are not an error, since the original intersects the list
    with the vocabulary (next-basket spec 4.3). A malformed line raises `DataFormatError`.
    """
    path = Path(path)
    index = {str(token): i for i, token in enumerate(item_tokens)}
    members: dict[str, set[int]] = {}
    unknown: list[str] = []
    is_csv = path.suffix.lower() == ".csv"
    if not is_csv:
        category = category or _category_of_list(path)
        members[category] = set()
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text:
                continue
            if is_csv:
                fields = [f.strip() for f in text.split(",")]
                if number == 1 and [f.lower() for f in fields] == ["item", "category"]:
                    continue
                if len(fields) != 2 or not all(fields):
                    raise DataFormatError(path, number, f"expected 'item,category', got {text!r}")
                token, label = fields
            else:
                if len(text.split()) != 1 or "," in text:
                    raise DataFormatError(path, number, f"expected one item token per line, got {text!r}")
                token, label = text, category
            if token in index:
                members.setdefault(label, set()).add(index[token])
            else:
                unknown.append(token)
    return {label: np.asarray(sorted(ids), np.int32) for label, ids in sorted(members.items())}, unknown


def with_category_files(inter: Interactions, *paths: str | Path) -> Interactions:
    """`inter` with the categories of `read_category_file(path)` for each path added to its
    `item_categories` (a later file's category replaces an earlier one of the same name).
    Unknown tokens give a warning with their count and a few examples."""
    categories = dict(inter.item_categories or {})
    for path in paths:
        found, unknown = read_category_file(path, inter.item_tokens)
        if unknown:
            examples = ", ".join(repr(t) for t in unknown[:UNKNOWN_EXAMPLES])
            warnings.warn(f"{path}: {len(unknown)} item tokens are not in {inter.name}'s vocabulary "
                          f"(e.g. {examples}); they are ignored", stacklevel=2)
        categories.update(found)
    return dataclasses.replace(inter, item_categories=categories)


def _category_of_list(path: Path) -> str:
    stem = path.stem
    for prefix in CATEGORY_FILE_PREFIXES:
        stem = stem.removeprefix(prefix)
    return stem
