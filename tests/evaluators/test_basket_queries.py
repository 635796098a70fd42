"""Users' stored histories scored at their buckets' widths give the scores of the full width."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.data.baskets import bucket_shapes
from erase_jax.evaluators import basket_queries
from erase_jax.evaluators.basket_queries import UserHistoryQueries, chunk_buckets
from erase_jax.models import build_model
from erase_jax.models.nbr.base import BasketShape
from erase_jax.models.nbr.row_chunks import chunk_shapes
from erase_jax.models.nbr.topfreq import FrequencyContext

N_ITEMS, H, WIDTH = 30, 12, 40


def stored_histories(width=WIDTH, seed=0, n_users=24):
    """Left-aligned histories of 1 to `width` occurrences in 1 to H baskets (padding N_ITEMS / H)."""
    rng = np.random.default_rng(seed)
    items = np.full((n_users, width), N_ITEMS, np.int32)
    baskets = np.full((n_users, width), H, np.int32)
    lengths, n_baskets = np.zeros(n_users, np.int32), np.zeros(n_users, np.int32)
    for u in range(n_users):
        length = int(rng.integers(1, width + 1)) if u else width  # one user fills the stored width
        n = int(rng.integers(1, min(length, H) + 1))
        cuts = np.sort(rng.choice(np.arange(1, length), n - 1, replace=False)) if n > 1 else np.zeros(0, int)
        baskets[u, :length] = np.searchsorted(cuts, np.arange(length), side="right")
        items[u, :length] = rng.integers(0, N_ITEMS, length)
        lengths[u], n_baskets[u] = length, n
    return {"users": jnp.arange(n_users, dtype=jnp.int32), "items": jnp.asarray(items), "baskets": jnp.asarray(baskets),
            "lengths": jnp.asarray(lengths), "n_baskets": jnp.asarray(n_baskets)}


def test_chunk_bucket_table_holds_every_chunk():
    shapes, widths, steps, table = chunk_buckets(WIDTH, H)
    assert shapes == chunk_shapes(WIDTH, H) and set(shapes) <= set(bucket_shapes(WIDTH, H))
    for wi, w in enumerate(widths):
        for ti, t in enumerate(steps):
            if t <= w:  # a chunk's baskets never outnumber its occurrences: the smallest shape holding them
                assert shapes[table[wi, ti]] == min(s for s in shapes if s[0] == w and s[1] >= t)


@pytest.mark.parametrize("name, width, chunk", [("PTopFreq", WIDTH, 1000), ("PTopFreq", WIDTH, 3), ("DNNTSP", 16, 3)])
def test_bucketed_user_scores_equal_the_full_width_scores(monkeypatch, name, width, chunk):
    """PTopFreq counts every occurrence below the length (a width cut too narrow loses some);
    DNNTSP's attention runs over the bucket's basket steps. Chunks of 3 users mix buckets."""
    histories = stored_histories(width)
    if name == "DNNTSP":
        model, context = build_model(name, embedding_size=8, n_heads=2), BasketShape(N_ITEMS, H)
        params = model.init(jax.random.key(0), context)
    else:
        model, context, params = build_model(name), FrequencyContext(jnp.arange(N_ITEMS, dtype=jnp.float32), N_ITEMS), {}
    steps = min(width, getattr(context, "max_history_baskets", width))
    monkeypatch.setattr(basket_queries, "QUERY_CELLS", width * steps * chunk)
    asked = np.array([5, 0, 17, 3, 3, 22, 9, 1, 14, 11, 0])  # any order, repeats allowed
    queries = UserHistoryQueries(model)
    got = jax.jit(queries.scores)(params, (context, histories), {"users": jnp.asarray(asked)})
    full = model.logits(params, context, {name: values[asked] for name, values in histories.items()}, None, None)
    np.testing.assert_allclose(np.asarray(got), np.asarray(full), rtol=1e-5, atol=1e-5)
