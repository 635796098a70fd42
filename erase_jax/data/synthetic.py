"""A synthetic implicit-feedback data set with named item categories, for demos and tests.

Users and items live in a latent space built from category directions: an item's vector is
the mean direction of its categories plus noise, a user's vector is a sparse mix of category
tastes plus noise. Each user picks items without replacement with probability proportional
to exp(preference_strength * <user, item> + popularity_skew * log-popularity), where item
popularity follows a Zipf law. So there is a signal a factorisation model can learn (taste)
and one a popularity baseline can learn (popularity), and a user's taste for one category,
say "Horror", shows in both the data and any model fitted to it: removing that user's Horror
interactions is what the sensitive-category unlearning scenario does.

Knobs (keyword arguments; the output is deterministic given `seed`):
  preference_strength  weight of taste; higher makes personalised models beat popularity by more
  popularity_skew      Zipf exponent of item popularity; higher concentrates rows on few items
  taste_concentration  Dirichlet concentration of a user's category mix; lower = fewer liked categories
  noise                spread of user and item vectors around their categories' directions

With the defaults, on the chronological 80/10/10 split, test Recall@20 (train and valid items
masked) is about 0.19 for popularity and 0.37 for a rank-16 truncated SVD of the train matrix;
a user's Horror share in train and in test correlate at about 0.67.
"""

from __future__ import annotations

import numpy as np

from erase_jax.data.interactions import Interactions

CATEGORY_NAMES = (
    "Drama", "Comedy", "Horror", "Action", "Romance", "Thriller", "Documentary", "Sci-Fi",
    "Animation", "Children's", "Crime", "Fantasy", "Mystery", "Musical", "War", "Western",
)
MIN_INTERACTIONS_PER_USER = 5
CATEGORIES_PER_ITEM_PROBABILITIES = (0.6, 0.3, 0.1)  # 1, 2 or 3 categories
INTERACTION_COUNT_SIGMA = 0.8  # log-normal spread of per-user interaction counts
START_TIME = 1_000_000_000.0  # seconds; users start within two years after it
MIN_SECONDS_BETWEEN_INTERACTIONS = 60.0  # keeps whole-second timestamps strictly increasing
MEAN_SECONDS_BETWEEN_INTERACTIONS = 86_400.0
SAMPLING_CHUNK_ENTRIES = 1 << 22  # users x items scores held at once


def synthetic_interactions(
    n_users: int = 2000,
    n_items: int = 1000,
    n_categories: int = 8,
    avg_interactions: float = 40,
    dim: int = 16,
    seed: int = 0,
    name: str = "synthetic",
    *,
    preference_strength: float = 10.0,
    popularity_skew: float = 0.8,
    taste_concentration: float = 0.3,
    noise: float = 0.5,
) -> Interactions:
    """Generates `Interactions` with timestamps, 1-5 ratings and item categories.

    Every user has at least 5 interactions (log-normal counts with mean about
    `avg_interactions`), at most one per item; timestamps increase per user; ratings rise
    with the user-item affinity. Rows are ordered by user, then time. Categories are the
    first `n_categories` of `CATEGORY_NAMES` ("Drama", "Comedy", "Horror", ...), each item in
    1-3 of them. All `n_items` items get ids; a few unpopular ones may have no interactions.
    """
    if not 1 <= n_categories <= len(CATEGORY_NAMES):
        raise ValueError(f"n_categories must lie in [1, {len(CATEGORY_NAMES)}], got {n_categories}")
    if n_items < MIN_INTERACTIONS_PER_USER:
        raise ValueError(f"n_items must be at least {MIN_INTERACTIONS_PER_USER}, got {n_items}")
    rng = np.random.default_rng(seed)
    directions = _unit_rows(rng.normal(size=(n_categories, dim)))
    membership = _item_categories(rng, n_items, n_categories)
    spread = noise / np.sqrt(dim)
    item_vectors = _unit_rows(membership @ directions) + spread * rng.normal(size=(n_items, dim))
    tastes = rng.dirichlet(np.full(n_categories, taste_concentration), size=n_users)
    user_vectors = tastes @ directions + spread * rng.normal(size=(n_users, dim))
    log_popularity = -popularity_skew * np.log1p(rng.permutation(n_items))

    counts = _interaction_counts(rng, n_users, n_items, avg_interactions)
    users, items = _sample_items(rng, preference_strength * user_vectors, item_vectors, log_popularity, counts)
    time_order = np.lexsort((rng.random(len(users)), users))  # a random order within each user
    users, items = users[time_order], items[time_order]
    affinity = np.einsum("rd,rd->r", user_vectors[users], item_vectors[items])

    categories = {
        CATEGORY_NAMES[c]: np.flatnonzero(membership[:, c]).astype(np.int32) for c in range(n_categories)
    }
    return Interactions(
        users=users.astype(np.int32),
        items=items.astype(np.int32),
        user_tokens=np.arange(n_users).astype(str),
        item_tokens=np.arange(n_items).astype(str),
        timestamps=_timestamps(rng, users, n_users),
        ratings=_ratings(rng, affinity),
        item_categories=categories,
        name=name,
    )


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _item_categories(rng: np.random.Generator, n_items: int, n_categories: int) -> np.ndarray:
    """Boolean [n_items, n_categories]: 1-3 distinct categories per item; earlier categories
    in `CATEGORY_NAMES` are larger (share proportional to 1 / rank^0.7)."""
    n_per_item = 1 + rng.choice(3, size=n_items, p=CATEGORIES_PER_ITEM_PROBABILITIES)
    n_per_item = np.minimum(n_per_item, n_categories)
    log_share = -0.7 * np.log1p(np.arange(n_categories))
    keys = log_share + rng.gumbel(size=(n_items, n_categories))  # Gumbel top-k = sampling w/o replacement
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    return rank < n_per_item[:, None]


def _interaction_counts(rng: np.random.Generator, n_users: int, n_items: int, mean: float) -> np.ndarray:
    """Log-normal counts with mean about `mean`, clipped to [5, n_items // 2] (at least 5)."""
    mu = np.log(mean) - INTERACTION_COUNT_SIGMA**2 / 2
    counts = np.round(rng.lognormal(mu, INTERACTION_COUNT_SIGMA, size=n_users)).astype(np.int64)
    return np.clip(counts, MIN_INTERACTIONS_PER_USER, max(MIN_INTERACTIONS_PER_USER, n_items // 2))


def _sample_items(rng, scaled_user_vectors, item_vectors, log_popularity, counts):
    """Per user, `counts[u]` distinct items drawn with probability proportional to
    exp(logit) (Gumbel top-k), processed in chunks of users to bound memory."""
    n_users, n_items = len(scaled_user_vectors), len(item_vectors)
    chunk = max(1, SAMPLING_CHUNK_ENTRIES // n_items)
    users, items = [], []
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        keys = -(scaled_user_vectors[start:stop] @ item_vectors.T + log_popularity + rng.gumbel(size=(stop - start, n_items)))
        ranked = _smallest_first(keys, int(counts[start:stop].max()))
        picked = np.arange(ranked.shape[1]) < counts[start:stop, None]
        users.append(np.nonzero(picked)[0] + start)
        items.append(ranked[picked])
    return np.concatenate(users), np.concatenate(items)


def _smallest_first(keys: np.ndarray, width: int) -> np.ndarray:
    """Per row, the column indices of the `width` smallest keys in ascending key order: the
    first `width` columns of `np.argsort(keys, axis=1)`, found by a partition first (linear in
    the row length; only the `width` winners are sorted)."""
    if width >= keys.shape[1]:
        return np.argsort(keys, axis=1)
    candidates = np.argpartition(keys, width - 1, axis=1)[:, :width]
    return np.take_along_axis(candidates, np.argsort(np.take_along_axis(keys, candidates, 1), axis=1), 1)


def _timestamps(rng: np.random.Generator, users: np.ndarray, n_users: int) -> np.ndarray:
    """Whole seconds, strictly increasing within each user (rows sorted by user)."""
    gaps = MIN_SECONDS_BETWEEN_INTERACTIONS + rng.exponential(MEAN_SECONDS_BETWEEN_INTERACTIONS, len(users))
    user_start = START_TIME + rng.uniform(0, 2 * 365 * 86_400.0, size=n_users)
    return np.round(user_start[users] + _cumsum_within_groups(gaps, users))


def _ratings(rng: np.random.Generator, affinity: np.ndarray) -> np.ndarray:
    """1-5 stars around 3.5, one star per standard deviation of affinity, plus noise."""
    affinity_z = (affinity - affinity.mean()) / (affinity.std() + 1e-12)
    stars = np.round(3.5 + affinity_z + 0.7 * rng.normal(size=len(affinity)))
    return np.clip(stars, 1, 5).astype(np.float32)


def _cumsum_within_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Running sum of `values` that restarts where `groups` (sorted) changes."""
    total = np.cumsum(values)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    offsets = np.repeat(total[starts] - values[starts], np.diff(np.r_[starts, len(values)]))
    return total - offsets


def synthetic_baskets(
    n_users: int = 2000,
    n_items: int = 1000,
    n_categories: int = 8,
    avg_interactions: float = 40,
    seed: int = 0,
    name: str = "synthetic",
    *,
    avg_baskets: float = 8.0,
    avg_basket_size: float = 4.0,
    **preferences,
) -> Interactions:
    """A basket table (`erase_jax.data.baskets`) from `synthetic_interactions`: each user's
    drawn items are the user's repertoire, from which 4 + Poisson(avg_baskets - 4) baskets of
    1 + Poisson(avg_basket_size - 1) distinct items are bought, so items recur across
    baskets as groceries do. `sessions` holds the basket id, `timestamps` the basket's
    position in the user's history. Categories, tokens and ratings-free rows as generated.
    """
    pool = synthetic_interactions(n_users, n_items, n_categories, avg_interactions, seed=seed, name=name, **preferences)
    rng = np.random.default_rng([seed, 1])
    starts = np.r_[0, np.cumsum(np.bincount(pool.users, minlength=n_users))]
    users, items, baskets, positions = [], [], [], []
    basket_id = 0
    for user in range(n_users):
        repertoire = pool.items[starts[user] : starts[user + 1]]
        for position in range(4 + rng.poisson(max(avg_baskets - 4, 0.0))):
            size = min(len(repertoire), 1 + rng.poisson(max(avg_basket_size - 1, 0.0)))
            bought = rng.choice(repertoire, size, replace=False)
            users.append(np.full(size, user))
            items.append(bought)
            baskets.append(np.full(size, basket_id))
            positions.append(np.full(size, position))
            basket_id += 1
    return Interactions(
        users=np.concatenate(users).astype(np.int32),
        items=np.concatenate(items).astype(np.int32),
        user_tokens=pool.user_tokens,
        item_tokens=pool.item_tokens,
        timestamps=np.concatenate(positions).astype(np.float64),
        sessions=np.concatenate(baskets).astype(np.int64),
        item_categories=pool.item_categories,
        name=name,
    )
