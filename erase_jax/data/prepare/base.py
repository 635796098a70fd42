"""The one interface every data-set preparer implements, and the registry that names them.

A preparer turns a data set's public raw files into the benchmark's files (data-and-evaluation
spec sections 1.2-1.5, 3.2.1). It is a frozen dataclass whose fields are its knobs (k-core,
user share, category list, ...) with the original's values as defaults, plus:

    name: ClassVar[str]            the original's folder name, e.g. "movielens"
    task: ClassVar[str]            the task family whose files it writes
    source: ClassVar[str]          where the raw files come from (README, --help)
    raw_files: ClassVar[str]       what the --raw folder must hold
    known_categories: ClassVar[tuple[str, ...]]   sensitive categories it can identify
    forget_defaults: ClassVar[dict]   `data forget-set` defaults of spec 3.2.2 (rule, threshold)
    build(raw: Path, log: StepLog) -> Prepared     read, identify, filter; no file written
    groups: ClassVar[str] (optional)   what its `sessions` are called in the statistics
                                       ("sessions", the default, or "baskets")
    downloads: ClassVar[dict[str, str]] (optional)   raw file name -> public URL (`--download`,
                                       `download.py`); checksums: ClassVar[dict] (optional) their SHA-256

A `build` whose read of the raw files takes minutes wraps it in `log.resumable(...)`, so a rerun
after a failure starts after it (`resume.py`).

Writing (an atomic output folder, sensitive lists, stats.json) is shared
(`erase_jax.data.prepare.output`), so a preparer never touches the output folder. A preparer
registers with `@register` in its own file under `erase_jax/data/prepare/` and is found by name.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from erase_jax.config import apply_overrides, from_dict
from erase_jax.data.interactions import Interactions
from erase_jax.registry import Registry

LAYOUTS = ("atomic", "baskets")  # RecBole atomic files, or the merged basket JSON (spec 1.4)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What a preparer built, before anything is written.

    interactions: the final rows in the order they are written; `item_categories` holds every
      category written to `.item` (genres and sensitive categories alike).
    sensitive: category -> the rule record of its identification (rule, keywords, counts); the
      items of each are `interactions.item_categories[category]`.
    layout: one of LAYOUTS.
    item_fields: extra `.item` token columns aligned to item ids (e.g. Amazon's parent_asin).
    notes: counts for stats.json that belong to no step (items without metadata, ...).
    tables: extra CSV files for the folder, file name -> columns (e.g. raw session ids).
    """

    interactions: Interactions
    sensitive: dict[str, dict]
    layout: str
    item_fields: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)
    tables: dict[str, dict[str, np.ndarray]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        missing = [c for c in self.sensitive if c not in (self.interactions.item_categories or {})]
        if missing:
            raise ValueError(f"sensitive categories {missing} have no item list in item_categories")


class Preparer(Protocol):
    name: ClassVar[str]
    task: ClassVar[str]
    source: ClassVar[str]
    raw_files: ClassVar[str]
    known_categories: ClassVar[tuple[str, ...]]
    forget_defaults: ClassVar[dict]
    categories: tuple[str, ...]  # the sensitive categories to identify (a field: --option categories=[...])

    def build(self, raw: Path, log) -> Prepared: ...


PREPARERS: Registry[Preparer] = Registry("data set preparer", "erase_jax.data.prepare")
register = PREPARERS.register


def preparer_names() -> list[str]:
    return PREPARERS.names()


def build_preparer(name: str, options: list[str] = ()) -> Preparer:
    """The preparer `name` with `key=value` options (YAML values) set on its fields.

    Unknown names and options raise a ValueError listing the known ones.
    """
    try:
        cls = PREPARERS.get(name)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    return from_dict(cls, apply_overrides({}, list(options)), where=f"{cls.name} option ")


def check_categories(preparer, categories: tuple[str, ...]) -> tuple[str, ...]:
    """`categories` when every one is known to `preparer`, else a ValueError naming the
    unknown one and the known ones. Shared by the preparers' `__post_init__`."""
    unknown = [c for c in categories if c not in preparer.known_categories]
    if unknown:
        known = ", ".join(preparer.known_categories) or "none"
        raise ValueError(f"{preparer.name}: unknown sensitive category {unknown[0]!r}; known: {known}")
    return tuple(categories)


def find_raw_file(raw: Path, *candidates: str) -> Path:
    """The first of `candidates` (file names, glob patterns allowed) present in the folder `raw`,
    else FileNotFoundError listing them."""
    if not raw.is_dir():
        raise FileNotFoundError(f"raw data folder {raw} does not exist")
    for candidate in candidates:
        found = sorted(raw.glob(candidate))
        if found:
            return found[0]
    raise FileNotFoundError(f"none of {list(candidates)} in {raw}")
