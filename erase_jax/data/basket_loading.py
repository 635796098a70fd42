"""From a data configuration to a basket table: locate the files, recognise their format, read.

    data.dataset -> folder (under the data root, or a path) or a merged JSON file -> reader

Formats, recognised by file name in this order (`erase_jax.data.basket_files`,
`erase_jax.data.basket_csv`):

    <name>_merged.json (or any *_merged.json)        merged baskets {user: [[items], ...]}
    ta_feng_all_months_merged.csv                    Ta-Feng transactions
    orders.csv + order_products__*.csv               Instacart (products.csv: aisle categories)
    transaction_data.csv                             Dunnhumby "The Complete Journey"
    transactions_*.csv                               Dunnhumby "Let's get sort-of-real"

"synthetic" generates baskets (`erase_jax.data.synthetic.synthetic_baskets`) with the run's
seed. `data.category_file` adds item categories from a file (`basket_files.with_category_files`).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from erase_jax.data.interactions import Interactions
from erase_jax.data.loading import DATA_ROOT_ENV, SYNTHETIC, DataConfig, resolve_data_root
from erase_jax.data.synthetic import synthetic_baskets

FORMATS = ("merged JSON (*_merged.json)", "ta_feng_all_months_merged.csv", "orders.csv + order_products__*.csv",
           "transaction_data.csv", "transactions_*.csv")


def read_basket_data(data: DataConfig, seed: int) -> tuple[Interactions, str]:
    """(basket table, where it came from) for the configured data set."""
    if data.dataset == SYNTHETIC:
        known = set(inspect.signature(synthetic_baskets).parameters) - {"seed", "name"}
        unknown = sorted(set(data.synthetic) - known - _preference_names())
        if unknown:
            raise ValueError(f"unknown data.synthetic keys {unknown}; known: {sorted(known | _preference_names())}")
        inter, source = synthetic_baskets(seed=seed, **data.synthetic), SYNTHETIC
    else:
        inter, source = _read(data)
    if data.category_file:
        from erase_jax.data.basket_files import with_category_files

        inter = with_category_files(inter, Path(data.category_file).expanduser())
    return inter, source


def _read(data: DataConfig) -> tuple[Interactions, str]:
    from erase_jax.data import basket_csv, basket_files

    root = resolve_data_root(data.data_root)
    candidates = (root / data.dataset, Path(data.dataset).expanduser())
    for path in candidates:
        if path.is_file() and path.suffix == ".json":
            return basket_files.read_merged_json(path), str(path.resolve())
    folder = next((path for path in candidates if path.is_dir()), None)
    if folder is None:
        raise FileNotFoundError(
            f"basket data set {data.dataset!r} not found: neither {candidates[0]} (under the data root {root}, "
            f"set by data_root or ${DATA_ROOT_ENV}) nor {candidates[1].resolve()} exists"
        )
    folder = folder.resolve()
    merged = sorted(folder.glob("*_merged.json"))
    preferred = folder / f"{folder.name}_merged.json"
    if merged:
        path = preferred if preferred in merged else merged[0]
        return basket_files.read_merged_json(path), str(path)
    if (folder / "ta_feng_all_months_merged.csv").is_file():
        return basket_csv.read_tafeng_csv(folder / "ta_feng_all_months_merged.csv"), str(folder)
    if (folder / "orders.csv").is_file():
        return basket_csv.read_instacart(folder), str(folder)
    if (folder / "transaction_data.csv").is_file():
        return basket_csv.read_dunnhumby_journey(folder / "transaction_data.csv"), str(folder)
    if sorted(folder.glob("transactions_*.csv")):
        return basket_csv.read_dunnhumby_sortofreal(folder), str(folder)
    raise FileNotFoundError(f"no basket data format recognised in {folder}: looked for {', '.join(FORMATS)}")


def _preference_names() -> set[str]:
    from erase_jax.data.synthetic import synthetic_interactions

    return {name for name, p in inspect.signature(synthetic_interactions).parameters.items() if p.kind == p.KEYWORD_ONLY}
