"""Streaming readers for big raw files, in bounded memory, with a progress bar.

Files are read line by line (`json_records`: JSON lines, gzip-compressed when the name ends in
`.gz`) or in chunks of rows (`table_chunks`: delimited text through pandas), and only what the
benchmark keeps is held: tokens become dense int ids as they arrive (`TokenIds`), numbers go
into typed arrays (`InteractionRows`), so memory grows with the rows kept, not with the text.
Every problem (a truncated or corrupt gzip stream, malformed JSON, a missing field, a
non-number, a wrong column count) raises a `DataFormatError` naming the file and the 1-based
line (for delimited text: assuming no line breaks inside quoted fields).

The progress bar (`progress_bar`, also used by `download`) counts the bytes of the file on disk
(compressed bytes for gzip); it is shown only when stderr is a terminal, never with `quiet`
(`--quiet`) and never when the environment sets `ERASE_JAX_NO_PROGRESS` to a non-empty value.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import sys
import zlib
from array import array
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.interactions import Interactions

CHUNK_ROWS = 1_000_000
PROGRESS_EVERY_LINES = 50_000
_GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
_DTYPES = {"q": np.int64, "d": np.float64}
_PART_DTYPES = (np.int32, np.int32, np.float32, np.float64)  # users, items, ratings, timestamps as kept
NO_PROGRESS_ENV = "ERASE_JAX_NO_PROGRESS"


def progress_bar(total: int | None, description: str, quiet: bool = False):
    """A tqdm bar over `total` bytes on stderr, or None where none is shown (module doc)."""
    if quiet or os.environ.get(NO_PROGRESS_ENV) or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=description, file=sys.stderr)


@contextlib.contextmanager
def _opened(path: Path, quiet: bool):
    """(binary stream, progress callback) over `path`, decompressing `.gz`."""
    if not path.is_file():
        raise FileNotFoundError(f"raw file not found: {path}")
    with open(path, "rb") as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" else raw
        bar = progress_bar(path.stat().st_size, path.name, quiet)

        def advance() -> None:
            if bar is not None:
                bar.update(raw.tell() - bar.n)

        try:
            yield stream, advance
        finally:
            if bar is not None:
                advance()
                bar.close()


def text_lines(path: str | Path, quiet: bool = False) -> Iterator[tuple[int, str]]:
    """(1-based line number, line) of a UTF-8 text file, gzip-compressed if named `*.gz`."""
    path = Path(path)
    number = 0
    with _opened(path, quiet) as (stream, advance):
        text = io.TextIOWrapper(stream, encoding="utf-8")
        try:
            for number, line in enumerate(text, start=1):
                if number % PROGRESS_EVERY_LINES == 0:
                    advance()
                yield number, line
        except _GZIP_ERRORS as error:
            raise DataFormatError(path, number + 1, f"truncated or corrupt gzip stream ({error})") from None
        except UnicodeDecodeError as error:
            raise DataFormatError(path, number + 1, f"not UTF-8 text ({error.reason})") from None


def json_records(path: str | Path, required: tuple[str, ...], quiet: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) per non-blank line of a JSON-lines file; every field of
    `required` must be present and not null or empty."""
    path = Path(path)
    for number, line in text_lines(path, quiet):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(path, number, f"malformed JSON: {error.msg} (column {error.colno})") from None
        if not isinstance(record, dict):
            raise DataFormatError(path, number, f"expected a JSON object, got {type(record).__name__}")
        for field in required:
            if record.get(field) in (None, ""):
                raise DataFormatError(path, number, f"no {field!r} field (required: {', '.join(required)})")
        yield number, record


def table_chunks(
    path: str | Path,
    names: list[str] | None = None,
    sep: str = ",",
    quiet: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    engine: str = "c",
) -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
    """(chunk of rows, their 1-based file lines) of a delimited text file, every value a string.

    `names`: the column names of a file without a header line; None reads them from the first
    line. Blank lines are skipped; text that is not UTF-8 is replaced (old MovieLens files are
    Latin-1; only ids and numbers are kept from them, keywords are ASCII).
    """
    path = Path(path)
    header_lines = 0 if names is not None else 1
    with _opened(path, quiet) as (stream, advance):
        reader = pd.read_csv(
            stream, sep=sep, header=None if names is not None else 0, names=names, dtype=str,
            keep_default_na=False, skip_blank_lines=False, chunksize=chunk_rows, engine=engine,
            encoding="utf-8", encoding_errors="replace",
        )
        try:
            for chunk in reader:
                lines = chunk.index.to_numpy(np.int64) + 1 + header_lines
                blank = (chunk == "").all(axis=1).to_numpy()
                advance()
                yield chunk[~blank], lines[~blank]
        except pd.errors.ParserError as error:
            match = re.search(r"line (\d+)", str(error))
            raise DataFormatError(path, int(match.group(1)) if match else None, f"malformed: {error}") from None
        except _GZIP_ERRORS as error:
            raise DataFormatError(path, None, f"truncated or corrupt gzip stream ({error})") from None


def numbers(path: Path, chunk: pd.DataFrame, lines: np.ndarray, column: str, integral: bool = False) -> np.ndarray:
    """float64 values of a column (int64 when `integral`); a missing or bad value is an error."""
    values = chunk[column]
    parsed = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    bad = ~np.isfinite(parsed)
    if integral:
        bad |= parsed != np.round(parsed)
    if bad.any():
        row = int(np.argmax(bad))
        kind = "an integer" if integral else "a number"
        raise DataFormatError(path, int(lines[row]), f"{column} {values.iat[row]!r} is not {kind}")
    return parsed.astype(np.int64) if integral else parsed


def require_columns(path: Path, chunk: pd.DataFrame, columns) -> None:
    """A DataFormatError on line 1 unless the file's header has every one of `columns`."""
    missing = [c for c in columns if c not in chunk.columns]
    if missing:
        raise DataFormatError(path, 1, f"header lacks column(s) {missing} (header: {list(chunk.columns)})")


def tokens(path: Path, chunk: pd.DataFrame, lines: np.ndarray, column: str) -> np.ndarray:
    """Non-empty string values of a column."""
    values = chunk[column].to_numpy(dtype=object)
    empty = values == ""
    if empty.any():
        raise DataFormatError(path, int(lines[int(np.argmax(empty))]), f"empty {column}")
    return values


class TokenIds:
    """Dense ids for tokens in first-seen order, grown as rows arrive; `ids` of tokens already
    seen is the lookup from tokens back to read ids."""

    def __init__(self):
        self.index: dict[str, int] = {}

    def id(self, token: str) -> int:
        return self.index.setdefault(token, len(self.index))

    def ids(self, values: np.ndarray) -> np.ndarray:
        codes, uniques = pd.factorize(values)
        mapping = np.fromiter((self.id(str(t)) for t in uniques), np.int64, len(uniques))
        return mapping[codes]

    def vocabulary(self) -> np.ndarray:
        return np.asarray(list(self.index), dtype=str)


class InteractionRows:
    """(user, item, rating, timestamp) rows gathered in typed arrays as they are read."""

    def __init__(self):
        self.user_ids, self.item_ids = TokenIds(), TokenIds()
        self._pending = (array("q"), array("q"), array("d"), array("d"))  # single rows, not yet in _parts
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._n_parts = 0

    def __len__(self) -> int:
        return self._n_parts + len(self._pending[0])

    def add(self, user: str, item: str, rating: float, timestamp: float) -> None:
        """One row (JSON lines)."""
        users, items, ratings, timestamps = self._pending
        users.append(self.user_ids.id(user))
        items.append(self.item_ids.id(item))
        ratings.append(rating)
        timestamps.append(timestamp)
        if len(users) >= CHUNK_ROWS:
            self._flush()

    def add_chunk(self, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, timestamps: np.ndarray) -> None:
        """Many rows (token arrays and numbers, as `tokens` and `numbers` return them)."""
        self._flush()
        self._append((self.user_ids.ids(users), self.item_ids.ids(items), ratings, timestamps))

    def interactions(self, name: str) -> Interactions:
        """The rows read so far, ids dense in first-seen order (as `from_tokens` assigns them)."""
        self._flush()
        users, items, ratings, timestamps = (
            np.concatenate([part[k] for part in self._parts]) if self._parts else np.zeros(0) for k in range(4)
        )
        return Interactions(
            users=users.astype(np.int32),
            items=items.astype(np.int32),
            user_tokens=self.user_ids.vocabulary(),
            item_tokens=self.item_ids.vocabulary(),
            ratings=ratings.astype(np.float32),
            timestamps=timestamps.astype(np.float64),
            name=name,
        )

    def _append(self, columns) -> None:
        self._parts.append(tuple(np.asarray(c, dtype) for c, dtype in zip(columns, _PART_DTYPES)))
        self._n_parts += len(columns[0])

    def _flush(self) -> None:
        if len(self._pending[0]):
            self._append([np.frombuffer(column, _DTYPES[column.typecode]).copy() for column in self._pending])
            self._pending = (array("q"), array("q"), array("d"), array("d"))
