"""Sequence data: prefix augmentation, the per-sequence split, sessions, Diginetica, batches."""

import jax
import numpy as np
import pytest

from erase_jax.batching.sequences import SequenceBatcher, bucket_of, bucket_widths
from erase_jax.data.atomic import DataFormatError
from erase_jax.data.interactions import from_tokens
from erase_jax.data.loading import DataConfig
from erase_jax.data.sequences import (
    SequenceConfig,
    augment,
    build_sequences,
    read_diginetica,
    sessions_by_gap,
    split_rows,
)
from erase_jax.tasks.sbr import load_sequence_data
from tests.conftest import require_dataset


def _interactions(rows):
    """rows: (user, item, time) tokens; item ids are assigned in first-seen order."""
    users, items, times = zip(*rows)
    return from_tokens(np.asarray(users), np.asarray(items), timestamps=np.asarray(times, float), name="hand")


# user u: a b c d (given out of time order), user v: x y z, user w: one item only
HAND = [("u", "c", 30), ("u", "a", 10), ("v", "x", 5), ("u", "b", 20), ("v", "y", 6),
        ("w", "q", 1), ("u", "d", 40), ("v", "z", 7)]


def _names(inter, ids):
    return [str(inter.item_tokens[i]) for i in ids]


def test_prefix_rows_follow_time_order_and_skip_first_items():
    inter = _interactions(HAND)
    rows = augment(inter, max_length=50)
    got = [(str(inter.user_tokens[s]), _names(inter, p), str(inter.item_tokens[t]))
           for s, p, t in zip(rows.sequences, rows.prefix_lists(), rows.targets)]
    assert got == [
        ("u", ["a"], "b"), ("u", ["a", "b"], "c"), ("u", ["a", "b", "c"], "d"),
        ("v", ["x"], "y"), ("v", ["x", "y"], "z"),
    ]
    # every target row points back at its interaction
    assert [str(inter.item_tokens[inter.items[r]]) for r in rows.target_rows] == ["b", "c", "d", "y", "z"]
    # padding past the length is the id one past the last item
    assert np.all(rows.prefixes[0, 1:] == inter.n_items)


def test_prefixes_keep_their_last_max_length_items():
    inter = _interactions(HAND)
    rows = augment(inter, max_length=2)
    assert [_names(inter, p) for p in rows.prefix_lists()] == [["a"], ["a", "b"], ["b", "c"], ["x"], ["x", "y"]]
    assert rows.lengths.tolist() == [1, 2, 2, 1, 2]


def test_equal_timestamps_keep_file_order():
    inter = _interactions([("u", "a", 1), ("u", "c", 1), ("u", "b", 1)])
    rows = augment(inter)
    assert [_names(inter, p) for p in rows.prefix_lists()] == [["a"], ["a", "c"]]


def test_split_uses_the_per_user_ratio_rule_on_rows():
    # 4 interactions -> 3 rows -> 1/1/1; 3 interactions -> 2 rows -> 1/0/1 (spec 1.3)
    inter = _interactions(HAND)
    split = split_rows(augment(inter))
    name = lambda rows: [(str(inter.user_tokens[s]), str(inter.item_tokens[t])) for s, t in zip(rows.sequences, rows.targets)]
    assert name(split.train) == [("u", "b"), ("v", "y")]
    assert name(split.valid) == [("u", "c")]
    assert name(split.test) == [("u", "d"), ("v", "z")]
    # test prefixes contain every earlier item
    assert _names(inter, split.test.prefix_lists()[0]) == ["a", "b", "c"]


def test_split_of_a_long_sequence():
    inter = _interactions([("u", f"i{k}", k) for k in range(26)])  # 25 rows -> 21/2/2
    split = split_rows(augment(inter))
    assert (len(split.train), len(split.valid), len(split.test)) == (21, 2, 2)
    assert split.test.lengths.tolist() == [24, 25]


def test_sessions_by_gap_and_grouping_by_session():
    users = np.array([0, 0, 0, 0, 1, 1])
    times = np.array([0.0, 100.0, 5000.0, 5100.0, 0.0, 3600.0])
    # a gap exceeding 3600 s starts a session; exactly 3600 does not
    assert sessions_by_gap(users, times, 3600.0).tolist() == [0, 0, 1, 1, 2, 2]
    inter = _interactions([("u", "a", 0), ("u", "b", 100), ("u", "c", 5000), ("u", "d", 5100)])
    split = build_sequences(inter, SequenceConfig(group_by="session", session_gap=3600.0), (1.0, 0.0, 0.0))
    assert [_names(inter, p) for p in split.train.prefix_lists()] == [["a"], ["c"]]
    with pytest.raises(ValueError, match="session_gap"):
        build_sequences(inter, SequenceConfig(group_by="session"))


def test_diginetica_reader(tmp_path):
    path = tmp_path / "train-item-views.csv"
    path.write_text(
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n"
        "1;NA;31331;1031018;2016-05-09\n"
        "1;NA;32118;243569;2016-05-09\n"
        "2;NA;9654;75848;2016-05-09\n"
        "2;5;33043;1;2016-05-10\n"
    )
    inter = read_diginetica(tmp_path)
    assert inter.n_users == 2 and inter.n_items == 5
    rows = augment(inter)
    # within session 1 the order is by timeframe: 32118, 81766, 31331
    assert [[str(inter.item_tokens[i]) for i in p] for p in rows.prefix_lists()] == [["32118"], ["32118", "81766"], ["9654"]]
    assert [str(inter.item_tokens[t]) for t in rows.targets] == ["81766", "31331", "33043"]


@pytest.mark.parametrize("body, line, problem", [
    ("1;NA;5;10;2016-05-09\n1;NA;6;x;2016-05-09\n", 3, "timeframe 'x' is not a number"),
    ("1;NA;5;10;2016-05-09\n1;NA;6;10\n", 3, "expected 5 fields"),
    ("1;NA;;10;2016-05-09\n", 2, "empty session_id or item_id"),
    ("1;NA;5;10;09/05/2016\n", 2, "eventdate '09/05/2016' is not YYYY-MM-DD"),
])
def test_diginetica_reader_names_file_and_line(tmp_path, body, line, problem):
    path = tmp_path / "clicks.csv"
    path.write_text("session_id;user_id;item_id;timeframe;eventdate\n" + body)
    with pytest.raises(DataFormatError, match=f"clicks.csv, line {line}: {problem}"):
        read_diginetica(path)


def test_diginetica_reader_checks_the_header(tmp_path):
    path = tmp_path / "clicks.csv"
    path.write_text("session;item\n1;2\n")
    with pytest.raises(DataFormatError, match="clicks.csv, line 1: expected the header"):
        read_diginetica(path)


def test_batches_cover_every_row_once_each_from_one_bucket():
    rng = np.random.default_rng(0)
    n_items, max_length = 30, 50
    lengths = np.r_[rng.integers(1, 50, 90), np.full(10, 50)]
    rows = [(f"s{k}", f"i{rng.integers(n_items)}", t) for k, n in enumerate(lengths) for t in range(n + 1)]
    train = augment(_interactions(rows), max_length=max_length)
    batcher = SequenceBatcher.build(train, batch_size=16)
    order = batcher.shuffled_order(3, 0)
    batches = jax.jit(lambda b, o: b.epoch(jax.random.PRNGKey(0), o))(batcher, order)
    assert batches["items"].shape == (batcher.n_batches, 16, max_length)
    weight = np.asarray(batches["weight"]).reshape(-1)
    assert weight.sum() == len(train)
    real = order[weight > 0]
    assert sorted(real.tolist()) == list(range(len(train)))
    widths = bucket_widths(max_length)
    for items, lengths_, bucket, w in zip(*(np.asarray(batches[k]) for k in ("items", "lengths", "bucket", "weight"))):
        assert np.all(bucket_of(lengths_[w > 0], max_length) == bucket)
        assert lengths_.max() <= widths[bucket]
    assert not np.array_equal(order, batcher.shuffled_order(3, 1))


def test_ml100k_user_sequences(data_root):
    require_dataset(data_root, "ml-100k")
    config = DataConfig(dataset="ml-100k", data_root=str(data_root), min_user_interactions=0, min_item_interactions=0)
    loaded, task = load_sequence_data(config, SequenceConfig(), seed=2)
    n_rows = len(task.train) + len(task.valid) + len(task.test)
    assert n_rows == 100_000 - 943  # one row per interaction but each user's first
    assert (len(task.train), len(task.valid), len(task.test)) == (80065, 9496, 9496)
    assert task.train.lengths.max() == 50 and task.test.lengths.min() >= 2
    assert len(np.unique(task.test.sequences)) == 943


def test_session_ids_from_an_atomic_file_group_the_sequences(tmp_path):
    """A `session_id:token` column is read as dense session ids, kept by row selection and by
    the writer, and used when sequences are grouped by session (no gap needed)."""
    from erase_jax.data.atomic import read_atomic, write_atomic_inter

    folder = tmp_path / "clicks"
    folder.mkdir()
    lines = ["user_id:token\tsession_id:token\titem_id:token\ttimestamp:float",
             "u\ts1\ta\t1", "u\ts1\tb\t2", "u\ts1\tc\t3", "u\ts9\td\t100", "u\ts9\te\t101",
             "v\ts5\ta\t4", "v\ts5\tc\t5"]
    (folder / "clicks.inter").write_text("\n".join(lines) + "\n")
    inter = read_atomic(folder)
    assert inter.sessions.tolist() == [0, 0, 0, 1, 1, 2, 2]
    by_session = build_sequences(inter, SequenceConfig(group_by="session"), (1.0, 0.0, 0.0))
    item = {t: i for i, t in enumerate(inter.item_tokens)}
    assert by_session.train.prefix_lists() == [[item["a"]], [item["a"], item["b"]], [item["d"]], [item["a"]]]
    by_user = build_sequences(inter, SequenceConfig(group_by="user"), (1.0, 0.0, 0.0))
    assert len(by_user.train) == 5  # u: a b c d e -> 4 rows, v: 1 row
    assert inter.select(np.array([3, 4])).sessions.tolist() == [1, 1]

    out = tmp_path / "copy"
    out.mkdir()
    write_atomic_inter(out / "copy.inter", inter)
    again = read_atomic(out)
    assert again.sessions.tolist() == inter.sessions.tolist()


def test_fraud_sessions_follow_the_data_session_ids():
    """With a session column, fraud statistics and counts come from the data's sessions and
    every fake is appended as one new session."""
    from erase_jax.data.loading import inject_spam

    rng = np.random.default_rng(0)
    rows, sessions = [], []
    for user in range(40):
        start = 0.0
        for session in range(3):
            for click in range(5):
                rows.append((f"u{user}", f"i{rng.integers(0, 60)}", start + click))
                sessions.append(f"{user}-{session}")
            start += 10_000
    users, items, times = zip(*rows)
    inter = from_tokens(np.asarray(users), np.asarray(items), timestamps=np.asarray(times, float),
                        session_tokens=np.asarray(sessions), name="sessions")
    config = DataConfig(dataset="sessions", spam_ratio=0.1, spam_attack="fraud_sessions")
    poisoned, fraud = inject_spam(inter, config, seed=3)
    n_sessions = 120
    assert len(fraud.users) == int(np.ceil(0.1 * n_sessions / 0.9))
    fake_rows = np.isin(poisoned.users, fraud.users)
    assert len(np.unique(poisoned.sessions[fake_rows])) == len(fraud.users)
    assert poisoned.sessions[fake_rows].min() == n_sessions
