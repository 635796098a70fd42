"""Preparation steps shared by the preparers, and the statistics recorded after each one.

`StepLog.record(step, inter)` notes users, items, rows (interactions; for basket data also
baskets), density and the share of rows in each sensitive category after a step; stats.json
holds the list and `summary_line` the last entry in one line.

`original_cf_steps` is the chain every CF (and Amazon Books) converter of the original ends with,
its `deduplicate.py` (spec 1.2): exact-row de-duplication (same user, item, rating AND
timestamp; the same pair at another time or rating stays), rows sorted by user then timestamp,
then the iterative (k, k)-core (k = 5, at most 100 rounds).

Deliberate differences from the original: `deduplicate.py` as its wrappers call it drops the
first raw record (it takes it for a header); here every record is kept. Rows of one user with
equal timestamps keep their order in the raw file (a stable sort); users are ordered as pandas
orders the ids (numerically when every id is an integer, else as text: `request_order`).
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from erase_jax.data.filters import k_core_rows
from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios import request_order

K_CORE = 5  # the original's deduplicate.py and RecBole's [5, inf) (spec 1.2)
K_CORE_ROUNDS = 100


class StepLog:
    """Statistics after each preparation step, in order; prints one line per step unless quiet.
    `cache` (a `resume.StepCache`, set by `prepare_dataset`) keeps the results of `resumable` steps."""

    def __init__(self, name: str, sensitive: tuple[str, ...] = (), quiet: bool = False, groups: str = "sessions",
                 cache=None):
        self.name, self.quiet, self.groups, self.cache = name, quiet, groups, cache
        self.sensitive = tuple(sensitive)  # the categories whose shares are recorded
        self.steps: list[dict] = []

    def resumable(self, step: str, files, compute) -> tuple[Interactions, dict]:
        """(interactions, extras) of `compute() -> (label, interactions, extras)`, recorded as the
        step `label`; saved under `step` with the fingerprint of the input `files`, and taken from
        there instead of computed when a saved result matches (`resume` module doc)."""
        saved = self.cache.load(step, files) if self.cache is not None else None
        if saved is not None:
            inter, extras, stats = saved
            self.steps.append(stats)
            if not self.quiet:
                print(f"{self.name}: {stats['step']}: {describe(stats)} (saved by an earlier run, "
                      f"{self.cache.folder})", file=sys.stderr)
            return inter, extras
        label, inter, extras = compute()
        self.record(label, inter)
        if self.cache is not None:
            self.cache.save(step, files, inter, extras, self.steps[-1])
        return inter, extras

    def record(self, step: str, inter: Interactions) -> Interactions:
        """Appends the statistics of `inter` after `step`; returns `inter` (for chaining)."""
        stats = {"step": step, **data_stats(inter, self.sensitive, self.groups)}
        self.steps.append(stats)
        if not self.quiet:
            print(f"{self.name}: {step}: {describe(stats)}", file=sys.stderr)
        if not stats["interactions"]:
            raise ValueError(f"{self.name}: no interactions left after step {step!r}")
        return inter


def data_stats(inter: Interactions, sensitive: tuple[str, ...] = (), groups: str = "sessions") -> dict:
    """users, items (those with a row), interactions, sessions or baskets (`groups`, when
    `inter.sessions` is set),
    density = interactions / (users x items), and per sensitive category its items among them
    and its share of the interactions."""
    users = int(np.count_nonzero(np.bincount(inter.users, minlength=inter.n_users)))
    item_counts = np.bincount(inter.items, minlength=inter.n_items)
    items = int(np.count_nonzero(item_counts))
    stats = {"users": users, "items": items, "interactions": len(inter)}
    if inter.sessions is not None:
        stats[groups] = len(np.unique(inter.sessions))
    stats["density"] = len(inter) / (users * items) if users and items else 0.0
    categories = {}
    for category in sensitive:
        ids = inter.category_items(category)
        rows = int(item_counts[ids].sum())
        categories[category] = {"items": int(np.count_nonzero(item_counts[ids])),
                                "interactions": rows, "share": rows / len(inter) if len(inter) else 0.0}
    if categories:
        stats["sensitive"] = categories
    return stats


def describe(stats: dict) -> str:
    """`943 users, 1,682 items, 100,000 interactions (density 6.3 %); sensitive: health 0.52 %`."""
    text = f"{stats['users']:,} users, {stats['items']:,} items, "
    if "baskets" in stats:
        text += f"{stats['baskets']:,} baskets, {stats['interactions']:,} item occurrences"
    elif "sessions" in stats:
        text += f"{stats['sessions']:,} sessions, {stats['interactions']:,} interactions"
    else:
        text += f"{stats['interactions']:,} interactions"
    text += f" (density {100 * stats['density']:.4g} %)"
    shares = [f"{name} {100 * c['share']:.3g} %" for name, c in stats.get("sensitive", {}).items()]
    return text + ("; sensitive: " + ", ".join(shares) if shares else "")


def summary_line(name: str, steps: list[dict]) -> str:
    return f"{name}: {describe(steps[-1])}"


def original_cf_steps(inter: Interactions, log: StepLog, k_core: int = K_CORE) -> Interactions:
    """The original's `deduplicate.py` on rows as read (module doc), each step logged."""
    inter = log.record("deduplicated (identical user, item, rating, timestamp)", deduplicated(inter))
    inter = by_user_then_time(inter)
    if k_core:
        keep = k_core_rows(inter, k_core, k_core, max_rounds=K_CORE_ROUNDS)
        inter = log.record(f"{k_core}-core (users and items with >= {k_core} interactions)",
                           inter.select(keep).compact())
    return inter


def deduplicated(inter: Interactions) -> Interactions:
    """The rows without exact repeats of (user, item, rating, timestamp); the first is kept."""
    columns = {"user": inter.users, "item": inter.items}
    for name in ("ratings", "timestamps"):
        if getattr(inter, name) is not None:
            columns[name] = getattr(inter, name)
    repeated = pd.DataFrame(columns).duplicated().to_numpy()
    return inter.select(~repeated).compact() if repeated.any() else inter


def by_user_then_time(inter: Interactions) -> Interactions:
    """Rows sorted by user (`request_order` of the tokens), then timestamp; ties keep their order."""
    user_rank = np.empty(inter.n_users, np.int64)
    user_rank[request_order(inter.user_tokens)] = np.arange(inter.n_users)
    times = inter.timestamps if inter.timestamps is not None else np.zeros(len(inter))
    order = np.lexsort((np.arange(len(inter)), times, user_rank[inter.users]))
    return inter.select(order)
