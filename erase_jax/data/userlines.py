"""User-line files (`user item item ...` per line) and train/test folders made of them.

This is the format of the RecEraser paper's MovieLens-1M split (`train.txt` / `test.txt`,
shared data README), which arrives already split into train and test and has no timestamps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.interactions import Interactions, _factorize
from erase_jax.data.splits import Split, given_split

MIN_INTEGER_ID_COVERAGE = 0.9


def read_user_lines(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(user token, item token) per interaction, in file order.

    Tokens are separated by any whitespace; blank lines are skipped; a line holding only a
    user means that user has no items here. A user on two lines is an error.
    """
    users, items = _read_lines(Path(path))
    return np.repeat(users, [len(line_items) for line_items in items]), _concatenate(items)


def read_train_test(folder: str | Path) -> tuple[Interactions, np.ndarray]:
    """`{folder}/train.txt` and `test.txt` as one `Interactions`, plus the per-row test flag.

    Train rows come first, then test rows, each in file order. Users and items share one
    vocabulary over both files; every user named on a line gets an id, even with no items.
    Integer tokens that nearly fill 0..max (as in ml-1m-receraser) keep id == int(token), so
    ids match the paper's files (see `_dense_ids`); otherwise ids follow first appearance
    (train before test).
    """
    folder = Path(folder)
    parts = [_read_lines(folder / f"{part}.txt") for part in ("train", "test")]
    line_users = np.concatenate([users for users, _ in parts])
    items_per_line = [items for _, line_items in parts for items in line_items]
    user_vocabulary, line_user_ids = _dense_ids(line_users)
    item_vocabulary, item_ids = _dense_ids(_concatenate(items_per_line))
    rows_per_line = [len(items) for items in items_per_line]
    inter = Interactions(
        users=np.repeat(line_user_ids, rows_per_line).astype(np.int32),
        items=item_ids.astype(np.int32),
        user_tokens=user_vocabulary,
        item_tokens=item_vocabulary,
        name=folder.name,
    )
    n_train_rows = sum(len(items) for items in parts[0][1])
    is_test = np.arange(len(inter)) >= n_train_rows
    return inter, is_test


def read_train_test_folder(folder: str | Path, valid_ratio: float, seed: int) -> tuple[Interactions, Split]:
    """`read_train_test` plus `given_split`: test as given, valid carved at random from train."""
    inter, is_test = read_train_test(folder)
    return inter, given_split(inter, is_test, valid_ratio, seed)


def _read_lines(path: Path) -> tuple[np.ndarray, list[list[str]]]:
    """The user token of every non-blank line and that line's item tokens."""
    users, items = [], []
    first_line_of_user: dict[str, int] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            tokens = line.split()
            if not tokens:
                continue
            user = tokens[0]
            if user in first_line_of_user:
                earlier = first_line_of_user[user]
                raise DataFormatError(path, number, f"user {user!r} already has a line (line {earlier})")
            first_line_of_user[user] = number
            users.append(user)
            items.append(tokens[1:])
    return np.array(users, dtype=str), items


def _concatenate(token_lists: list[list[str]]) -> np.ndarray:
    return np.array([token for tokens in token_lists for token in tokens], dtype=str)


def _dense_ids(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(vocabulary, id per token), ids in first-seen order unless the tokens are integer ids.

    Integer ids: every token is a non-negative integer without leading zeros and at least
    `MIN_INTEGER_ID_COVERAGE` of 0..max occur. Then id == int(token) and the vocabulary is
    0..max, unused ids included: RecEraser's ml-1m files name 3,706 items of which 11 never
    occur, and its models and ranking count all 3,706.
    """
    vocabulary, ids = _factorize(tokens)
    is_integer = all(t.isascii() and t.isdigit() and (t == "0" or t[0] != "0") for t in vocabulary)
    if is_integer and len(vocabulary):
        numbers = vocabulary.astype(np.int64)
        n_ids = int(numbers.max()) + 1
        if len(vocabulary) >= MIN_INTEGER_ID_COVERAGE * n_ids:
            return np.arange(n_ids).astype(str), numbers[ids]
    return vocabulary, ids
