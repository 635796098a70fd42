"""Full-ranking evaluation of session-based models over prefix rows.

Every item is ranked for every prefix (no history masking: repeat consumption is allowed, as
in the original), on device in blocks per length bucket, keeping only `lax.top_k` ids.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref

import jax
import jax.numpy as jnp
import numpy as np

from erase_jax.batching.sequences import bucket_of, bucket_widths
from erase_jax.data.sequences import SequenceRows
from erase_jax.evaluators.metrics import METRICS, per_row_metrics, ranking_metrics


@dataclasses.dataclass(frozen=True)
class _BucketBlocks:
    width: int
    items: jax.Array  # int32 [n_blocks, block, width]
    lengths: jax.Array  # int32 [n_blocks, block]
    rows: np.ndarray  # the eval rows in this bucket, in block order


_PREPARED: dict[tuple[int, int], tuple] = {}


def _blocks(rows: SequenceRows, block_size: int) -> list[_BucketBlocks]:
    """Eval rows grouped by bucket, each bucket padded to whole blocks; built once per set."""
    key = (id(rows), block_size)
    cached = _PREPARED.get(key)
    if cached is not None and cached[0]() is rows:
        return cached[1]
    buckets = bucket_of(rows.lengths, rows.max_length)
    out = []
    for index, width in enumerate(bucket_widths(rows.max_length)):
        members = np.flatnonzero(buckets == index)
        if not len(members):
            continue
        block = min(block_size, 1 << max(len(members) - 1, 0).bit_length())
        n_blocks = -(-len(members) // block)
        items = np.full((n_blocks * block, width), rows.n_items, np.int32)
        lengths = np.ones(n_blocks * block, np.int32)
        items[: len(members)] = rows.prefixes[members, :width]
        lengths[: len(members)] = rows.lengths[members]
        out.append(_BucketBlocks(width, jnp.asarray(items.reshape(n_blocks, block, width)),
                                 jnp.asarray(lengths.reshape(n_blocks, block)), members))
    _PREPARED[key] = (weakref.ref(rows), out)
    weakref.finalize(rows, _PREPARED.pop, key, None)
    return out


@functools.partial(jax.jit, static_argnames=("model", "k"))
def _ranked_blocks(model, k, params, context, items, lengths):
    def one_block(block):
        block_items, block_lengths = block
        scores = model.scores(params, context, {"items": block_items, "lengths": block_lengths})
        return jax.lax.top_k(scores, k)[1].astype(jnp.int32)

    return jax.lax.map(one_block, (items, lengths))


def top_k_sequences(model, params, context, rows: SequenceRows, k: int, block_size: int = 1024) -> np.ndarray:
    """The k best-scored items for every row's prefix, best first: int32 [len(rows), k]."""
    top = np.zeros((len(rows), k), np.int32)
    for bucket in _blocks(rows, block_size):
        ranked = np.asarray(_ranked_blocks(model, k, params, context, bucket.items, bucket.lengths))
        top[bucket.rows] = ranked.reshape(-1, k)[: len(bucket.rows)]
    return top


def evaluate_sbr(model, params, context, rows: SequenceRows, ks=(10, 20), metrics=METRICS,
                 block_size: int = 1024, per_row: bool = False):
    """Full-ranking metrics over prefix rows, one positive (the next item) per row (spec 5.1)."""
    if len(rows) == 0:
        raise ValueError("the evaluation set has no rows")
    k_max = max(ks)
    if k_max > rows.n_items:
        raise ValueError(f"top-{k_max} asked for but there are only {rows.n_items} items")
    hits = top_k_sequences(model, params, context, rows, k_max, block_size) == rows.targets[:, None]
    n_positives = np.ones(len(rows), np.int64)
    summary = ranking_metrics(hits, n_positives, ks, metrics)
    if per_row:
        return summary, per_row_metrics(hits, n_positives, ks)
    return summary

