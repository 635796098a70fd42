"""Full ranking in bounded user blocks, and embedding tables split over (forced host) devices."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from erase_jax.evaluators.cf_ranking import SCORES_PER_BLOCK, block_for, ranking_inputs, top_k_items

ROOT = Path(__file__).resolve().parents[2]


class Factors:
    """A stand-in factor-form model: scores = users @ items.T, given as two tables."""

    def __init__(self, users, items):
        self.users, self.items = np.asarray(users, np.float32), np.asarray(items, np.float32)

    def score_factors(self, params, context):
        return self.users, self.items

    def scores(self, params, context, query):
        return jnp.asarray(self.users)[query["users"]] @ self.items.T

    def __hash__(self):
        return id(self)


def numpy_top_k(scores, users, history_users, history_items, k):
    """Independent reference: mask the history, then a stable argsort (ties: lower item id)."""
    masked = scores.astype(np.float64).copy()
    masked[history_users, history_items] = -np.inf
    return np.argsort(-masked[users], axis=1, kind="stable")[:, :k]


def test_block_shrinks_with_the_catalogue():
    assert block_for(1024, 27_278) == 1024  # ML-20M: 1024 x 27k scores fit the budget
    assert block_for(1024, 1_000_000) == 32  # a 1M-item catalogue: 32 users a block
    assert block_for(1024, 1_000_000) * 1_000_000 <= SCORES_PER_BLOCK
    assert block_for(1024, 10 * SCORES_PER_BLOCK) == 1
    assert block_for(1024, None) == 1024
    inputs = ranking_inputs(np.arange(100), n_items=SCORES_PER_BLOCK // 8)
    assert inputs.block_users.shape == (13, 8)  # 100 users in blocks of 8


def test_factor_ranking_equals_numpy_with_ties_and_small_blocks():
    rng = np.random.default_rng(0)
    users = rng.integers(-3, 4, (40, 3))  # small integers: exact float32 scores, many ties
    items = rng.integers(-3, 4, (23, 3))
    items[5] = items[2]  # an exact tie between two items
    model = Factors(users, items)
    queried = rng.permutation(40)[:31]
    history_users, history_items = rng.integers(0, 40, 120), rng.integers(0, 23, 120)
    want = numpy_top_k(model.users @ model.items.T, queried, history_users, history_items, 7)
    for block_size in (1, 4, 1024):
        got = top_k_items(model, None, None, queried, 7, history_users, history_items, block_size)
        np.testing.assert_array_equal(got, want)


SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from erase_jax.batching.cf import CFBatcher
    from erase_jax.data.cf import CFTrainData
    from erase_jax.evaluators.cf_ranking import top_k_items
    from erase_jax.evaluators.sharded_ranking import item_mesh
    from erase_jax.models import build_model
    from erase_jax.table_sharding import shard_tables, table_mesh, table_shardings
    from erase_jax.train import init_state, make_optimizer, make_train_epoch
    from erase_jax.config import TrainConfig

    report = {"devices": jax.device_count()}
    rng = np.random.default_rng(0)
    n_users, n_items = 64, 48
    users = rng.integers(0, n_users, 900).astype(np.int32)
    items = rng.integers(0, n_items, 900).astype(np.int32)
    train = CFTrainData(n_users, n_items, users, items)
    for name in ("BPR", "LightGCN"):
        model = build_model(name, embedding_size=8)
        context = model.prepare(train)
        batcher = CFBatcher.build(train, 128)
        optimizer = make_optimizer(TrainConfig(learning_rate=0.01), batcher.n_batches)
        epoch = make_train_epoch(model, optimizer)
        one = init_state(model, context, optimizer, 0)
        split = shard_tables(one, table_mesh(4))
        losses = [[], []]
        for e in range(2):
            order = batcher.shuffled_order(0, e)
            one, loss_one = epoch(one, context, batcher, order)
            split, loss_split = epoch(split, context, batcher, order)
            losses[0].append(float(loss_one)); losses[1].append(float(loss_split))
        table = split.params["params"]["item_embedding"]["embedding"]
        difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                         for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(split.params)))
        report[name] = {
            "losses": losses, "param_difference": difference,
            "item_rows_per_device": sorted({s.data.shape[0] for s in table.addressable_shards}),
        }
    # ranking: 4-way item split (47 items: padded to 48) against one device and numpy
    users_t = rng.integers(-3, 4, (30, 5)).astype(np.float32)  # exact scores, many ties
    items_t = rng.integers(-3, 4, (47, 5)).astype(np.float32)

    class Factors:
        def score_factors(self, params, context):
            return users_t, items_t
        def scores(self, params, context, query):
            return jnp.asarray(users_t)[query["users"]] @ items_t.T

    model = Factors()
    queried = np.arange(30)[::-1]
    hu, hi = rng.integers(0, 30, 90), rng.integers(0, 47, 90)
    masked = (users_t @ items_t.T).astype(np.float64)
    masked[hu, hi] = -np.inf
    want = np.argsort(-masked[queried], axis=1, kind="stable")[:, :15]
    report["ranking"] = {
        str(n): bool(np.array_equal(top_k_items(model, None, None, queried, 15, hu, hi, 8, mesh=item_mesh(n)), want))
        for n in (1, 2, 4)
    }
    try:
        table_shardings({"item_embedding": np.zeros((47, 2))}, table_mesh(4))
    except ValueError as error:
        report["uneven_error"] = str(error)
    print(json.dumps(report))
    """
)


def test_tables_split_over_four_host_devices_train_and_rank_as_one():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4
    for name in ("BPR", "LightGCN"):
        one, split = report[name]["losses"]
        np.testing.assert_allclose(split, one, rtol=1e-5)
        assert report[name]["param_difference"] < 1e-5
        assert report[name]["item_rows_per_device"] == [12]  # 48 item rows, a quarter on each device
    assert report["ranking"] == {"1": True, "2": True, "4": True}
    assert "47 rows" in report["uneven_error"] and "pad" in report["uneven_error"]
