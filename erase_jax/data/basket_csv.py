"""Raw grocery transaction CSVs -> basket `Interactions` (layout: `erase_jax.data.basket_files`).

Ta-Feng, Instacart and the two Dunnhumby releases, read as the "reality check" (RC)
preprocessing defines a basket (next-basket spec 1.2); no filter is applied here (see
`filter_baskets`). Files are read in chunks with every value as text and then checked, so a
missing column, an empty id, a non-integer or an unparsable date raises a `DataFormatError`
naming the file and line (line numbers assume no line breaks inside quoted fields). Columns
not named are ignored. Dates become proleptic Gregorian day ordinals (`date.toordinal()`).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import Path

import numpy as np
import pandas as pd

from erase_jax.data.atomic import DataFormatError
from erase_jax.data.basket_files import CATEGORY_FILE_PREFIXES, basket_interactions, read_merged_json, with_category_files
from erase_jax.data.interactions import Interactions

CHUNK_ROWS = 1_000_000
INSTACART_SENSITIVE_AISLES = {  # aisle_id sets of `products.csv` (next-basket spec 4.3)
    "meat": (5, 95, 96, 15, 33, 34, 35, 49, 106, 122),
    "alcohol": (27, 28, 62, 124, 134),
    "baby": (82, 92, 102, 56),
}
DUNNHUMBY_ORDERS = ("day_time", "time_of_day")
TAFENG_CSV = "ta_feng_all_months_merged.csv"


def read_basket_folder(folder: str | Path) -> Interactions:
    """The basket data set in `folder`, its format recognised by file name, first match wins:
    `<folder name>_merged.json` (or a single `*_merged.json`), Instacart's `orders.csv`,
    Dunnhumby's `transaction_data.csv`, Dunnhumby's `transactions_*.csv`, Ta-Feng's
    `ta_feng_all_months_merged.csv`. Sensitive item lists beside it
    (`sensitive_products_<cat>.txt` / `sensitive_asins_<cat>.txt`, spec 1.1) become item
    categories (`with_category_files`). No filter is applied.
    """
    folder = Path(folder)
    merged = folder / f"{folder.name}_merged.json"
    candidates = [merged] if merged.is_file() else sorted(folder.glob("*_merged.json"))
    if len(candidates) == 1:
        inter = read_merged_json(candidates[0])
    elif len(candidates) > 1:
        raise ValueError(f"{folder}: several merged basket files {[c.name for c in candidates]}; expected {merged.name}")
    elif (folder / "orders.csv").is_file():
        inter = read_instacart(folder)
    elif (folder / "transaction_data.csv").is_file():
        inter = read_dunnhumby_journey(folder / "transaction_data.csv")
    elif any(folder.glob("transactions_*.csv")):
        inter = read_dunnhumby_sortofreal(folder)
    elif (folder / TAFENG_CSV).is_file():
        inter = read_tafeng_csv(folder / TAFENG_CSV)
    else:
        raise FileNotFoundError(f"no basket data in {folder}: looked for {merged.name}, orders.csv (Instacart), "
                                f"transaction_data.csv or transactions_*.csv (Dunnhumby), {TAFENG_CSV}")
    lists = sorted(p for prefix in CATEGORY_FILE_PREFIXES for p in folder.glob(f"{prefix}*.txt"))
    return with_category_files(inter, *lists) if lists else inter


def read_tafeng_csv(path: str | Path) -> Interactions:
    """`ta_feng_all_months_merged.csv`: basket = the distinct PRODUCT_IDs of one CUSTOMER_ID on
    one TRANSACTION_DT (`%m/%d/%Y`); timestamp = the date's day ordinal."""
    path = Path(path)
    table = _read_csv(path, {"TRANSACTION_DT": "date:%m/%d/%Y", "CUSTOMER_ID": "token", "PRODUCT_ID": "token"})
    users, days = table["CUSTOMER_ID"], table["TRANSACTION_DT"]
    return basket_interactions(users, _pair_keys(users, days), days, table["PRODUCT_ID"], name="tafeng")


def read_instacart(folder: str | Path) -> Interactions:
    """Instacart's `orders.csv` with `order_products__prior.csv` and/or `__train.csv`.

    Basket = the distinct product_ids of one order; a user's orders are ordered by
    order_number, which is also the timestamp (Instacart has no dates; order_number is the
    order's 1-based position). Orders without products (eval_set "test") have no rows. When
    `products.csv` is present, `item_categories` holds the sensitive categories of spec 4.3
    (`INSTACART_SENSITIVE_AISLES`, by aisle_id) in the item id space.
    """
    folder = Path(folder)
    orders_path = folder / "orders.csv"
    orders = _read_csv(orders_path, {"order_id": "int", "user_id": "token", "order_number": "int"})
    order_index = pd.Index(orders["order_id"])
    if order_index.has_duplicates:
        row = int(np.argmax(order_index.duplicated()))
        raise DataFormatError(orders_path, int(orders["_line"][row]), f"order_id {order_index[row]} appears twice")
    parts = [folder / f"order_products__{part}.csv" for part in ("prior", "train")]
    parts = [p for p in parts if p.is_file()]
    if not parts:
        raise FileNotFoundError(f"no order_products__prior.csv or order_products__train.csv in {folder}")
    order_ids, products = [], []
    for part in parts:
        table = _read_csv(part, {"order_id": "int", "product_id": "token"})
        row_order = order_index.get_indexer(table["order_id"])
        if np.any(row_order < 0):
            row = int(np.argmax(row_order < 0))
            raise DataFormatError(part, int(table["_line"][row]), f"order_id {table['order_id'][row]} is not in orders.csv")
        order_ids.append(row_order)
        products.append(table["product_id"])
    row_order, items = np.concatenate(order_ids), np.concatenate(products)
    inter = basket_interactions(orders["user_id"][row_order], row_order, orders["order_number"][row_order].astype(float),
                                items, name="instacart")
    products_path = folder / "products.csv"
    if products_path.is_file():
        inter = _with_aisle_categories(inter, products_path)
    return inter


def read_dunnhumby_journey(path: str | Path, order: str = "day_time") -> Interactions:
    """Dunnhumby "The Complete Journey" `transaction_data.csv`: user = household_key, basket =
    the distinct PRODUCT_IDs of one BASKET_ID (QUANTITY ignored).

    order "day_time" (default, intended): baskets by DAY, then TRANS_TIME (HHMM); timestamp =
    DAY + minutes / 1440. "time_of_day": the original v2 script's order, by the basket's mean
    TRANS_TIME only (next-basket spec 5.16); timestamp = the basket's position in that order.
    """
    if order not in DUNNHUMBY_ORDERS:
        raise ValueError(f"Dunnhumby basket order must be one of {DUNNHUMBY_ORDERS}, got {order!r}")
    path = Path(path)
    table = _read_csv(path, {"household_key": "token", "BASKET_ID": "token", "DAY": "int",
                             "PRODUCT_ID": "token", "TRANS_TIME": "int"})
    clock = table["TRANS_TIME"]
    if order == "day_time":
        times = table["DAY"] + ((clock // 100) * 60 + clock % 100) / 1440.0
        return basket_interactions(table["household_key"], table["BASKET_ID"], times, table["PRODUCT_ID"], name="dunnhumby")
    baskets = pd.factorize(table["BASKET_ID"])[0]
    mean_clock = (np.bincount(baskets, weights=clock) / np.bincount(baskets))[baskets]
    return basket_interactions(table["household_key"], baskets, mean_clock, table["PRODUCT_ID"],
                               name="dunnhumby", positions=True)


def read_dunnhumby_sortofreal(path: str | Path) -> Interactions:
    """Dunnhumby "Let's get sort-of-real" `transactions_*.csv` (a file, or a folder whose
    `transactions_*.csv` files are read in name order): basket = the distinct PROD_CODEs of one
    CUST_CODE on one SHOP_DATE (YYYYMMDD; spec 1.2); timestamp = the day ordinal. Rows without
    a CUST_CODE (shoppers without a loyalty card) are dropped."""
    path = Path(path)
    files = sorted(path.glob("transactions_*.csv")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no transactions_*.csv in {path}")
    tables = [_read_csv(f, {"CUST_CODE": "optional", "SHOP_DATE": "date:%Y%m%d", "PROD_CODE": "token"}) for f in files]
    users, days, items = (np.concatenate([t[c] for t in tables]) for c in ("CUST_CODE", "SHOP_DATE", "PROD_CODE"))
    card = users != ""
    users, days, items = users[card], days[card], items[card]
    return basket_interactions(users, _pair_keys(users, days), days, items, name="dunnhumby")


def _pair_keys(users: np.ndarray, days: np.ndarray) -> np.ndarray:
    """One int64 key per (user, day) pair."""
    user_codes = pd.factorize(users)[0].astype(np.int64)
    day_codes, _ = pd.factorize(days)
    return user_codes * (int(day_codes.max()) + 1 if len(day_codes) else 1) + day_codes


def _with_aisle_categories(inter: Interactions, products_path: Path) -> Interactions:
    products = _read_csv(products_path, {"product_id": "token", "aisle_id": "int"})
    item_of_product = pd.Index(inter.item_tokens).get_indexer(products["product_id"])
    categories = {}
    for name, aisles in INSTACART_SENSITIVE_AISLES.items():
        picked = item_of_product[np.isin(products["aisle_id"], aisles) & (item_of_product >= 0)]
        categories[name] = np.unique(picked).astype(np.int32)
    return dataclasses.replace(inter, item_categories=categories)


def _read_csv(path: Path, columns: dict[str, str]) -> dict[str, np.ndarray]:
    """The named columns of a comma-separated file with a header, checked row by row.

    Kinds: "token" (non-empty text), "optional" (text, may be empty), "int" (int64) and
    "date:<strptime format>" (int64 day ordinal). Blank lines are skipped. The result also
    holds "_line", the 1-based file line of each row.
    """
    if not path.is_file():
        raise FileNotFoundError(f"basket data file not found: {path}")
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataFormatError(path, 1, f"header lacks column(s) {missing} (header: {list(header)})")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in [*columns, "_line"]}
    dates: dict[str, dict[str, int]] = {}
    try:
        chunks = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, chunksize=CHUNK_ROWS)
        for chunk in chunks:
            lines = chunk.index.to_numpy(np.int64) + 2
            blank = (chunk == "").all(axis=1).to_numpy()
            chunk, lines = chunk[~blank], lines[~blank]
            parts["_line"].append(lines)
            for name, kind in columns.items():
                values = chunk[name].to_numpy(dtype=str)
                parts[name].append(_convert(path, name, kind, np.char.strip(values), lines, dates))
    except pd.errors.ParserError as error:
        match = re.search(r"line (\d+)", str(error))
        raise DataFormatError(path, int(match.group(1)) if match else None, f"malformed CSV: {error}") from None
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _convert(path: Path, name: str, kind: str, values: np.ndarray, lines: np.ndarray, dates: dict) -> np.ndarray:
    if kind == "optional":
        return values
    empty = values == ""
    if empty.any():
        raise DataFormatError(path, int(lines[np.argmax(empty)]), f"empty or missing {name}")
    if kind == "token":
        return values
    if kind == "int":
        numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(np.float64)
        bad = np.isnan(numbers) | (numbers != np.round(numbers))
        if bad.any():
            row = int(np.argmax(bad))
            raise DataFormatError(path, int(lines[row]), f"{name} {str(values[row])!r} is not an integer")
        return numbers.astype(np.int64)
    fmt = kind.removeprefix("date:")
    known = dates.setdefault(name, {})
    unique, inverse = np.unique(values, return_inverse=True)
    ordinals = np.empty(len(unique), np.int64)
    for k, text in enumerate(unique.tolist()):
        if text not in known:
            try:
                known[text] = datetime.datetime.strptime(text, fmt).date().toordinal()
            except ValueError:
                row = int(np.argmax(values == text))
                raise DataFormatError(path, int(lines[row]), f"{name} {text!r} is not a date in the format {fmt}") from None
        ordinals[k] = known[text]
    return ordinals[inverse]
