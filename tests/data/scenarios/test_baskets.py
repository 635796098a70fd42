"""The next-basket scenario rules (next-basket spec 4.2) on hand-made users."""

import numpy as np
import pytest

from erase_jax.data.scenarios.baskets import random_basket_forget_set, sensitive_basket_forget_set, trained_users
from tests.data.test_basket_split import table

SENSITIVE = 9


def users():
    return table([
        [[0, 9], [1], [2, 9], [3], [4]],  # 0: five baskets, keeps five without 9: eligible
        [[9], [9], [1], [2], [3]],  # 1: keeps three baskets without 9: not eligible
        [[0], [1], [2]],  # 2: three baskets, never trained on
        [[9, 1], [2], [3], [4, 9], [5], [6]],  # 3: eligible
        [[1], [2], [3], [4]],  # 4: no sensitive item
    ])


def test_sensitive_requests_come_from_eligible_users_and_forget_all_their_sensitive_items():
    inter = users()
    assert list(trained_users(inter, 4)) == [True, True, False, True, True]
    forget = sensitive_basket_forget_set(inter, np.array([SENSITIVE]), fraction=0.5, seed=1)
    assert set(forget.users.tolist()) == {0, 3}  # "reach": T = int(0.5 * 24) = 12, more than all candidates hold
    removed = forget.removal_mask(inter)
    assert np.array_equal(removed, np.isin(inter.users, [0, 3]) & (inter.items == SENSITIVE))


def test_sensitive_budget_counts_occurrences_of_trained_users():
    inter = users()
    forget = sensitive_basket_forget_set(inter, np.array([SENSITIVE]), fraction=0.08, seed=1)  # T = int(0.08 * 24) = 1
    assert len(forget) == 1  # the first shuffled eligible user already reaches it


def test_random_requests_are_whole_trained_users():
    inter = users()
    forget = random_basket_forget_set(inter, fraction=0.2, seed=3)  # T = 5: one user
    assert len(forget) == 1 and forget.users[0] != 2
    user = forget.users[0]
    assert np.array_equal(forget.removal_mask(inter), inter.users == user)


def test_no_eligible_user_is_a_clear_error():
    with pytest.raises(ValueError, match="no user with >= 4 baskets after removing"):
        sensitive_basket_forget_set(users(), np.array([8]), fraction=0.5, seed=1)
