"""Next-basket examples: the per-user leave-one-out split, history and basket caps, padding, batches."""

import dataclasses

import numpy as np
import pytest

from erase_jax.data.basket_files import read_merged_json
from erase_jax.data.baskets import BasketConfig, basket_batch, build_basket_examples, width_of
from erase_jax.data.interactions import Interactions
from tests.conftest import require_dataset


def basket_data(users: dict, times: dict | None = None) -> Interactions:
    """{user: [[item, ...] per basket]} with integer items as ids (n_items = largest + 1);
    basket ids are global in listing order; times[user] overrides a user's basket times."""
    rows, n_items = [], 1 + max(i for baskets in users.values() for basket in baskets for i in basket)
    basket_id = 0
    for u, baskets in enumerate(users.values()):
        user_times = (times or {}).get(list(users)[u], range(len(baskets)))
        for basket, when in zip(baskets, user_times, strict=True):
            rows += [(u, item, basket_id, when) for item in basket]
            basket_id += 1
    u, i, s, t = (np.asarray(c) for c in zip(*rows))
    return Interactions(users=u.astype(np.int32), items=i.astype(np.int32), sessions=s.astype(np.int64),
                        timestamps=t.astype(np.float64), user_tokens=np.asarray(list(users), dtype=str),
                        item_tokens=np.arange(n_items).astype(str), name="hand")


def example(rows, user_token, inter):
    r = int(np.flatnonzero(rows.users == list(inter.user_tokens).index(user_token))[0])
    return rows.history_lists(r), rows.target_list(r)


SIX = [[0], [1, 2], [3], [4, 5], [6], [7, 8]]


def test_split_is_temporal_leave_one_out():
    inter = basket_data({"a": SIX, "b": [[9], [8], [7], [6]], "c": [[1], [2], [3]]})
    ex = build_basket_examples(inter, BasketConfig(min_baskets=4, max_history_baskets=48))
    assert ex.train.users.tolist() == ex.valid.users.tolist() == ex.test.users.tolist() == [0, 1]  # c: 3 < 4 baskets
    assert example(ex.train, "a", inter) == (SIX[:3], SIX[3])
    assert example(ex.valid, "a", inter) == (SIX[:4], SIX[4])
    assert example(ex.test, "a", inter) == (SIX[:5], SIX[5])
    assert example(ex.train, "b", inter) == ([[9]], [8])
    assert example(ex.test, "b", inter) == ([[9], [8], [7]], [6])
    assert ex.test.n_baskets.tolist() == [5, 3] and ex.test.lengths.tolist() == [7, 3]
    assert ex.train.n_users == 3 and ex.train.n_items == 10


def test_history_keeps_the_last_baskets():
    inter = basket_data({"a": SIX})
    ex = build_basket_examples(inter, BasketConfig(max_history_baskets=2))
    assert [example(rows, "a", inter) for rows in (ex.train, ex.valid, ex.test)] == [
        ([[1, 2], [3]], [4, 5]), ([[3], [4, 5]], [6]), ([[4, 5], [6]], [7, 8])]
    assert ex.test.baskets[0, :3].tolist() == [0, 0, 1] and ex.test.n_baskets.tolist() == [2]


def test_baskets_ordered_by_time_deduplicated_and_cut_in_id_order():
    # baskets listed out of time order; the second holds item 5 twice and is larger than the cap
    inter = basket_data({"a": [[3], [9, 5, 7, 5, 1], [2], [4], [6]]}, times={"a": [30, 10, 20, 40, 50]})
    ex = build_basket_examples(inter, BasketConfig(max_basket_size=2))
    assert example(ex.test, "a", inter) == ([[1, 5], [2], [3], [4]], [6])
    assert example(ex.train, "a", inter) == ([[1, 5], [2]], [3])
    full = build_basket_examples(inter, BasketConfig())
    assert example(full.train, "a", inter) == ([[1, 5, 7, 9], [2]], [3])


def test_padding_is_never_a_real_item():
    inter = basket_data({"a": SIX, "b": [[0], [0, 1], [0], [0]]})
    ex = build_basket_examples(inter, BasketConfig(max_history_baskets=3))
    for rows in (ex.train, ex.valid, ex.test):
        slots = np.arange(rows.items.shape[1])[None, :] < rows.lengths[:, None]
        assert np.all(rows.items[~slots] == inter.n_items) and np.all(rows.items[slots] < inter.n_items)
        assert np.all(rows.baskets[~slots] == 3) and np.all((rows.baskets < rows.n_baskets[:, None])[slots])
        target_slots = np.arange(rows.targets.shape[1])[None, :] < rows.target_sizes[:, None]
        assert np.all(rows.targets[~target_slots] == inter.n_items) and np.all(rows.targets[target_slots] < inter.n_items)
    assert ex.train.targets.shape[1] == ex.test.targets.shape[1] == 2  # one target width for all phases


def test_removed_rows_can_drop_a_user_below_min_baskets():
    inter = basket_data({"a": SIX, "b": [[1], [2], [3], [4]]})
    ex = build_basket_examples(inter, BasketConfig())
    assert ex.train.users.tolist() == [0, 1]
    removed = (inter.users == 1) & (inter.items == 2)  # b's second basket becomes empty, so b has 3 baskets
    after = build_basket_examples(inter.select(~removed), BasketConfig())
    assert after.train.users.tolist() == [0] and after.train.n_users == 2 and after.train.n_items == inter.n_items
    assert ex.test.rows_of_users([1]).tolist() == [1] and after.test.rows_of_users([1]).tolist() == []


def test_bad_basket_tables_are_errors():
    inter = basket_data({"a": SIX})
    with pytest.raises(ValueError, match="need basket ids"):
        build_basket_examples(dataclasses.replace(inter, sessions=None), BasketConfig())
    two_users = dataclasses.replace(inter, users=np.where(inter.items == 2, 1, 0).astype(np.int32),
                                    user_tokens=np.asarray(["a", "b"]))  # basket 1 = items 1 (a) and 2 (b)
    with pytest.raises(ValueError, match="more than one user"):
        build_basket_examples(two_users, BasketConfig())
    with pytest.raises(ValueError, match="min_baskets must be >= 4"):
        BasketConfig(min_baskets=3)


def test_basket_batch_shapes_and_padding_rows():
    inter = basket_data({"a": SIX, "b": [[9], [8], [7], [6]], "c": [[1], [2], [3], [4], [5]]})
    rows = build_basket_examples(inter, BasketConfig()).test
    batch = basket_batch(rows)
    assert {k: v.shape for k, v in batch.items()} == {
        "users": (4,), "items": (4, 7), "baskets": (4, 7), "lengths": (4,), "n_baskets": (4,), "targets": (4, 2),
        "target_sizes": (4,), "weight": (4,)}
    assert width_of(rows) == 7 and batch["weight"].tolist() == [1, 1, 1, 0]
    assert np.all(np.asarray(batch["items"][3]) == inter.n_items) and int(batch["lengths"][3]) == 0
    assert np.asarray(batch["items"][0, :7]).tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_real_tafeng_examples(data_root):
    inter = read_merged_json(require_dataset(data_root, "tafeng") / "tafeng_merged.json")
    ex = build_basket_examples(inter, BasketConfig(max_history_baskets=48))
    assert len(ex.train) == len(ex.valid) == len(ex.test) == 10_061  # users with >= 4 baskets (spec 1.2)
    assert ex.train.targets.shape[1] <= 102 and int(ex.test.n_baskets.max()) == 48
    assert np.array_equal(ex.test.n_baskets, np.minimum(ex.valid.n_baskets + 1, 48))
    assert int(ex.train.lengths.min()) >= 1 and ex.train.n_items == 11_997
