"""All-positions rows (`erase_jax.data.positions`): the same (context, target) pairs as the prefix rows."""

import dataclasses

import numpy as np
import pytest

from erase_jax.data.interactions import from_tokens
from erase_jax.data.positions import chunk_contexts, position_rows
from erase_jax.data.sequences import augment

MAX_LENGTH = 4


def _rows(lengths=(5, 9, 12, 2), seed=0, max_length=MAX_LENGTH):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(len(lengths)), lengths)
    items = rng.integers(0, 7, len(users))
    inter = from_tokens(users.astype(str), items.astype(str), timestamps=np.arange(len(users), dtype=float))
    return augment(inter, max_length=max_length)


def _pairs(rows):
    """{(sequence, context, target): count} of prefix rows."""
    pairs = {}
    for sequence, context, target in zip(rows.sequences, rows.prefix_lists(), rows.targets):
        key = (int(sequence), tuple(context), int(target))
        pairs[key] = pairs.get(key, 0) + 1
    return pairs


def _position_pairs(rows, positions):
    """{(sequence, context, target): weight} of all-positions rows; the sequence of a row is
    recovered from the prefix rows (rows are ordered by sequence, then chunk)."""
    chunk = (rows.ranks - 1) // rows.max_length
    keys = sorted(set(zip(rows.sequences.tolist(), chunk.tolist())))
    pairs = {}
    for (sequence, _), items, targets, weights in zip(keys, positions.items, positions.targets, positions.weights):
        for t in np.flatnonzero(weights):
            key = (sequence, tuple(items[: t + 1].tolist()), int(targets[t]))
            pairs[key] = pairs.get(key, 0) + float(weights[t])
    return pairs


def test_chunk_contexts_keep_rows_within_the_cap_and_cut_longer_ones_to_their_chunk():
    rows = _rows()
    cut = chunk_contexts(rows)
    within = rows.ranks <= MAX_LENGTH
    assert np.array_equal(cut.prefixes[within], rows.prefixes[within])
    # sequence 1 (9 items): ranks 5..8 form chunk 1 and see x_4 .. x_{k-1}
    one = rows.select(np.flatnonzero(rows.sequences == 1))
    items = one.prefix_lists()[0] + one.targets.tolist()  # x_0 .. x_8
    assert one.ranks.tolist() == list(range(1, 9))
    assert chunk_contexts(one).prefix_lists() == [items[(k - 1) // MAX_LENGTH * MAX_LENGTH: k] for k in one.ranks]
    assert np.array_equal(cut.targets, rows.targets) and np.array_equal(cut.lengths, (rows.ranks - 1) % MAX_LENGTH + 1)


@pytest.mark.parametrize("subset", ["all", "random", "one_sequence"])
def test_position_rows_hold_exactly_the_chunk_contexts_pairs(subset):
    rows = _rows()
    if subset == "random":
        rows = rows.select(np.sort(np.random.default_rng(1).choice(len(rows), 11, replace=False)))
    elif subset == "one_sequence":
        rows = rows.select(np.flatnonzero(rows.sequences == 2))
    positions = position_rows(rows)
    assert _position_pairs(rows, positions) == _pairs(chunk_contexts(rows))
    assert positions.n_pairs == len(rows)
    # one row per (sequence, chunk): ceil(n_targets / L) for the full sequences 5, 9, 12, 2
    if subset == "all":
        assert len(positions) == 1 + 2 + 3 + 1


def test_within_the_cap_position_rows_are_the_prefix_rows_pairs():
    rows = _rows(lengths=(5, 3, 2), max_length=8)
    positions = position_rows(rows)
    assert len(positions) == 3 and _position_pairs(rows, positions) == _pairs(rows)
    assert positions.lengths.tolist() == [4, 2, 1]


def test_rows_of_different_sequences_under_one_id_are_refused():
    rows = _rows()
    # the rank-2 rows of sequences 0 and 1 (different first items), both called sequence 0
    pick = rows.select(np.flatnonzero(rows.ranks == 2)[:2])
    assert pick.prefixes[0, 0] != pick.prefixes[1, 0]
    clash = dataclasses.replace(pick, sequences=np.zeros(2, np.int32), ranks=np.array([1, 2], np.int32),
                                prefixes=pick.prefixes.copy(), lengths=np.array([1, 2], np.int32))
    clash.prefixes[0, 1:] = rows.n_items
    with pytest.raises(ValueError, match="disagree"):
        position_rows(clash)
