"""NBR fraud baskets (next-basket spec 4.4): counts, sizes and target placement of the fakes,
their forget set, determinism and the wiring into the NBR data path."""

import math

import numpy as np
import pytest

from erase_jax.data.basket_split import basket_positions
from erase_jax.data.fraud_baskets import basket_statistics, fraud_baskets
from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios.fakes import popular_and_unpopular_items
from erase_jax.data.synthetic import synthetic_baskets


def data() -> Interactions:
    return synthetic_baskets(n_users=150, n_items=120, avg_interactions=15, seed=3)


def test_fake_users_counts_sizes_and_targets_follow_the_rules():
    real = data()
    stats = basket_statistics(real)
    poisoned, forget = fraud_baskets(real, ratio=0.05, n_target_items=6, seed=2)
    n_fake = math.ceil(0.05 * stats["n_users"] / 0.95)
    assert poisoned.n_users == real.n_users + n_fake and len(forget) == n_fake
    fake_rows = np.flatnonzero(poisoned.users >= real.n_users)
    assert np.array_equal(fake_rows, np.arange(len(real), len(poisoned)))  # real rows untouched, fakes after
    assert np.array_equal(poisoned.items[: len(real)], real.items)
    _, per_user = basket_positions(poisoned)
    a = max(4, int(stats["mean_baskets"]))
    assert np.all((per_user[real.n_users:] >= 4) & (per_user[real.n_users:] <= max(4, int(1.5 * a))))
    popular, unpopular = popular_and_unpopular_items(real)
    targets = forget.target_items
    assert len(targets) == 6 and len(np.unique(targets)) == 6 and np.isin(targets, unpopular).all()
    for basket in np.unique(poisoned.sessions[fake_rows]):
        items = poisoned.items[poisoned.sessions == basket]
        assert len(np.unique(items)) == len(items)  # a basket is a set
        n_targets = np.isin(items, targets).sum()
        assert n_targets == (2 if len(items) >= 5 else 1)
        assert np.isin(items[~np.isin(items, targets)], popular).all()
        assert 2 <= len(items) <= max(2, int(0.8 * stats["max_size"]))


def test_each_fake_user_is_one_request_forgetting_all_its_items():
    real = data()
    poisoned, forget = fraud_baskets(real, ratio=0.05, n_target_items=6, seed=2)
    assert forget.scenario == "spam"
    mask = forget.removal_mask(poisoned)
    assert np.array_equal(mask, poisoned.users >= real.n_users)


def test_deterministic_given_the_seed():
    real = data()
    a, _ = fraud_baskets(real, 0.05, 6, seed=4)
    b, _ = fraud_baskets(real, 0.05, 6, seed=4)
    c, _ = fraud_baskets(real, 0.05, 6, seed=5)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.sessions, b.sessions)
    assert not np.array_equal(a.items[len(real):][:50], c.items[len(real):][:50])


def test_bad_settings_are_refused():
    real = data()
    with pytest.raises(ValueError, match="ratio"):
        fraud_baskets(real, ratio=1.0)
    with pytest.raises(ValueError, match="n_target_items"):
        fraud_baskets(real, ratio=0.01, n_target_items=10_000)
