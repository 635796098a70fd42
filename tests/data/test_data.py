"""Readers, filters, the synthetic generator and `load_dataset`, on tiny files and real data."""

import re

import numpy as np
import pytest

from erase_jax.data import (
    CATEGORY_NAMES,
    DataConfig,
    DataFormatError,
    chronological_split,
    from_tokens,
    k_core,
    k_core_rows,
    load_dataset,
    rating_threshold,
    read_atomic,
    read_token_list,
    read_train_test,
    read_train_test_folder,
    read_user_lines,
    resolve_data_root,
    synthetic_interactions,
    write_atomic_inter,
)
from tests.conftest import require_dataset

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- filters


def test_k_core_is_iterative():
    # u2 has one row; removing it leaves i2 with one row, which leaves u3 with one row, which
    # leaves i3 with one row, which leaves u4 with one row. Only u0, u1 x i0, i1 survive.
    pairs = [("u0", "i0"), ("u2", "i2"), ("u0", "i1"), ("u1", "i0"), ("u3", "i2"),
             ("u3", "i3"), ("u1", "i1"), ("u4", "i3"), ("u4", "i0")]
    inter = from_tokens([u for u, _ in pairs], [i for _, i in pairs], ratings=np.arange(9.0))

    first_round_only = k_core_rows(inter, 2, 2, max_rounds=1)
    np.testing.assert_array_equal(first_round_only, [1, 0, 1, 1, 1, 1, 1, 1, 1])

    core = k_core(inter, 2, 2)
    assert (core.n_users, core.n_items, len(core)) == (2, 2, 4)
    np.testing.assert_array_equal(core.user_tokens[core.users], ["u0", "u0", "u1", "u1"])
    np.testing.assert_array_equal(core.item_tokens[core.items], ["i0", "i1", "i0", "i1"])
    np.testing.assert_array_equal(core.ratings, [0, 2, 3, 6])  # row order kept


def test_k_core_one_side_only():
    inter = from_tokens(["a", "a", "b"], ["x", "y", "x"])
    assert len(k_core(inter, 2, None)) == 2
    assert len(k_core(inter, None, 2)) == 2
    assert len(k_core(inter, 0, 0)) == 3


def test_rating_threshold():
    inter = from_tokens(["a", "a", "b"], ["x", "y", "x"], ratings=[4.0, 3.5, 2.0])
    kept = rating_threshold(inter, 3.5)
    assert kept.n_users == 1 and list(kept.ratings) == [4.0, 3.5]
    with pytest.raises(ValueError, match="needs ratings"):
        rating_threshold(from_tokens(["a"], ["x"]), 3.5)


# ---------------------------------------------------------------------------- atomic files


def test_atomic_round_trip(tmp_path):
    inter = from_tokens(
        ["196", "186", "u x", "196"],
        ["242", "302", "B00-1", "302"],
        ratings=[3, 3.5, 0.1, 5],
        timestamps=[881250949, 891717742.25, 1e17, 0.001],
        name="tiny",
    )
    path = tmp_path / "tiny" / "tiny.inter"
    path.parent.mkdir()
    write_atomic_inter(path, inter)
    lines = path.read_text().splitlines()
    assert lines[0] == INTER_HEADER.strip()
    assert lines[1] == "196\t242\t3\t881250949"
    assert lines[2] == "186\t302\t3.5\t891717742.25"

    back = read_atomic(path.parent)
    np.testing.assert_array_equal(back.user_tokens[back.users], inter.user_tokens[inter.users])
    np.testing.assert_array_equal(back.item_tokens[back.items], inter.item_tokens[inter.items])
    np.testing.assert_array_equal(back.ratings, inter.ratings)
    np.testing.assert_array_equal(back.timestamps, inter.timestamps)
    assert back.item_categories is None and back.user_features is None

    write_atomic_inter(path, inter, rows=np.array([False, True, False, True]))
    assert len(read_atomic(path.parent)) == 2


def test_atomic_inter_is_written_in_blocks(tmp_path, monkeypatch):
    from erase_jax.data import atomic

    inter = from_tokens(list("abcdefg"), list("xyzxyzx"), ratings=np.arange(7) / 2, timestamps=np.arange(7.0))
    write_atomic_inter(tmp_path / "whole.inter", inter)
    monkeypatch.setattr(atomic, "WRITE_BLOCK_ROWS", 3)
    write_atomic_inter(tmp_path / "blocks.inter", inter)
    assert (tmp_path / "blocks.inter").read_text() == (tmp_path / "whole.inter").read_text()
    write_atomic_inter(tmp_path / "none.inter", inter, rows=np.zeros(7, bool))
    assert (tmp_path / "none.inter").read_text() == "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def test_atomic_without_optional_columns(tmp_path):
    write(tmp_path / "d.inter", "item_id:token\tuser_id:token\tnote:token_seq\nx\ta\tgood film\ny\tb\t\n")
    inter = read_atomic(tmp_path, name="d")
    assert inter.ratings is None and inter.timestamps is None
    assert list(inter.user_tokens) == ["a", "b"] and list(inter.item_tokens) == ["x", "y"]


def test_atomic_item_categories_and_user_features(tmp_path):
    folder = tmp_path / "movies"
    folder.mkdir()
    write(folder / "movies.inter", "user_id:token\titem_id:token\n1\t10\n2\t20\n3\t10\n")
    write(folder / "movies.item",
          "item_id:token\ttitle:token_seq\tclass:token_seq\n"
          "20\tScream\tHorror Thriller\n10\tHeat\tAction\n99\tUnseen\tHorror\n")
    write(folder / "movies.user", "user_id:token\tage:float\tgender:token\n2\t30\tF\n1\t24\tM\n")
    inter = read_atomic(folder)
    assert list(inter.item_tokens) == ["10", "20"]  # item 99 is never interacted with: no id
    assert {k: list(v) for k, v in inter.item_categories.items()} == {
        "Action": [0], "Horror": [1], "Thriller": [1]}
    np.testing.assert_array_equal(inter.user_features["gender"], ["M", "F", ""])
    np.testing.assert_array_equal(inter.user_features["age"], [24, 30, np.nan])

    by_title = read_atomic(folder, category_field="title")
    assert sorted(by_title.item_categories) == ["Heat", "Scream"]
    with pytest.raises(DataFormatError, match=r"movies\.item, line 1: no genre field"):
        read_atomic(folder, category_field="genre")


def test_atomic_default_category_field_candidates(tmp_path):
    write(tmp_path / "g.inter", "user_id:token\titem_id:token\n1\t10\n")
    write(tmp_path / "g.item", "item_id:token\tgenre:token\n10\tNoir\n")
    assert list(read_atomic(tmp_path, name="g").item_categories) == ["Noir"]


MALFORMED_INTER = [
    ("", r"line 1: empty file"),
    ("\n1\t2\n", r"line 1: empty header line"),
    ("user_id\titem_id:token\n1\t2\n", r"line 1: header field 'user_id' has no type"),
    ("user_id:token\titem_id:token\trating:int\n", r"line 1: header field 'rating:int' has unknown type 'int'"),
    ("user_id:token\tuser_id:token\n", r"line 1: header field 'user_id' appears twice"),
    ("user_id:token\trating:float\n1\t2\n", r"line 1: no item_id field in the header"),
    ("user_id:token\titem_id:token\trating:token\n1\t2\t3\n", r"line 1: field rating is typed token, expected float"),
    (INTER_HEADER + "1\t2\t3\t4\n5\t6\t7\n", r"line 3: 3 columns, but the header declares 4"),
    (INTER_HEADER + "1\t2\t3\t4\t5\n5\t6\t7\t8\n", r"line 2: 5 columns, but the header declares 4"),
    (INTER_HEADER + "1\t2\t3\t4\n\n5\t6\t7\t8\t9\n", r"line 4: 5 columns, but the header declares 4"),
    (INTER_HEADER + "1\t2\t3\t4\n\n  \n5\t6\tabc\t8\n", r"line 5: rating value 'abc' is not a number"),
    (INTER_HEADER + "1\t2\t3\t4\n5\t6\t7\t\n", r"line 3: timestamp value '' is not a number"),
    (INTER_HEADER + "1\t2\t3\t4\n\t6\t7\t8\n", r"line 3: empty user_id"),
    (INTER_HEADER + "1\t\t3\t4\n", r"line 2: empty item_id"),
]


@pytest.mark.parametrize("text, problem", MALFORMED_INTER)
def test_malformed_inter_names_file_line_and_problem(tmp_path, text, problem):
    path = write(tmp_path / "bad.inter", text)
    with pytest.raises(DataFormatError, match=re.escape(str(path)) + ", " + problem):
        read_atomic(tmp_path, name="bad")


def test_malformed_side_files(tmp_path):
    write(tmp_path / "d.inter", "user_id:token\titem_id:token\n1\t10\n")
    write(tmp_path / "d.user", "user_id:token\tage:float\n1\t20\n1\t21\n")
    with pytest.raises(DataFormatError, match=r"d\.user, line 3: user '1' is listed twice"):
        read_atomic(tmp_path, name="d")
    write(tmp_path / "d.user", "user_id:token\tscores:float_seq\n1\t1.5 x\n")
    with pytest.raises(DataFormatError, match=r"d\.user, line 2: scores value '1.5 x' is not a list of numbers"):
        read_atomic(tmp_path, name="d")
    write(tmp_path / "d.user", "user_id:token\tscores:float_seq\n1\t1.5 2\n")
    assert read_atomic(tmp_path, name="d").user_features["scores"][0] == (1.5, 2.0)


def test_read_token_list(tmp_path):
    path = write(tmp_path / "sensitive_asins_Horror.txt", "B001\n\n  B002 \nB003")
    assert read_token_list(path) == ["B001", "B002", "B003"]


# ---------------------------------------------------------------------------- user lines


def test_read_user_lines(tmp_path):
    path = write(tmp_path / "train.txt", "u1 a b \n\nu2\nu3\tc  a\n")
    users, items = read_user_lines(path)
    assert list(users) == ["u1", "u1", "u3", "u3"] and list(items) == ["a", "b", "c", "a"]
    write(path, "u1 a\nu2 b\nu1 c\n")
    with pytest.raises(DataFormatError, match=r"train\.txt, line 3: user 'u1' already has a line \(line 1\)"):
        read_user_lines(path)


def test_train_test_folder_first_seen_ids(tmp_path):
    write(tmp_path / "train.txt", "bob x y z\nann y\neve\n")
    write(tmp_path / "test.txt", "ann w\nbob x\n")
    inter, is_test = read_train_test(tmp_path)
    assert list(inter.user_tokens) == ["bob", "ann", "eve"]  # eve has a line but no items
    assert list(inter.item_tokens) == ["x", "y", "z", "w"]
    np.testing.assert_array_equal(is_test, [0, 0, 0, 0, 1, 1])

    _, split = read_train_test_folder(tmp_path, valid_ratio=0.0, seed=0)
    np.testing.assert_array_equal(split.train, [0, 1, 2, 3])  # bob's rows, then ann's
    np.testing.assert_array_equal(split.test, [5, 4])
    assert len(split.valid) == 0


def test_train_test_folder_integer_ids(tmp_path):
    write(tmp_path / "train.txt", "1 3 0 2\n0 1 4\n")
    write(tmp_path / "test.txt", "1 4\n")
    inter, _ = read_train_test(tmp_path)
    np.testing.assert_array_equal(inter.users, [1, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(inter.items, [3, 0, 2, 1, 4, 4])
    write(tmp_path / "test.txt", "1 07\n")  # a leading zero: not an integer id
    inter, _ = read_train_test(tmp_path)
    assert list(inter.item_tokens) == ["3", "0", "2", "1", "4", "07"]


# ---------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic():
    a, b = synthetic_interactions(seed=1), synthetic_interactions(seed=1)
    other = synthetic_interactions(seed=2)
    for field in ("users", "items", "timestamps", "ratings"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for name in a.item_categories:
        np.testing.assert_array_equal(a.item_categories[name], b.item_categories[name])
    assert len(a) != len(other) or not np.array_equal(a.items, other.items)


def test_synthetic_statistics():
    inter = synthetic_interactions()
    assert (inter.n_users, inter.n_items) == (2000, 1000)
    per_user = np.bincount(inter.users)
    assert per_user.min() >= 5 and 0.8 * 40 < per_user.mean() < 1.2 * 40
    assert len(np.unique(inter.users.astype(np.int64) * inter.n_items + inter.items)) == len(inter)
    assert list(inter.item_categories) == list(CATEGORY_NAMES[:8]) and "Horror" in inter.item_categories
    categories_per_item = sum(np.bincount(ids, minlength=inter.n_items) for ids in inter.item_categories.values())
    assert categories_per_item.min() == 1 and categories_per_item.max() == 3
    assert set(np.unique(inter.ratings)) <= {1, 2, 3, 4, 5}
    order_key = inter.users * 1e12 + inter.timestamps
    assert np.all(np.diff(order_key) > 0), "rows by user, timestamps increasing per user"
    popularity = np.sort(np.bincount(inter.items, minlength=inter.n_items))[::-1]
    assert popularity[:100].sum() > 0.25 * len(inter), "popularity is skewed"


def test_synthetic_category_taste_carries_from_train_to_test():
    """A user's Horror share early (train) predicts it late (test): the structure the
    unlearning demo relies on."""
    inter = synthetic_interactions()
    split = chronological_split(inter)
    is_horror = np.zeros(inter.n_items, bool)
    is_horror[inter.category_items("Horror")] = True

    def horror_share(rows):
        n = np.bincount(inter.users[rows], minlength=inter.n_users)
        horror = np.bincount(inter.users[rows], weights=is_horror[inter.items[rows]], minlength=inter.n_users)
        return horror / np.maximum(n, 1), n > 0

    train_share, _ = horror_share(split.train)
    test_share, has_test = horror_share(split.test)
    assert np.corrcoef(train_share[has_test], test_share[has_test])[0, 1] > 0.5


# ---------------------------------------------------------------------------- load_dataset


def test_load_synthetic_resolves_every_auto_value():
    loaded = load_dataset(DataConfig(synthetic={"n_users": 300, "n_items": 200}), seed=4)
    assert loaded.source == "synthetic" and loaded.interactions.n_users == 300
    resolved = loaded.resolved
    assert resolved["split"] == "chronological" and resolved["split_ratios"] == [0.8, 0.1, 0.1]
    assert resolved["min_user_interactions"] == 0 and resolved["synthetic"]["n_items"] == 200
    assert resolved["synthetic"]["avg_interactions"] == 40 and "seed" not in resolved["synthetic"]
    same = load_dataset(DataConfig(synthetic={"n_users": 300, "n_items": 200}), seed=4)
    np.testing.assert_array_equal(loaded.split.test, same.split.test)
    with pytest.raises(ValueError, match="unknown data.synthetic keys \\['users'\\]"):
        load_dataset(DataConfig(synthetic={"users": 3}), seed=0)


def test_data_config_validation():
    with pytest.raises(ValueError, match="split must be one of"):
        DataConfig(split="temporal")
    with pytest.raises(ValueError, match="run's seed"):
        DataConfig(synthetic={"seed": 1})
    assert DataConfig(split_ratios=[0.7, 0.2, 0.1]).split_ratios == (0.7, 0.2, 0.1)


def small_atomic_folder(root):
    """Users u0..u5 with 6 rows each over items i0..i5, plus a rare user and a rare item."""
    folder = root / "small"
    folder.mkdir()
    rows = [f"u{u}\ti{(u + k) % 6}\t{1 + (u + k) % 5}\t{100 * u + k}" for u in range(6) for k in range(6)]
    rows += ["rare\ti0\t5\t7", "u0\ti_rare\t5\t8"]
    write(folder / "small.inter", INTER_HEADER + "\n".join(rows) + "\n")
    return folder


def test_load_atomic_folder_by_path(tmp_path):
    folder = small_atomic_folder(tmp_path)
    loaded = load_dataset(DataConfig(dataset=str(folder), data_root=str(tmp_path / "elsewhere")), seed=0)
    inter = loaded.interactions
    assert (inter.n_users, inter.n_items, len(inter)) == (6, 6, 36)  # 5-core removed the rare ones
    assert [len(loaded.split.train), len(loaded.split.valid), len(loaded.split.test)] == [24, 6, 6]
    assert loaded.resolved["min_item_interactions"] == 5 and loaded.source == str(folder)

    by_name = load_dataset(DataConfig(dataset="small", data_root=str(tmp_path), split="random",
                                      min_user_interactions=0, min_item_interactions=0,
                                      rating_threshold=3), seed=0)
    assert set(by_name.interactions.ratings) == {3, 4, 5}
    with pytest.raises(ValueError, match="split 'given' needs"):
        load_dataset(DataConfig(dataset="small", data_root=str(tmp_path), split="given"), seed=0)


def test_load_given_folder(tmp_path):
    folder = tmp_path / "pre"
    folder.mkdir()
    write(folder / "train.txt", "0 0 1 2 3 4 5 6 7 8 9\n1 1 2\n")
    write(folder / "test.txt", "0 5\n")
    loaded = load_dataset(DataConfig(dataset="pre", data_root=str(tmp_path), valid_ratio=0.1), seed=0)
    assert loaded.resolved["split"] == "given" and loaded.resolved["min_user_interactions"] == 0
    assert [len(loaded.split.train), len(loaded.split.valid), len(loaded.split.test)] == [10, 2, 1]
    with pytest.raises(ValueError, match="needs timestamps"):
        load_dataset(DataConfig(dataset="pre", data_root=str(tmp_path), split="chronological"), seed=0)
    filtered = load_dataset(DataConfig(dataset="pre", data_root=str(tmp_path), min_user_interactions=3), seed=0)
    assert filtered.interactions.n_users == 1 and len(filtered.split.test) == 1


def test_load_missing_data_says_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"under the data root {re.escape(str(tmp_path))}"):
        load_dataset(DataConfig(dataset="nowhere", data_root=str(tmp_path)), seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"looked for empty\.inter .* or train\.txt \+ test\.txt"):
        load_dataset(DataConfig(dataset="empty", data_root=str(tmp_path)), seed=0)


def test_resolve_data_root(monkeypatch, tmp_path):
    assert resolve_data_root(str(tmp_path)) == tmp_path
    monkeypatch.setenv("ERASE_JAX_DATA", "/some/where")
    assert str(resolve_data_root(None)) == "/some/where"
    monkeypatch.delenv("ERASE_JAX_DATA")
    assert resolve_data_root(None).parts[-2:] == ("shared", "data")


# ---------------------------------------------------------------------------- real data


def test_ml_100k_reads_completely(data_root):
    inter = read_atomic(require_dataset(data_root, "ml-100k"))
    assert (inter.n_users, inter.n_items, len(inter)) == (943, 1682, 100_000)
    assert len(inter.item_categories) == 19 and len(inter.category_items("Horror")) == 92
    assert inter.timestamps[0] == 881250949 and inter.user_features["occupation"].shape == (943,)


def test_ml_100k_after_original_5_core_and_chronological_split(data_root):
    require_dataset(data_root, "ml-100k")
    loaded = load_dataset(DataConfig(dataset="ml-100k", data_root=str(data_root)), seed=2)
    inter, split = loaded.interactions, loaded.split
    assert (inter.n_users, inter.n_items, len(inter)) == (943, 1349, 99_287)
    assert (len(split.train), len(split.valid), len(split.test)) == (80_225, 9_531, 9_531)
    assert loaded.resolved["category_field"] == "class"


def test_ml_1m_receraser_keeps_paper_ids(data_root):
    folder = require_dataset(data_root, "ml-1m-receraser")
    loaded = load_dataset(DataConfig(dataset="ml-1m-receraser", data_root=str(data_root)), seed=2)
    inter, split = loaded.interactions, loaded.split
    assert (inter.n_users, inter.n_items) == (6040, 3706)
    token_counts = {}
    for part in ("train", "test"):
        with open(folder / f"{part}.txt") as lines:
            token_counts[part] = sum(len(line.split()) - 1 for line in lines)
    assert len(split.train) + len(split.valid) == token_counts["train"]
    assert len(split.test) == token_counts["test"]
    with open(folder / "train.txt") as lines:
        user, first_item = map(int, lines.readline().split()[:2])
    first_rows = split.train[inter.users[split.train] == user]
    assert first_item in inter.items[np.concatenate([first_rows, split.valid])]
    assert loaded.resolved["split"] == "given"
