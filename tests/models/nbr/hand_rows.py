"""Tiny BasketRows written by hand: histories as lists of baskets, targets as lists of items."""

import numpy as np

from erase_jax.data.baskets import BasketRows


def basket_rows(histories, targets, n_items: int, max_baskets: int) -> BasketRows:
    """One example per (history, target): occurrences oldest basket first, padding as the module
    `erase_jax.data.baskets` defines it (item n_items, basket max_baskets)."""
    n = len(histories)
    width = max(1, max(sum(len(b) for b in h) for h in histories))
    k = max(1, max(len(t) for t in targets))
    items = np.full((n, width), n_items, np.int32)
    baskets = np.full((n, width), max_baskets, np.int32)
    padded_targets = np.full((n, k), n_items, np.int32)
    for r, (history, target) in enumerate(zip(histories, targets, strict=True)):
        flat = [(item, position) for position, basket in enumerate(history) for item in basket]
        if flat:
            items[r, : len(flat)], baskets[r, : len(flat)] = zip(*flat, strict=True)
        padded_targets[r, : len(target)] = target
    return BasketRows(
        users=np.arange(n, dtype=np.int32), items=items, baskets=baskets,
        lengths=np.array([sum(len(b) for b in h) for h in histories], np.int32),
        n_baskets=np.array([len(h) for h in histories], np.int32), targets=padded_targets,
        target_sizes=np.array([len(t) for t in targets], np.int32), n_items=n_items, n_users=n,
        max_history_baskets=max_baskets)
