"""RecBole atomic files: `{name}.inter`, `{name}.item`, `{name}.user`, and token lists.

Format (data-and-evaluation spec section 1.1): tab-separated text, first line a typed header
of `name:type` fields with types token, float, token_seq (space-separated tokens) or
float_seq. Blank lines are skipped, as RecBole's pandas reader does. Reading is one
`pandas.read_csv` plus vectorised checks (column counts per line, empty ids, numbers); a failed
check raises a `DataFormatError` naming the file, line and problem.

Deliberate difference: RecBole fills empty or non-numeric float values with the column mean;
here they are errors, because in the files of this benchmark they can only mean corruption.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.interactions import Interactions, from_tokens

FIELD_TYPES = ("token", "float", "token_seq", "float_seq")
CATEGORY_FIELD_CANDIDATES = ("class", "category", "categories", "genre")
SEQ_SEPARATOR = " "
WRITE_BLOCK_ROWS = 100_000  # rows formatted at a time: bounds the writer's memory (benchmarks/prepare_memory.py)


class DataFormatError(ValueError):
    """A malformed data file; the message names the file, the 1-based line and the problem."""

    def __init__(self, path: Path | str, line: int | None, problem: str):
        where = f"{path}, line {line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = Path(path), line, problem


@dataclasses.dataclass(frozen=True)
class _AtomicTable:
    """One parsed atomic file: header types and every value as a string."""

    path: Path
    types: dict[str, str]
    values: pd.DataFrame
    row_lines: np.ndarray  # 1-based file line of each row, for messages

    def error_at_row(self, row: int, problem: str) -> DataFormatError:
        return DataFormatError(self.path, int(self.row_lines[row]), problem)

    def require(self, field: str, allowed_types: tuple[str, ...]) -> None:
        _require_field(self.path, self.types, field, allowed_types)

    def tokens(self, field: str) -> np.ndarray:
        """Non-empty string values of a field."""
        tokens = self.values[field].to_numpy(dtype=str)
        empty = tokens == ""
        if empty.any():
            raise self.error_at_row(int(np.argmax(empty)), f"empty {field}")
        return tokens

    def floats(self, field: str) -> np.ndarray:
        """float64 values of a field; empty, non-numeric or NaN values are errors."""
        numbers = pd.to_numeric(self.values[field], errors="coerce").to_numpy(np.float64)
        not_numbers = np.isnan(numbers)
        if not_numbers.any():
            row = int(np.argmax(not_numbers))
            raise self.error_at_row(row, f"{field} value {self.values[field].iat[row]!r} is not a number")
        return numbers

    def sequences(self, field: str) -> list[tuple]:
        """Per row, the space-separated tokens of a field (floats for float_seq)."""
        parse = float if self.types[field] == "float_seq" else str
        sequences = []
        for row, text in enumerate(self.values[field].tolist()):
            try:
                sequences.append(tuple(parse(t) for t in text.split(SEQ_SEPARATOR) if t))
            except ValueError:
                raise self.error_at_row(row, f"{field} value {text!r} is not a list of numbers") from None
        return sequences


def read_atomic(folder: str | Path, name: str | None = None, category_field: str | None = None) -> Interactions:
    """Reads `{folder}/{name}.inter` and, when present, `{name}.item` and `{name}.user`.

    `name` defaults to the folder name. From `.inter` only user_id, item_id (tokens), the
    optional rating and timestamp (floats) and the optional session_id (token) are read; other
    columns are ignored apart from the column count. Ids are dense in first-seen order of `.inter` (RecBole's factorisation,
    without its padding id 0). Items listed only in `.item` get no id. Item categories come
    from the `.item` field `category_field` (default: see `resolve_category_field`); user
    features from every `.user` column.
    """
    folder = Path(folder)
    name = name or folder.name
    table = _read_table(folder / f"{name}.inter")
    table.require("user_id", ("token",))
    table.require("item_id", ("token",))
    optional = {}
    for field, keyword in (("rating", "ratings"), ("timestamp", "timestamps")):
        if field in table.types:
            table.require(field, ("float",))
            optional[keyword] = table.floats(field)
    if "session_id" in table.types:
        table.require("session_id", ("token",))
        optional["session_tokens"] = table.tokens("session_id")
    inter = from_tokens(table.tokens("user_id"), table.tokens("item_id"), name=name, **optional)

    item_path, user_path = folder / f"{name}.item", folder / f"{name}.user"
    field = resolve_category_field(folder, name, category_field)
    categories = _read_item_categories(item_path, field, inter.item_tokens) if field else None
    features = _read_user_features(user_path, inter.user_tokens) if user_path.exists() else None
    return dataclasses.replace(inter, item_categories=categories, user_features=features)


def resolve_category_field(folder: str | Path, name: str | None = None, requested: str | None = None) -> str | None:
    """The `.item` field that holds item categories, or None when there is none.

    `requested` must exist in `.item` with type token or token_seq. Without it, the first of
    `CATEGORY_FIELD_CANDIDATES` (class, category, categories, genre) with such a type is used.
    """
    folder = Path(folder)
    item_path = folder / f"{name or folder.name}.item"
    if not item_path.exists():
        if requested:
            raise FileNotFoundError(f"category_field {requested!r} was requested but {item_path} does not exist")
        return None
    types, _ = _read_header(item_path, item_path.read_bytes())
    categorical = ("token", "token_seq")
    if requested:
        _require_field(item_path, types, requested, categorical)
        return requested
    return next((f for f in CATEGORY_FIELD_CANDIDATES if types.get(f) in categorical), None)


def write_atomic_inter(path: str | Path, inter: Interactions, rows: np.ndarray | None = None) -> None:
    """Writes rows (all, an index array or a boolean mask) as a typed `.inter` file.

    Columns: user_id, session_id when the data have sessions (dense ids), item_id, then rating
    and timestamp when present: the original's column order (CF `user_id item_id rating
    timestamp`, SBR `user_id session_id item_id [rating] timestamp`, which its 30music and nowp
    scripts read by position). Floats are written so that they read back identically; integral values without
    a trailing ".0", like the original files (`881250949`).
    """
    rows = np.arange(len(inter)) if rows is None else np.asarray(rows)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    for vocabulary in (inter.user_tokens, inter.item_tokens):
        bad = [t for t in vocabulary if any(c in str(t) for c in "\t\r\n")]
        if bad:
            raise ValueError(f"{inter.name}: token {bad[0]!r} contains a tab or line break")
    with open(path, "w", encoding="utf-8", newline="") as handle:  # in blocks: the text of all rows is never held
        for start in range(0, max(len(rows), 1), WRITE_BLOCK_ROWS):
            block = rows[start : start + WRITE_BLOCK_ROWS]
            _inter_columns(inter, block).to_csv(handle, sep="\t", index=False, header=start == 0,
                                                quoting=csv.QUOTE_NONE, lineterminator="\n")


def _inter_columns(inter: Interactions, rows: np.ndarray) -> pd.DataFrame:
    columns = {"user_id:token": inter.user_tokens[inter.users[rows]]}
    if inter.sessions is not None:  # dense session ids as tokens: the grouping survives, not the names;
        columns["session_id:token"] = inter.sessions[rows].astype(str)  # second, as the original's SBR files
    columns["item_id:token"] = inter.item_tokens[inter.items[rows]]
    if inter.ratings is not None:
        columns["rating:float"] = _format_floats(inter.ratings[rows])
    if inter.timestamps is not None:
        columns["timestamp:float"] = _format_floats(inter.timestamps[rows])
    return pd.DataFrame(columns)


def read_token_list(path: str | Path) -> list[str]:
    """One token per line, surrounding whitespace and blank lines ignored (e.g. the spec's
    section 1.5 `sensitive_asins_{cat}.txt`)."""
    with open(path, encoding="utf-8") as lines:
        return [line.strip() for line in lines if line.strip()]


def _read_table(path: Path) -> _AtomicTable:
    types, body = _read_header(path, path.read_bytes())
    row_lines = _row_lines(path, body, len(types))
    values = pd.read_csv(
        io.BytesIO(body), sep="\t", header=None, names=list(types),
        dtype=str, na_filter=False, quoting=csv.QUOTE_NONE, encoding="utf-8",
    )
    return _AtomicTable(path, types, values, row_lines)


def _read_header(path: Path, raw: bytes) -> tuple[dict[str, str], bytes]:
    """Field name -> type from the header line, and the bytes after it.

    Every header problem is reported on line 1.
    """
    header, _, body = raw.partition(b"\n")
    text = header.decode("utf-8").rstrip("\r")
    if not text.strip():
        problem = "empty file" if not raw.strip() else "empty header line"
        raise DataFormatError(path, 1, f"{problem}; expected a typed header such as 'user_id:token'")
    types = {}
    for column in text.split("\t"):
        field, colon, field_type = column.rpartition(":")
        if not colon or not field:
            raise DataFormatError(path, 1, f"header field {column!r} has no type (expected name:type)")
        if field_type not in FIELD_TYPES:
            known = ", ".join(FIELD_TYPES)
            raise DataFormatError(path, 1, f"header field {column!r} has unknown type {field_type!r} (known: {known})")
        if field in types:
            raise DataFormatError(path, 1, f"header field {field!r} appears twice")
        types[field] = field_type
    return types, body


def _require_field(path: Path, types: dict[str, str], field: str, allowed_types: tuple[str, ...]) -> None:
    if field not in types:
        raise DataFormatError(path, 1, f"no {field} field in the header (fields: {', '.join(types)})")
    if types[field] not in allowed_types:
        allowed = " or ".join(allowed_types)
        raise DataFormatError(path, 1, f"field {field} is typed {types[field]}, expected {allowed}")


def _row_lines(path: Path, body: bytes, n_fields: int) -> np.ndarray:
    """The file line of every data row, after checking that each has `n_fields` columns.

    Rows are the non-blank lines after the header; like pandas, a line of only spaces is
    blank. Vectorised over the bytes: tabs are counted per line, not parsed.
    """
    data = np.frombuffer(body, np.uint8)
    ends = np.flatnonzero(data == ord("\n"))
    if len(data) and data[-1] != ord("\n"):
        ends = np.r_[ends, len(data)]
    starts = np.r_[0, ends + 1][: len(ends)]
    tabs = np.bincount(np.searchsorted(ends, np.flatnonzero(data == ord("\t"))), minlength=len(ends))
    blank = tabs == 0
    blank[blank] = [not body[s:e].strip(b" \r") for s, e in zip(starts[blank], ends[blank])]
    wrong = ~blank & (tabs != n_fields - 1)
    if wrong.any():
        line = int(np.argmax(wrong))
        raise DataFormatError(path, line + 2, f"{tabs[line] + 1} columns, but the header declares {n_fields}")
    return np.flatnonzero(~blank) + 2


def _read_item_categories(path: Path, field: str, item_vocabulary: np.ndarray) -> dict[str, np.ndarray]:
    """Category name -> sorted int32 ids of the interacted items listed under it."""
    table = _read_table(path)
    table.require("item_id", ("token",))
    if table.types[field] == "token":
        labels = [(t,) if t else () for t in table.values[field].tolist()]
    else:
        labels = table.sequences(field)
    item_ids = pd.Index(item_vocabulary).get_indexer(table.tokens("item_id"))
    members: dict[str, list[int]] = {}
    for item_id, item_labels in zip(item_ids, labels):
        if item_id >= 0:
            for label in item_labels:
                members.setdefault(label, []).append(item_id)
    return {label: np.unique(members[label]).astype(np.int32) for label in sorted(members)}


def _read_user_features(path: Path, user_vocabulary: np.ndarray) -> dict[str, np.ndarray]:
    """Every `.user` column aligned to user ids; users absent from the file get "" (token),
    NaN (float) or None (token_seq, float_seq)."""
    table = _read_table(path)
    table.require("user_id", ("token",))
    listed = pd.Index(table.tokens("user_id"))
    if listed.has_duplicates:
        row = int(np.argmax(listed.duplicated()))
        raise table.error_at_row(row, f"user {listed[row]!r} is listed twice")
    row_of_user = listed.get_indexer(user_vocabulary)  # -1 picks the appended "missing" value
    features = {}
    for field, field_type in table.types.items():
        if field == "user_id":
            continue
        if field_type == "token":
            features[field] = np.append(table.values[field].to_numpy(dtype=str), "")[row_of_user]
        elif field_type == "float":
            features[field] = np.append(table.floats(field), np.nan)[row_of_user]
        else:
            sequences = table.sequences(field) + [None]
            column = np.empty(len(row_of_user), object)
            for user, row in enumerate(row_of_user):
                column[user] = sequences[row]
            features[field] = column
    return features


def _format_floats(values: np.ndarray) -> np.ndarray:
    """Shortest text that reads back to the same value; integral values as plain integers."""
    integral = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2.0**53)
    text = np.empty(len(values), object)
    text[integral] = values[integral].astype(np.int64).astype(str)
    text[~integral] = [str(v) for v in values[~integral]]
    return text
