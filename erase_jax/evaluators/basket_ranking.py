"""Full-ranking evaluation of next-basket models, with the repeat/explore split of the hits.

Every item is ranked for every example's history (no history masking: repeat purchases are
recommendable, next-basket spec 3), on device in blocks per occurrence width
(`erase_jax.data.baskets.occurrence_widths`, one compile per width), keeping only the
`lax.top_k` ids and whether each of them is in the history. Scores are [b, n_items], so the
padding item n_items is never ranked. The positives of a row are its target basket (|P| = the
target size); `erase_jax.evaluators.metrics` gives Recall, NDCG (ideal DCG over min(k, |P|)
positions, spec 3), Hit (= PHR), MRR and Precision @k. Besides (Li et al., "A Next Basket
Recommendation Reality Check", TOIS 2023), with H the row's history items:

    recall_repeat@k  = |top-k ∩ P ∩ H| / |P|        hits among items bought before
    recall_explore@k = |top-k ∩ P \\ H| / |P|        hits among new items; the two add up to recall@k
    repeat_ratio@k   = |top-k ∩ H| / k              share of the list that repeats the history

Rows whose target basket is empty are left out of every average.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.data.baskets import BasketRows, basket_batch, bucket_index, bucket_shapes
from erase_jax.evaluators.metrics import METRICS, per_row_metrics, ranking_metrics

REPEAT_METRICS = ("recall_repeat", "recall_explore", "repeat_ratio")
NBR_METRICS = (*METRICS, *REPEAT_METRICS)
QUERY_KEYS = ("users", "items", "baskets", "lengths", "n_baskets")


@dataclasses.dataclass(frozen=True)
class _ShapeBlocks:
    width: int
    steps: int
    query: dict  # QUERY_KEYS -> [n_blocks, block, ...] device arrays
    rows: np.ndarray  # the eval rows of this shape, in block order


_PREPARED: dict[tuple[int, int], tuple] = {}
EVAL_CELLS_PER_ROW = 64 * 8  # a block holds block_size rows of up to 64 occurrences in 8 baskets, fewer wider ones


def _blocks(rows: BasketRows, block_size: int) -> list[_ShapeBlocks]:
    """Eval rows grouped by (occurrence width, basket steps) bucket (`bucket_shapes`), each group
    padded to whole blocks whose row count shrinks with width x steps (so that a block of wide
    histories fits in memory); built once per set."""
    key = (id(rows), block_size)
    cached = _PREPARED.get(key)
    if cached is not None and cached[0]() is rows:
        return cached[1]
    shapes = bucket_shapes(rows.max_length, rows.max_history_baskets)
    bucket = bucket_index(rows.lengths, rows.n_baskets, rows.max_length, rows.max_history_baskets)
    out = []
    for index, (width, steps) in enumerate(shapes):
        members = np.flatnonzero(bucket == index)
        if not len(members):
            continue
        cap = min(block_size, max(1, block_size * EVAL_CELLS_PER_ROW // (width * steps)))
        block = min(cap, 1 << max(len(members) - 1, 0).bit_length())
        n_blocks = -(-len(members) // block)
        batch = basket_batch(rows.select(members), size=n_blocks * block, width=width)
        query = {name: batch[name].reshape(n_blocks, block, *batch[name].shape[1:]) for name in QUERY_KEYS}
        out.append(_ShapeBlocks(width, steps, query, members))
    _PREPARED[key] = (weakref.ref(rows), out)
    weakref.finalize(rows, _PREPARED.pop, key, None)
    return out


@functools.partial(jax.jit, static_argnames=("model", "k", "steps"))
def _ranked_blocks(model, k, steps, params, context, query):
    """Per block: the top-k item ids [block, k] and whether each is in the row's history."""

    def one_block(block):
        if hasattr(model, "logits"):  # a basket model: its histories' step bound is the bucket's
            scores = model.logits(params, context, block, None, steps)
        else:
            scores = model.scores(params, context, block)
        top = jax.lax.top_k(scores, k)[1].astype(jnp.int32)
        width = block["items"].shape[1]
        history = jnp.where(jnp.arange(width)[None, :] < block["lengths"][:, None], block["items"], -1)
        return top, jnp.any(top[:, :, None] == history[:, None, :], axis=-1)

    return jax.lax.map(one_block, query)


def top_k_baskets(model, params, context, rows: BasketRows, k: int, block_size: int = 1024):
    """(top [len(rows), k] int32, best first; in_history [len(rows), k] bool)."""
    top = np.zeros((len(rows), k), np.int32)
    in_history = np.zeros((len(rows), k), bool)
    for group in _blocks(rows, block_size):
        ranked, repeats = _ranked_blocks(model, k, group.steps, params, context, group.query)
        top[group.rows] = np.asarray(ranked).reshape(-1, k)[: len(group.rows)]
        in_history[group.rows] = np.asarray(repeats).reshape(-1, k)[: len(group.rows)]
    return top, in_history


def repeat_metrics(hits: np.ndarray, in_history: np.ndarray, n_positives: np.ndarray, ks) -> dict[str, np.ndarray]:
    """recall_repeat@k, recall_explore@k and repeat_ratio@k per row (module docstring)."""
    repeat_hits = np.cumsum(hits & in_history, axis=1)
    explore_hits = np.cumsum(hits & ~in_history, axis=1)
    repeats = np.cumsum(in_history, axis=1)
    out = {}
    for k in ks:
        out[f"recall_repeat@{k}"] = repeat_hits[:, k - 1] / n_positives
        out[f"recall_explore@{k}"] = explore_hits[:, k - 1] / n_positives
        out[f"repeat_ratio@{k}"] = repeats[:, k - 1] / k
    return out


def evaluate_nbr(model, params, context, rows: BasketRows, ks=(10, 20), metrics=NBR_METRICS,
                 block_size: int = 1024, per_row: bool = False):
    """Full-ranking metrics of a basket model over `rows` (module docstring), keyed like "recall@10".

    With `per_row`, also a dict of float64 arrays of every metric, aligned with `rows` (NaN for
    a row whose target basket is empty), as a second result.
    """
    unknown = sorted(set(metrics) - set(NBR_METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; available: {list(NBR_METRICS)}")
    kept = np.flatnonzero(rows.target_sizes > 0)
    if len(kept) == 0:
        raise ValueError("the evaluation set has no rows with a target basket")
    k_max = max(ks)
    if k_max > rows.n_items:
        raise ValueError(f"top-{k_max} asked for but there are only {rows.n_items} items")
    ks = sorted(set(ks))
    kept_rows = rows if len(kept) == len(rows) else rows.select(kept)
    top, in_history = top_k_baskets(model, params, context, kept_rows, k_max, block_size)
    hits = np.any(top[:, :, None] == kept_rows.targets[:, None, :], axis=-1)  # target padding n_items never matches
    n_positives = kept_rows.target_sizes.astype(np.int64)
    summary = ranking_metrics(hits, n_positives, ks, [m for m in metrics if m in METRICS])
    repeat = repeat_metrics(hits, in_history, n_positives, ks)
    summary.update({f"{m}@{k}": float(repeat[f"{m}@{k}"].mean()) for m in metrics if m in REPEAT_METRICS for k in ks})
    summary = {f"{m}@{k}": summary[f"{m}@{k}"] for m in metrics for k in ks}  # in the requested order
    if not per_row:
        return summary
    kept_values = {**per_row_metrics(hits, n_positives, ks), **repeat}
    aligned = {}
    for name, values in kept_values.items():
        aligned[name] = np.full(len(rows), np.nan)
        aligned[name][kept] = values
    return summary, aligned
