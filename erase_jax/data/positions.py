"""All-positions rows for causal sequence models: one row per chunk of a sequence (`sequence.objective`).

The prefix rows (`erase_jax.data.sequences.augment`) give the target at rank k of a sequence
x_0 x_1 ... the context x_max(0, k-L) .. x_k-1 (L = `max_length`), and a model runs once per
row. A causal model (its output at position t depends on positions <= t only: GRU4Rec,
SASRec) computes the output of every prefix of a sequence in one pass; training on all of
them at once is the SASRec paper's objective (Kang and McAuley, ICDM 2018, eq. 7, summed over
every time step), while RecBole and the original benchmark train on prefix rows.

Chunks. The targets of ranks jL+1 .. (j+1)L of a sequence form its chunk j, whose row holds
x_jL .. x_jL+n-1 (n = the chunk's highest rank - jL) and, at position t, the target x_jL+t+1
with weight 1. So the target at rank k, j = (k - 1) // L, is predicted from x_jL .. x_k-1:

* k <= L (every target of a sequence within the length cap): exactly its prefix row's context;
* k > L: the k - jL (1 to L) items of its chunk, where its prefix row holds the last L items
  (a sliding window). `chunk_contexts` cuts prefix rows to these contexts, so prefix rows and
  all-positions rows of the same objective hold the same (context, target) pairs; the loss of
  an all-positions batch (the weighted mean over its pairs, `SequenceModel.loss`) equals the
  mean of the prefix-row losses of `chunk_contexts` of the same rows.

Any subset of prefix rows converts (positions whose target is not in the subset get weight 0),
so the forget, clean and retain rows of an unlearning request keep the objective's contexts.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from erase_jax.data.sequences import SequenceRows


@dataclasses.dataclass(frozen=True)
class PositionRows:
    """One row per (sequence, chunk): items [m, L] left-aligned, padded with `n_items`;
    lengths [m] in [1, L]; targets [m, L], the next item at every position (0 where unused);
    weights float32 [m, L], the number of prefix rows with that (context, target) (0 or 1,
    more only if the prefix rows repeat)."""

    n_items: int
    items: np.ndarray
    lengths: np.ndarray
    targets: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def max_length(self) -> int:
        return self.items.shape[1]

    @property
    def n_pairs(self) -> float:
        return float(self.weights.sum())


def chunk_offsets(rows: SequenceRows) -> tuple[np.ndarray, np.ndarray]:
    """(chunk index j, position t of the target in its chunk row) per prefix row."""
    if len(rows) and not np.array_equal(rows.lengths, np.minimum(rows.ranks, rows.max_length)):
        raise ValueError("prefix rows must hold the last min(rank, max_length) items before their target")
    chunk = (rows.ranks.astype(np.int64) - 1) // rows.max_length
    return chunk, rows.ranks - 1 - chunk * rows.max_length


def _last_items(prefixes: np.ndarray, lengths: np.ndarray, keep: np.ndarray, pad: int) -> np.ndarray:
    """Each row's last `keep` items of its prefix (of `lengths`), left-aligned, padded with `pad`."""
    columns = np.arange(prefixes.shape[1])
    valid = columns[None, :] < keep[:, None]
    source = np.where(valid, (lengths - keep)[:, None] + columns[None, :], 0)
    return np.where(valid, np.take_along_axis(prefixes, source, axis=1), pad).astype(np.int32)


def chunk_contexts(rows: SequenceRows) -> SequenceRows:
    """The prefix rows with each context cut to its chunk's items (module docstring); rows of
    rank <= max_length are unchanged."""
    _, offset = chunk_offsets(rows)
    keep = (offset + 1).astype(np.int32)
    prefixes = _last_items(rows.prefixes, rows.lengths, keep, rows.n_items)
    return dataclasses.replace(rows, prefixes=prefixes, lengths=keep)


def position_rows(rows: SequenceRows) -> PositionRows:
    """The all-positions rows holding exactly the (context, target) pairs of `chunk_contexts(rows)`."""
    L, pad = rows.max_length, rows.n_items
    if len(rows) == 0:
        empty = np.zeros((0, L), np.int32)
        return PositionRows(pad, empty, np.zeros(0, np.int32), empty, np.zeros((0, L), np.float32))
    chunk, offset = chunk_offsets(rows)
    order = np.lexsort((offset, chunk, rows.sequences))
    sequences, chunks = rows.sequences[order], chunk[order]
    starts = np.r_[True, (sequences[1:] != sequences[:-1]) | (chunks[1:] != chunks[:-1])]
    group = np.cumsum(starts) - 1
    last = order[np.r_[starts[1:], True]]  # the row of each chunk's highest rank: the longest context
    lengths = (offset[last] + 1).astype(np.int32)
    items = _last_items(rows.prefixes[last], rows.lengths[last], lengths, pad)
    # the items a row holds are a prefix of the chunk; every target's context must be one
    context = _last_items(rows.prefixes[order], rows.lengths[order], (offset[order] + 1).astype(np.int32), pad)
    width = np.arange(L)[None, :] <= offset[order][:, None]
    if not np.array_equal(np.where(width, items[group], pad), np.where(width, context, pad)[:, :]):
        raise ValueError("prefix rows of one sequence chunk disagree on its items (rows of different sequences?)")
    targets = np.zeros((len(lengths), L), np.int32)
    weights = np.zeros((len(lengths), L), np.float32)
    targets[group, offset[order]] = rows.targets[order]
    np.add.at(weights, (group, offset[order]), 1.0)
    return PositionRows(pad, items, lengths, targets, weights)
