"""The original's forget-set and spam files: names and formats (data-and-evaluation spec 1.5,
3.0, 3.3.1), so that forget sets made by the original tools are used as they are.

Forget file (CF): a typed header `user_id:token item_id:token rating:float timestamp:float`
(the columns the data has) and one line per forgotten row. Reading groups the lines by user
into one request per user with the set of that user's items (spec 3.0), ordered by
`request_order`. Forget file (NBR): a JSON list of user ids (spec 3.2.3), read into requests by
the scenario's rule (`read_basket_forget_file`). Every write goes to a temporary file in the target folder and is moved into
place with `os.replace`, so no file is ever half-written.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.atomic import DataFormatError, write_atomic_inter
from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios import ForgetSet, forget_set_from_pairs

SPAM_ATTACK = "bandwagon"
SPAM_TARGET_STRATEGY = "unpopular"  # the loaders hard-code bandwagon_unpopular (spec 3.3.1)


def sensitive_method(category: str) -> str:
    """The method part of a sensitive forget file's name: `sensitive_category_{category}`."""
    return f"sensitive_category_{category}"


def forget_file_name(dataset: str, scenario_method: str, seed: int, fraction: float) -> str:
    """`{ds}_unlearn_pairs_{method}_seed_{s}_unlearning_fraction_{f}.inter`, f as Python's
    `str(float(f))` writes it (0.0001 -> "0.0001", 1e-05 -> "1e-05"; spec 3.0)."""
    return f"{dataset}_unlearn_pairs_{scenario_method}_seed_{seed}_unlearning_fraction_{float(fraction)}.inter"


def basket_forget_file_name(dataset: str, scenario_method: str, seed: int, fraction: float) -> str:
    """The next-basket forget file: `forget_file_name` ending in `.json` (spec 1.5, 3.2.3)."""
    return forget_file_name(dataset, scenario_method, seed, fraction).removesuffix(".inter") + ".json"


def spam_inter_file_name(dataset: str, ratio: float, seed: int) -> str:
    """`{ds}_fraud_sessions_bandwagon_unpopular_ratio_{r}_seed_{s}.inter` (spec 1.5)."""
    return f"{dataset}_fraud_sessions_{SPAM_ATTACK}_{SPAM_TARGET_STRATEGY}_ratio_{ratio}_seed_{seed}.inter"


def spam_metadata_file_name(dataset: str, ratio: float, seed: int) -> str:
    """`{ds}_fraud_metadata_bandwagon_unpopular_ratio_{r}_seed_{s}.json` (spec 1.5)."""
    return f"{dataset}_fraud_metadata_{SPAM_ATTACK}_{SPAM_TARGET_STRATEGY}_ratio_{ratio}_seed_{seed}.json"


def write_forget_file(path: str | Path, inter: Interactions, forget_set: ForgetSet) -> None:
    """One line per forgotten row (every row of a requesting user with a forget item), with
    the original tokens, grouped by request in processing order."""
    rows = np.flatnonzero(forget_set.removal_mask(inter))
    request_of_user = np.full(inter.n_users, len(forget_set), np.int64)
    request_of_user[forget_set.users] = np.arange(len(forget_set))
    rows = rows[np.argsort(request_of_user[inter.users[rows]], kind="stable")]
    with _replaced_atomically(path) as temporary:
        write_atomic_inter(temporary, inter, rows)


def write_basket_forget_file(path: str | Path, inter: Interactions, forget_set: ForgetSet) -> None:
    """The next-basket forget file: a JSON list of the requesting users' ids as strings, in
    request order (spec 3.2.3; the original also pickles the same list, and its loader reads
    whichever exists, `.pkl` first). What a request forgets is the scenario's rule, not the file's."""
    users = [str(t) for t in inter.user_tokens[forget_set.users]]
    with _replaced_atomically(path) as temporary:
        temporary.write_text(json.dumps(users) + "\n", encoding="utf-8")


def read_forget_file(
    path: str | Path,
    inter: Interactions,
    scenario: str,
    category: str | None,
    fraction: float,
    seed: int,
    target_items: np.ndarray | None = None,
) -> ForgetSet:
    """A forget file as requests: user token -> the set of its item tokens, in request order.

    Columns are found by name in the header (`user_id`, `item_id`, with or without `:type`);
    a header without these names is read positionally as the CF format (user, item, ...).
    Several lines of one user merge into one request.

    Deliberate difference: the original silently drops forget items missing from the
    vocabulary (spec 5.4 step 1). A forget file that names a user or item the data does not
    have means the file belongs to other data or other preprocessing, and dropping those
    rows would silently unlearn less than asked and break the match with retraining, so
    here it is a `DataFormatError` (a ValueError) naming the file, the line and the token.
    """
    path = Path(path)
    columns = _read_token_columns(path)
    if not len(columns):
        raise DataFormatError(path, None, "empty forget set (the file has a header but no rows)")
    user_column, item_column = _user_and_item_columns(path, columns)
    users = _ids(path, columns, user_column, inter.user_tokens, "user")
    items = _ids(path, columns, item_column, inter.item_tokens, "item")
    return forget_set_from_pairs(
        inter, users, items,
        scenario=scenario, category=category, fraction=fraction, seed=seed, target_items=target_items,
    )


def read_basket_forget_file(
    path: str | Path, inter: Interactions, scenario: str, category: str | None, fraction: float, seed: int
) -> ForgetSet:
    """A next-basket forget file (a JSON list of user ids, spec 3.2.3) as requests.

    What a request forgets is the scenario's rule, as the original's loader applies it: for
    "sensitive", every item of `category` in all of the user's baskets (a listed user without
    any makes no request, with a warning); for "random", all of the user's items.
    Requests come in `request_order` of the user ids; a user listed twice is one request.
    The original also writes the list as a pickle (`.pkl`); pickles are not read here (loading
    one can run code): use the `.json` file it writes beside it (`--output_format both`, its default).
    """
    path = Path(path)
    if path.suffix == ".pkl":
        raise DataFormatError(path, None, "pickled forget files are not read (unsafe); use the .json file the "
                                          "original writes beside it")
    try:
        users = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataFormatError(path, None, f"not a JSON list of user ids ({error})") from None
    if not isinstance(users, list) or not users or not all(isinstance(u, (str, int)) for u in users):
        raise DataFormatError(path, None, "expected a non-empty JSON list of user ids")
    tokens = np.asarray([str(u) for u in users])
    unknown = tokens[~np.isin(tokens, inter.user_tokens)]
    if len(unknown):
        raise DataFormatError(path, None, f"user {str(unknown[0])!r} is not in {inter.name}")
    listed = np.isin(inter.users, inter.user_ids(tokens))
    if scenario == "sensitive":
        if not category:
            raise ValueError("a sensitive next-basket forget file needs the category (--scenario sensitive:<category>)")
        listed &= np.isin(inter.items, inter.category_items(category))
        empty = np.setdiff1d(inter.user_ids(tokens), inter.users[listed])
        if len(empty):
            warnings.warn(f"{path.name}: {len(empty)} listed user(s) without an item of {category!r} in {inter.name} "
                          f"(e.g. {str(inter.user_tokens[empty[0]])!r}): no request for them", stacklevel=2)
    elif scenario != "random":
        raise ValueError(f"next-basket forget files hold the sensitive or random scenario, not {scenario!r}")
    rows = np.flatnonzero(listed)
    return forget_set_from_pairs(inter, inter.users[rows], inter.items[rows], scenario=scenario,
                                 category=category, fraction=fraction, seed=seed)


def write_spam_files(
    folder: str | Path, dataset: str, ratio: float, seed: int, poisoned_inter: Interactions, forget_set: ForgetSet
) -> tuple[Path, Path]:
    """The fake users' rows (`.inter`) and the attack metadata (`.json`, keys of spec 3.3.1).

    Returns (inter path, metadata path). `original_sessions` / `fraud_sessions` count users
    here (CF adaptation: one fake user per fake session).
    """
    if forget_set.target_items is None:
        raise ValueError("a spam forget set needs target_items")
    folder = Path(folder)
    inter_path = folder / spam_inter_file_name(dataset, ratio, seed)
    metadata_path = folder / spam_metadata_file_name(dataset, ratio, seed)
    fake_rows = np.flatnonzero(np.isin(poisoned_inter.users, forget_set.users))
    with _replaced_atomically(inter_path) as temporary:
        write_atomic_inter(temporary, poisoned_inter, fake_rows)
    real_users = np.setdiff1d(np.unique(poisoned_inter.users), forget_set.users)
    metadata = {
        "dataset": dataset,
        "attack_type": SPAM_ATTACK,
        "target_item_strategy": SPAM_TARGET_STRATEGY,
        "poisoning_ratio": ratio,
        "original_sessions": int(len(real_users)),
        "fraud_sessions": int(len(forget_set)),
        "target_items": _json_tokens(poisoned_inter.item_tokens[forget_set.target_items]),
        "n_target_items": int(len(forget_set.target_items)),
        "seed": seed,
        "timestamp": datetime.datetime.now().isoformat(),
    }
    with _replaced_atomically(metadata_path) as temporary:
        temporary.write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return inter_path, metadata_path


def read_spam_metadata(path: str | Path, inter: Interactions) -> np.ndarray:
    """int32 ids of the metadata's `target_items` tokens.

    Deliberate difference: the original skips target tokens missing from the vocabulary
    (spec 5.1 step 5); here they raise a ValueError naming the file and the token, because
    spam metrics over a silently shorter target list are not comparable.
    """
    path = Path(path)
    metadata = json.loads(path.read_text(encoding="utf-8"))
    if "target_items" not in metadata:
        raise DataFormatError(path, None, "no 'target_items' key")
    tokens = [str(t) for t in metadata["target_items"]]
    ids = pd.Index(inter.item_tokens.astype(str)).get_indexer(tokens)
    if np.any(ids < 0):
        unknown = tokens[int(np.argmax(ids < 0))]
        raise DataFormatError(path, None, f"target item {unknown!r} is not an item of {inter.name}")
    return ids.astype(np.int32)


@contextlib.contextmanager
def _replaced_atomically(path: str | Path):
    """Yields a temporary path beside `path`; on success moves it onto `path`, else deletes it."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def _read_token_columns(path: Path) -> pd.DataFrame:
    """Every value as a string, columns named by the header without types; blank lines are
    dropped but row labels keep the 1-based file line number."""
    text = path.read_bytes()
    if not text.strip():
        raise DataFormatError(path, 1, "empty file (expected a header such as 'user_id:token')")
    try:
        table = pd.read_csv(
            io.BytesIO(text), sep="\t", header=0, dtype=str, na_filter=False,
            quoting=csv.QUOTE_NONE, skip_blank_lines=False, encoding="utf-8",
        )
    except pd.errors.ParserError as error:
        raise DataFormatError(path, None, f"not a tab-separated file: {error}") from None
    table.columns = [str(c).split(":")[0] for c in table.columns]
    table.index = np.arange(len(table)) + 2
    blank = (table == "").all(axis=1).to_numpy()
    return table[~blank]


def _user_and_item_columns(path: Path, columns: pd.DataFrame) -> tuple[str, str]:
    names = list(columns.columns)
    if "user_id" in names and "item_id" in names:
        return "user_id", "item_id"
    if len(names) < 2:
        raise DataFormatError(path, 1, f"expected user and item columns, the header has {names}")
    return names[0], names[1]  # the CF format read positionally


def _ids(path: Path, columns: pd.DataFrame, column: str, vocabulary: np.ndarray, what: str) -> np.ndarray:
    tokens = columns[column].to_numpy(dtype=str)
    empty = tokens == ""
    if empty.any():
        raise DataFormatError(path, int(columns.index[int(np.argmax(empty))]), f"no {what} value")
    ids = pd.Index(vocabulary.astype(str)).get_indexer(tokens)
    unknown = ids < 0
    if unknown.any():
        at = int(np.argmax(unknown))
        raise DataFormatError(path, int(columns.index[at]), f"unknown {what} {str(tokens[at])!r} (not in the data)")
    return ids


def _json_tokens(tokens: np.ndarray) -> list:
    """Integers when every token is one (as the original's pandas-parsed ids), else strings."""
    text = [str(t) for t in tokens]
    if all(t.lstrip("-").isdigit() and str(int(t)) == t for t in text):
        return [int(t) for t in text]
    return text
