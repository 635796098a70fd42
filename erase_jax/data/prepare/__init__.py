"""The benchmark's data sets from their public raw files: `erase-jax data prepare` and
`erase-jax data forget-set` (data-and-evaluation spec sections 1.2-1.5, 3.2).

One module per data-set family, each a registered preparer found by name (`base.py` states the
interface): `movielens`, `goodreads`, `amazon` (Amazon Reviews 2023: Grocery, Books),
`baskets` (Ta-Feng, Instacart, Dunnhumby through the readers of `erase_jax.data.basket_csv`),
`thirtymusic` (30Music's idomaar files), `nowplaying` (#nowplaying's sessions_2018.csv).
Shared: `streams` (bounded-memory readers with progress bars and errors naming file and line),
`session_rows` (rows of data sets with given sessions), `keywords` (sensitive-item rules), `steps` (the original's CF chain and per-step statistics), `output` (the atomic output
folder, sensitive lists, stats.json) and `forget_sets` (the original's forget files from a
prepared folder, drawn by `erase_jax.data.scenarios`).
"""

from erase_jax.data.prepare.base import PREPARERS, Prepared, build_preparer, preparer_names, register
from erase_jax.data.prepare.forget_sets import write_forget_sets
from erase_jax.data.prepare.output import prepare_dataset, read_stats

__all__ = [
    "PREPARERS",
    "Prepared",
    "build_preparer",
    "prepare_dataset",
    "preparer_names",
    "read_stats",
    "register",
    "write_forget_sets",
]
