"""Next-basket request streams under the "stream" request-shape policy (`protocol.shapes`).

A tiny DNNTSP is unlearned on the sensitive "Horror" baskets of the synthetic basket data. Under
"buckets" each request's batches keep their own history width (the stream meets several);
under "stream" every request is padded to the stream's row counts and widest history, so the
method's request program compiles once, ahead of the stream, and never inside it. The padding
rows and columns weigh nothing: each method's model after the stream equals the "buckets"
one to float tolerance (no method draws anything from a basket batch's length; the NBR task
samples nothing). Compilations are counted through jax.monitoring by function name,
independently of the module's own counter.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from erase_jax.api import load, requests
from erase_jax.unlearn.protocol.shapes import compile_counter, plan_shapes
from tests.compile_counts import COMPILED
from tests.tiny import tiny_run

SCENARIO = dict(fraction=0.02)  # 9 requests on the tiny data, of 4 widths
METHODS = ("scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return load(tiny_run("DNNTSP", tmp_path_factory.mktemp("nbr_shapes") / "dnntsp"))


def served_shapes(loop) -> list[tuple]:
    """(F rows, R rows, clean present, width) of each request, as the loop really prepares it."""
    shapes = []
    for _ in range(len(loop) - loop.next_batch):
        prepared = loop.prepare()
        if prepared.request is not None:
            r = prepared.request
            shapes.append((r.forget["weight"].shape[0], r.retain["weight"].shape[0], r.clean is not None,
                           r.forget["items"].shape[1]))
            assert r.retain["items"].shape[1] == shapes[-1][-1]
        loop.apply(prepared)
    return shapes


def test_stream_policy_pads_nbr_requests_to_one_shape_and_compiles_once(run):
    jax.clear_caches()
    COMPILED.clear()
    loop = requests(run, "sensitive:Horror", "scif", **SCENARIO)  # the default policy
    assert loop.protocol.config.request_shapes == "stream"
    loop.compile_requests()
    plan = loop.plan
    widths = {p.width for p in plan.requests}  # each request's own width (its "buckets" shape)
    assert len(widths) > 1  # the stream meets several widths: the test means something
    assert len(plan_shapes(loop, "buckets").shapes) > len(plan.shapes)
    assert plan.width == max(widths) and plan.sizes[:2] == (1, 32)  # one user's example; SCIF's 32 retain rows
    assert COMPILED["jit(_correct_request)"] == 1  # one joined batch of F + C + R for every request
    with compile_counter() as during:
        shapes = served_shapes(loop)
    assert {s[:2] + s[3:] for s in shapes} == {(*plan.sizes[:2], plan.width)}
    assert during["n_compiles"] == 0
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(loop.params))


@pytest.mark.slow  # each method's stream twice, the "buckets" one compiling 4-5 shapes (1-3 min per method)
@pytest.mark.parametrize("method", METHODS)
def test_each_method_gives_the_same_model_under_stream_and_buckets(run, method):
    after = {}
    for policy in ("buckets", "stream"):
        loop = requests(run, "sensitive:Horror", method, request_shapes=policy, **SCENARIO)
        loop.compile_requests()
        rows = [row for row in loop.take() if "seconds" in row]
        assert rows
        after[policy] = loop.params
    moved = max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(after["stream"])))
    assert moved > 1e-4  # the method changed the model
    for a, b in zip(jax.tree.leaves(after["buckets"]), jax.tree.leaves(after["stream"])):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)
