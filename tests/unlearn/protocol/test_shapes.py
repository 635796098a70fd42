"""A request stream's shapes are planned and compiled before its first request (`protocol.shapes`).

The fast tier checks the default policy (one shape, compiled once, none during the stream); the
slow tier the bucket policy (each bucket shape compiled once, none during the stream).
Compilations are counted through jax.monitoring (the backend-compile event, by function name),
independently of the module's own counter; the planned shapes are checked against the shapes
the stream really hands to the method when it runs without a plan.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from erase_jax.api import load, requests
from erase_jax.batching.cf import bucket_size
from erase_jax.config import load_config
from erase_jax.run import train_run
from erase_jax.tasks.cf import split_rows
from erase_jax.unlearn.protocol.shapes import compile_counter
from tests.compile_counts import COMPILED

SYNTHETIC = "data.synthetic={n_users: 300, n_items: 150, avg_interactions: 20}"
SCENARIO = dict(fraction=0.03)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes") / "bpr"
    config = load_config(None, ["model=BPR", "dataset=synthetic", SYNTHETIC, "train.epochs=2", "train.batch_size=256",
                                "model_params.embedding_size=8"])
    train_run(config, folder, quiet=True)
    return load(folder)


def served_shapes(loop) -> list[tuple]:
    """(F rows, R rows, clean present) of each request, as the loop really prepares it."""
    shapes = []
    while not loop.done:
        prepared = loop.prepare()
        if prepared.request is not None:
            r = prepared.request
            shapes.append((r.forget["weight"].shape[0], r.retain["weight"].shape[0], r.clean is not None))
        loop.apply(prepared)
    return shapes


@pytest.mark.slow  # compiles every bucket shape of the stream (about 90 s on 2 busy cores)
def test_the_plan_lists_the_shapes_the_stream_hands_to_the_method(run):
    loop = requests(run, "sensitive:Horror", "seif", request_shapes="buckets", **SCENARIO)
    real = served_shapes(requests(run, "sensitive:Horror", "seif", request_shapes="buckets", **SCENARIO))
    loop.compile_requests()
    planned = [loop.plan.shape_of(p) for p in loop.plan.requests]
    assert [s[:2] + s[3:] for s in planned] == real
    assert len(set(real)) > 1  # the stream has several bucket shapes: the test means something


@pytest.mark.slow  # one compilation per bucket shape, twice (about 2 min on 2 busy cores)
@pytest.mark.parametrize("method, program", [("seif", "jit(_seif_request)"), ("scif", "jit(_correct_request)")])
def test_ahead_of_time_step_compiles_each_shape_once_and_the_stream_none(run, method, program):
    jax.clear_caches()
    COMPILED.clear()
    loop = requests(run, "sensitive:Horror", method, request_shapes="buckets", **SCENARIO)
    compiled = loop.compile_requests()
    shapes = loop.plan.shapes
    # SEIF's program sees F and R; SCIF's correct mode one joined batch of F + C + R rows
    distinct = {s[:2] for s in shapes} if method == "seif" else {s[2] for s in shapes}
    assert COMPILED[program] == len(distinct)
    assert 0 < compiled["n_compiles"] <= sum(COMPILED.values())  # the module's counter sees the same events
    COMPILED.clear()
    rows = [row for row in loop.take() if "seconds" in row]
    assert sum(COMPILED.values()) == 0
    assert all(row["n_compiles"] == 0 and row["compile_seconds"] == 0 for row in rows)


def test_stream_policy_pads_every_request_to_one_shape_and_compiles_once(run):
    jax.clear_caches()
    COMPILED.clear()
    loop = requests(run, "sensitive:Horror", "seif", **SCENARIO)  # the default policy
    assert loop.protocol.config.request_shapes == "stream"
    compiled = loop.compile_requests()
    f_max = max(bucket_size(p.n_forget_rows) for p in loop.plan.requests)
    r_max = max(bucket_size(len(p.retain_rows)) for p in loop.plan.requests)
    assert loop.plan.sizes[:2] == (f_max, r_max)
    assert COMPILED["jit(_seif_request)"] == 1 and compiled["n_shapes"] <= 2
    with compile_counter() as during:
        shapes = served_shapes(loop)
    assert {s[:2] for s in shapes} == {(f_max, r_max)}
    assert during["n_compiles"] == 0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(loop.params))


def test_ahead_of_time_step_compiles_only_the_method(run):
    # building a request once compiled some 25 small programs (key splits, gathers, stacking),
    # about as much compile time as the method's own program on BPR
    jax.clear_caches()
    COMPILED.clear()
    loop = requests(run, "sensitive:Horror", "scif", **SCENARIO)
    COMPILED.clear()
    loop.compile_requests()
    assert dict(COMPILED) == {"jit(_correct_request)": 1}


@pytest.mark.parametrize("policy", ["stream", pytest.param("buckets", marks=pytest.mark.slow)])
def test_kookmin_compiles_its_pass_once_per_request_shape_and_the_stream_none(run, policy):
    # Kookmin's score pass and fine-tuning epochs are one program (a loop over a gather plan of
    # the request's F | C | R rows): one compilation per (F, R) padding, none for a request
    # without clean rows (F stands in for C), none during the stream (its single request
    # program once took 17 s of XLA compilation at load 10 on BPR ML-100K)
    jax.clear_caches()
    loop = requests(run, "sensitive:Horror", "kookmin", request_shapes=policy, **SCENARIO)
    COMPILED.clear()
    loop.compile_requests()
    paddings = {s[:2] for s in loop.plan.shapes}
    assert len(paddings) == 1 if policy == "stream" else len(paddings) > 1  # buckets: several, the test means something
    assert dict(COMPILED) == {"jit(_kookmin_pass)": len(paddings)}
    COMPILED.clear()
    rows = [row for row in loop.take() if "seconds" in row]
    assert rows and sum(COMPILED.values()) == 0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(loop.params))


def test_a_resumed_loop_plans_the_same_padding(run):
    loop = requests(run, "sensitive:Horror", "scif", **SCENARIO)
    loop.compile_requests()
    for _ in loop.take(2):
        pass
    resumed = type(loop)(loop.protocol, None, loop.method, state=loop.state_dict())
    resumed.compile_requests()
    assert resumed.plan.sizes == loop.plan.sizes
    assert [p.batch for p in resumed.plan.requests] == [p.batch for p in loop.plan.requests if p.batch >= 2]


def test_split_rows_cuts_a_joined_batch_into_two_padded_batches():
    n_first, n_second, first_size, total = 3, 4, 4, 12
    users = np.r_[np.arange(1, n_first + n_second + 1), np.zeros(total - n_first - n_second)].astype(np.int32)
    joined = {"users": jax.numpy.asarray(users),
              "weight": jax.numpy.asarray((np.arange(total) < n_first + n_second).astype(np.float32))}
    first, second = split_rows(joined, n_first, first_size)
    assert first["users"].shape == (4,) and second["users"].shape == (8,)
    np.testing.assert_array_equal(np.asarray(first["users"])[:n_first], [1, 2, 3])
    np.testing.assert_array_equal(np.asarray(first["weight"]), [1, 1, 1, 0])
    np.testing.assert_array_equal(np.asarray(second["users"])[:n_second], [4, 5, 6, 7])
    np.testing.assert_array_equal(np.asarray(second["weight"]), [1, 1, 1, 1, 0, 0, 0, 0])


def test_an_unknown_shape_policy_is_a_clear_error():
    from erase_jax.unlearn.protocol.run import UnlearnConfig

    with pytest.raises(ValueError, match="request_shapes must be one of"):
        UnlearnConfig(method="scif", scenario="sensitive:Horror", fraction=0.01, request_shapes="sometimes")
