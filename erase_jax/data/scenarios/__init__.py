"""Forget sets: the unlearning requests of the three ERASE scenarios, in processing order.

One module per concern: `forget_set` (the `ForgetSet` of one request per user, its processing
order and quarter checkpoints), `selection` (whole users by a seeded shuffle and a stopping
rule), and one module per scenario (spec section 3): `sensitive` (3.2.2), `spam` (3.3, adapted
from fake sessions to fake CF users; the SBR fake sessions themselves are
`erase_jax.data.fraud_sessions`, which shares `fakes`) and `random_forget` (3.1; the original
has no generator for the nine benchmark data sets, so the rule there is a documented design
choice). This package re-exports their public names.
"""

from erase_jax.data.scenarios.fakes import (
    FAKE_USER_PREFIX,
    POPULARITY_SHARE,
    append_fake_users,
    fake_ratings,
    popular_and_unpopular_items,
)
from erase_jax.data.scenarios.forget_set import (
    SCENARIOS,
    ForgetSet,
    forget_set_from_pairs,
    parse_integers,
    quarter_checkpoints,
    request_order,
)
from erase_jax.data.scenarios.random_forget import random_forget_set
from erase_jax.data.scenarios.selection import (
    PRE_SHUFFLE_ORDERS,
    STOPPING_RULES,
    choose_whole_users,
    python_shuffle,
    target_rows,
)
from erase_jax.data.scenarios.sensitive import sensitive_forget_set
from erase_jax.data.scenarios.spam import spam_users

__all__ = [
    "FAKE_USER_PREFIX",
    "POPULARITY_SHARE",
    "PRE_SHUFFLE_ORDERS",
    "SCENARIOS",
    "STOPPING_RULES",
    "ForgetSet",
    "append_fake_users",
    "choose_whole_users",
    "fake_ratings",
    "forget_set_from_pairs",
    "parse_integers",
    "popular_and_unpopular_items",
    "python_shuffle",
    "quarter_checkpoints",
    "random_forget_set",
    "request_order",
    "sensitive_forget_set",
    "spam_users",
    "target_rows",
]
