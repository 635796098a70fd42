"""Ta-Feng, Instacart and Dunnhumby (NBR) from their public raw files (next-basket spec 1.2,
4.3; data-and-evaluation spec 1.4, 3.2.1).

Each is read by its one reader in `erase_jax.data.basket_csv` (basket = distinct products of a
customer-day, an order or a basket id), then filtered step by step as the script that produced
the benchmark's file did, and written as a merged basket JSON with users and items re-indexed
from 0 (`output.write_basket_files`):

| data set | filters (in order) | sensitive categories |
|---|---|---|
| tafeng | 3-50 baskets per user; items >= 3 times in non-last baskets (RC) | none in the original; given lists |
| instacart | the first 10 % of user ids; 3-50 orders; items >= 17 (RC) | alcohol, meat, baby by aisle_id (`products.csv`) |
| dunnhumby, The Complete Journey | >= 4 baskets per user (ERASE's v2 script) | alcohol: `product.csv` keywords, or a given list |
| dunnhumby, Let's get sort-of-real | 3-50 shopping days; items >= 17 (RC) | given lists only |

The item filter counts occurrences in each kept user's baskets other than the last; baskets
it empties vanish and users are not checked again (`basket_files.filter_baskets`, as RC).
`category_lists` adds categories from files of raw item ids (`{alcohol: sensitive_products_alcohol.txt}`,
the original's Dunnhumby list), translated into the re-indexed ids.

Deviations from the original: Dunnhumby baskets are ordered by (DAY, TRANS_TIME), not by time
of day alone (spec 5.16); every data set is re-indexed (the v2 script kept raw PRODUCT_IDs) and
the mapping is written (`item_map.csv`), so Instacart's aisle categories and any raw-id list land
in the merged file's id space (spec 5.17). Which of RC's users are "the first 10 % of user ids" is
inferred: the int(0.1 x n) smallest numeric user ids. Dunnhumby's alcohol list has no known
derivation; the `product.csv` rule (whole-word keywords on department and commodity
descriptions) is this project's, recorded with the list.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from erase_jax.data.basket_csv import (
    TAFENG_CSV,
    read_dunnhumby_journey,
    read_dunnhumby_sortofreal,
    read_instacart,
    read_tafeng_csv,
)
from erase_jax.data.basket_files import filter_baskets, read_category_file
from erase_jax.data.interactions import Interactions
from erase_jax.data.prepare.base import Prepared, check_categories, find_raw_file, register
from erase_jax.data.prepare.keywords import Keywords, SignalRule
from erase_jax.data.prepare.steps import StepLog
from erase_jax.data.prepare.streams import table_chunks, tokens
from erase_jax.data.scenarios import request_order

DUNNHUMBY_ALCOHOL = SignalRule(
    {"product": Keywords(exact=("beer", "beers", "ales", "wine", "wines", "liquor", "liquors", "spirits", "vodka",
                                "whiskey", "whisky", "rum", "gin", "tequila", "bourbon", "brandy", "cognac",
                                "champagne"))},
    1, "erase-jax: product.csv DEPARTMENT, COMMODITY_DESC, SUB_COMMODITY_DESC (the original's list has no known source)")
FORGET_DEFAULTS = {"rule": "reach"}  # create_nbr_unlearning_sets_user_ids.py (spec 3.2.3)


@dataclasses.dataclass(frozen=True)
class BasketPreparer:
    """Read, add categories, filter: what the three share. Subclasses read and name categories."""

    task: ClassVar[str] = "NBR"
    groups: ClassVar[str] = "baskets"
    forget_defaults: ClassVar[dict] = FORGET_DEFAULTS
    known_categories: ClassVar[tuple[str, ...]] = ()

    categories: tuple[str, ...] = ()
    category_lists: dict[str, str] = dataclasses.field(default_factory=dict)  # category -> file of raw item ids
    user_share: float = 1.0  # keep the int(share x n) smallest numeric user ids first
    min_baskets: int = 3
    max_baskets: int | None = 50
    min_item_count: int = 0

    def __post_init__(self):
        object.__setattr__(self, "categories", check_categories(self, self.categories))
        clash = sorted(set(self.categories) & set(self.category_lists))
        if clash:
            raise ValueError(f"{self.name}: category {clash[0]!r} is both identified and given as a list")

    def build(self, raw: Path, log: StepLog) -> Prepared:
        log.sensitive = (*self.categories, *self.category_lists)
        inter, source = self.read(raw)
        categories, sensitive = self.identify(raw, inter)
        for category, path in self.category_lists.items():
            found, unknown = read_category_file(path, inter.item_tokens, category)
            categories[category] = found[category]
            sensitive[category] = {"source": f"given list {Path(path).resolve()}", "listed": len(found[category]) + len(unknown),
                                   "not_in_data": len(unknown)}
        inter = log.record(f"read ({source})", dataclasses.replace(inter, item_categories=categories))
        return Prepared(self.filtered(inter, log), sensitive, "baskets")

    def filtered(self, inter: Interactions, log: StepLog) -> Interactions:
        if self.user_share < 1:
            inter = log.record(f"the first {self.user_share:.0%} of user ids", first_users(inter, self.user_share))
        upper = f"-{self.max_baskets}" if self.max_baskets is not None else " or more"
        inter = log.record(f"users with {self.min_baskets}{upper} baskets",
                           filter_baskets(inter, self.min_baskets, self.max_baskets))
        if self.min_item_count > 1:
            inter = log.record(f"items seen >= {self.min_item_count} times in non-last baskets",
                               filter_baskets(inter, 0, None, self.min_item_count))
        return inter

    def read(self, raw: Path) -> tuple[Interactions, str]:
        raise NotImplementedError

    def identify(self, raw: Path, inter: Interactions) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """(category -> item ids, category -> rule record) for `self.categories`."""
        return {}, {}


@register
@dataclasses.dataclass(frozen=True)
class TaFeng(BasketPreparer):
    """`tafeng`: RC's Ta-Feng (no sensitive categories in the original)."""

    name = "tafeng"
    source = "Ta-Feng grocery transactions (Nov 2000 - Feb 2001), e.g. Kaggle's ta-feng-grocery-dataset"
    raw_files = TAFENG_CSV
    min_item_count: int = 3

    def read(self, raw: Path) -> tuple[Interactions, str]:
        return read_tafeng_csv(find_raw_file(raw, TAFENG_CSV)), TAFENG_CSV


@register
@dataclasses.dataclass(frozen=True)
class Instacart(BasketPreparer):
    """`instacart`: RC's Instacart, aisle categories from `products.csv`."""

    name = "instacart"
    source = "Instacart Market Basket Analysis (Kaggle, 2017)"
    raw_files = "orders.csv, order_products__prior.csv, order_products__train.csv, products.csv"
    known_categories = ("alcohol", "meat", "baby")

    categories: tuple[str, ...] = ("alcohol", "meat", "baby")
    user_share: float = 0.1
    min_item_count: int = 17

    def read(self, raw: Path) -> tuple[Interactions, str]:
        find_raw_file(raw, "orders.csv")
        if self.categories and not (raw / "products.csv").is_file():
            raise FileNotFoundError(f"{raw / 'products.csv'} is needed for the categories {list(self.categories)} "
                                    "(or pass --option categories=[])")
        return read_instacart(raw), "orders.csv"

    def identify(self, raw: Path, inter: Interactions) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        from erase_jax.data.basket_csv import INSTACART_SENSITIVE_AISLES

        categories = {c: inter.item_categories[c] for c in self.categories}
        return categories, {c: {"source": "create_nbr_unlearning_sets_user_ids.py: products.csv aisle_id",
                                "aisle_ids": list(INSTACART_SENSITIVE_AISLES[c])} for c in self.categories}


@register
@dataclasses.dataclass(frozen=True)
class Dunnhumby(BasketPreparer):
    """`dunnhumby`: The Complete Journey (ERASE's v2 script) or Let's get sort-of-real (RC)."""

    name = "dunnhumby"
    source = "dunnhumby Source Files: The Complete Journey, or Let's get sort-of-real"
    raw_files = "transaction_data.csv [+ product.csv] (Complete Journey) or transactions_*.csv (sort-of-real)"
    known_categories = ("alcohol",)

    categories: tuple[str, ...] = ("alcohol",)
    min_baskets: int | None = None  # None: the release's script's (4 for Complete Journey, 3 for sort-of-real)
    max_baskets: int | None = -1  # -1: the release's (none, 50)
    min_item_count: int | None = None  # None: the release's (0, 17)

    def build(self, raw: Path, log: StepLog) -> Prepared:
        journey = (raw / "transaction_data.csv").is_file()
        defaults = (4, None, 0) if journey else (3, 50, 17)
        chosen = (self.min_baskets, self.max_baskets, self.min_item_count)
        unset = (None, -1, None)
        resolved = [d if c == u else c for c, d, u in zip(chosen, defaults, unset)]
        fields = dict(zip(("min_baskets", "max_baskets", "min_item_count"), resolved))
        return BasketPreparer.build(dataclasses.replace(self, **fields), raw, log)

    def read(self, raw: Path) -> tuple[Interactions, str]:
        if (raw / "transaction_data.csv").is_file():
            return read_dunnhumby_journey(raw / "transaction_data.csv"), "transaction_data.csv (The Complete Journey)"
        find_raw_file(raw, "transactions_*.csv", "transaction_data.csv")
        return read_dunnhumby_sortofreal(raw), "transactions_*.csv (Let's get sort-of-real)"

    def identify(self, raw: Path, inter: Interactions) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        if not self.categories:
            return {}, {}
        path = raw / "product.csv"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is needed to identify {list(self.categories)}; give the original's list "
                                    "(--option 'category_lists={alcohol: sensitive_products_alcohol.txt}' "
                                    "--option categories=[]) or pass --option categories=[]")
        matched = []
        for chunk, lines in table_chunks(path):
            texts = chunk["DEPARTMENT"] + " " + chunk["COMMODITY_DESC"] + " " + chunk["SUB_COMMODITY_DESC"]
            hits = np.fromiter((DUNNHUMBY_ALCOHOL.matches({"product": t}) for t in texts), bool, len(texts))
            matched.extend(tokens(path, chunk, lines, "PRODUCT_ID")[hits])
        found = pd.Index(inter.item_tokens).get_indexer(matched)
        ids = np.unique(found[found >= 0]).astype(np.int32)
        return {"alcohol": ids}, {"alcohol": {**DUNNHUMBY_ALCOHOL.describe(), "products_matched": len(matched)}}


def first_users(inter: Interactions, share: float) -> Interactions:
    """The rows of the int(share x n) users with the smallest ids (numeric order), compacted."""
    n_kept = int(share * inter.n_users)
    kept_users = request_order(inter.user_tokens)[:n_kept]
    return inter.select(np.isin(inter.users, kept_users)).compact()
