"""From a data configuration to a basket table: locate the files, recognise their format, read.

    data.dataset -> folder (under the data root, or a path) or a merged JSON file -> reader

A folder's format is recognised by file name (`erase_jax.data.basket_csv.read_basket_folder`:
a merged basket JSON, Ta-Feng's transactions, Instacart's orders, either Dunnhumby release);
a `.json` path is read as a merged basket file.

"synthetic" generates baskets (`erase_jax.data.synthetic.synthetic_baskets`) with the run's
seed. `data.category_file` adds item categories from a file (`basket_files.with_category_files`).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from erase_jax.data.interactions import Interactions
from erase_jax.data.loading import DATA_ROOT_ENV, SYNTHETIC, DataConfig, resolve_data_root
from erase_jax.data.synthetic import synthetic_baskets


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
    from erase_jax.data.basket_csv import read_basket_folder
    from erase_jax.data.basket_files import read_merged_json

    root = resolve_data_root(data.data_root)
    candidates = (root / data.dataset, Path(data.dataset).expanduser())
    for path in candidates:
        if path.is_file() and path.suffix == ".json":
            return read_merged_json(path), str(path.resolve())
    for folder in candidates:
        if folder.is_dir():
            return read_basket_folder(folder.resolve()), str(folder.resolve())
    raise FileNotFoundError(
        f"basket data set {data.dataset!r} not found: neither {candidates[0]} (under the data root {root}, "
        f"set by data_root or ${DATA_ROOT_ENV}) nor {candidates[1].resolve()} exists"
    )


def _preference_names() -> set[str]:
    from erase_jax.data.synthetic import synthetic_interactions

    return {name for name, p in inspect.signature(synthetic_interactions).parameters.items() if p.kind == p.KEYWORD_ONLY}
