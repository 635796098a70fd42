"""The row-level next-basket split (next-basket spec 1.3) on hand-made users."""

import numpy as np

from erase_jax.data.basket_split import basket_positions, basket_split
from erase_jax.data.interactions import Interactions


def table(baskets_per_user: list[list[list[int]]]) -> Interactions:
    users, items, sessions, times = [], [], [], []
    basket = 0
    for user, baskets in enumerate(baskets_per_user):
        for position, b in reversed(list(enumerate(baskets))):  # rows out of order on purpose
            users += [user] * len(b)
            items += b
            sessions += [basket] * len(b)
            times += [float(position)] * len(b)
            basket += 1
    n_items = max(items) + 1
    return Interactions(np.array(users, np.int32), np.array(items, np.int32), np.arange(len(baskets_per_user)).astype(str),
                        np.arange(n_items).astype(str), timestamps=np.array(times), sessions=np.array(sessions, np.int64))


def test_positions_follow_time_and_phases_take_the_last_three_baskets():
    inter = table([[[0, 1], [2], [3, 4], [5], [6]], [[0], [1], [2]]])
    position, per_user = basket_positions(inter)
    assert list(per_user) == [5, 3]
    for row in range(len(inter)):  # user 0's basket k holds items written in order 0..6 by time
        if inter.users[row] == 0:
            assert position[row] == {0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 5: 3, 6: 4}[int(inter.items[row])]
    split = basket_split(inter, min_baskets=4)
    items_of = lambda rows: sorted(inter.items[rows].tolist())
    assert items_of(split.train) == [0, 1, 2, 3, 4]  # baskets 0..n-3 of user 0
    assert items_of(split.valid) == [5] and items_of(split.test) == [6]
    assert not np.isin(np.flatnonzero(inter.users == 1), np.r_[split.train, split.valid, split.test]).any()
