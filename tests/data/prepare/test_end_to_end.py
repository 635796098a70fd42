"""Prepared folders through the project's own path: the loader reads them (data_root pointing at
the output), a model trains one epoch, and the first request of the forget file that `data
forget-set` wrote goes through SCIF. MovieLens with BPR (about 8 s on 2 cores, in the fast tier);
Ta-Feng with DNNTSP, its forget file a JSON list of user ids (slow tier). The session data sets:
`test_end_to_end_sessions.py`."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from erase_jax.config import load_config
from erase_jax.data.atomic import read_atomic
from erase_jax.data.prepare import prepare_dataset, write_forget_sets
from erase_jax.data.scenarios.baskets import sensitive_basket_forget_set
from erase_jax.run import load_run, train_run
from erase_jax.unlearn.protocol.run import UnlearnConfig, build_protocol
from tests.data.prepare.raw_files import random_movielens, tafeng_with_alcohol
from tests.unlearn.methods.contract import assert_finite, cheap_method, first_request


def unlearn_first_request(experiment, params, protocol) -> int:
    """The protocol's first request through SCIF (few solver iterations): the new parameters must
    be finite and differ from the trained ones. Returns the rows the request removes."""
    method = cheap_method("scif")
    request, key = first_request(protocol, method)
    new_params, _, _ = method.unlearn(experiment.model, params, method.init(experiment.model, params), request, key)
    jax.block_until_ready(new_params)
    assert_finite(new_params, "params")
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new_params), jax.tree.leaves(params)))
    return request.n_removed


def test_prepared_movielens_trains_and_unlearns(tmp_path):
    data_root = tmp_path / "data"
    prepare_dataset("movielens", random_movielens(tmp_path / "raw"), data_root / "movielens", quiet=True)
    [forget_file] = write_forget_sets(data_root / "movielens", "sensitive", [0.02], [2], category="health", quiet=True)

    config = load_config(None, ["model=BPR", "dataset=movielens", f"data.data_root={data_root}", "train.epochs=1",
                                "train.batch_size=256", "model_params.embedding_size=8", "seed=2"])
    result = train_run(config, tmp_path / "run", quiet=True)
    assert result["epochs"] == 1 and np.isfinite(result["test"]["recall@20"])

    experiment, params = load_run(tmp_path / "run")
    inter = experiment.data.interactions
    written = read_atomic(data_root / "movielens")
    assert len(experiment.data.unfiltered) == len(written) == 720  # the 5-core of the loader keeps every row
    assert sorted(inter.item_tokens[inter.category_items("health")].tolist()) == ["1", "2", "3"]

    unlearn = UnlearnConfig(method="scif", scenario="sensitive", category="health", forget_file=str(forget_file))
    protocol = build_protocol(experiment, unlearn)
    assert len(protocol.forget_set) >= 1
    assert unlearn_first_request(experiment, params, protocol) > 0


@pytest.mark.slow  # DNNTSP's compilation: about 30 s on 2 shared cores
def test_prepared_tafeng_unlearns_its_basket_forget_file(tmp_path):
    """The NBR path: the JSON list of user ids that `data forget-set` writes is what `unlearn
    --forget-file` reads, each listed user forgetting the category's items in all baskets."""
    data_root = tmp_path / "data"
    prepare_dataset("tafeng", tmp_path / "raw", data_root / "tafeng", options=[tafeng_with_alcohol(tmp_path, customers=20)],
                    quiet=True)
    [forget_file] = write_forget_sets(data_root / "tafeng", "sensitive", [0.05], [5], category="alcohol", quiet=True)
    config = load_config(None, ["model=DNNTSP", "model_params={embedding_size: 8, n_heads: 2}", "dataset=tafeng",
                                f"data.data_root={data_root}", "train.epochs=1", "train.batch_size=8",
                                "train.valid_metric=recall@1", "eval.topk=[1, 2]", "seed=2"])
    result = train_run(config, tmp_path / "run", quiet=True)
    assert result["epochs"] == 1

    experiment, params = load_run(tmp_path / "run")
    unlearn = UnlearnConfig(method="scif", scenario="sensitive", category="alcohol", forget_file=str(forget_file))
    protocol = build_protocol(experiment, unlearn)
    inter = experiment.data.interactions
    expected = sensitive_basket_forget_set(inter, "alcohol", 0.05, 5)
    assert np.array_equal(protocol.forget_set.users, expected.users) and len(expected) == 7  # T = 13
    assert np.array_equal(protocol.forget_set.items, expected.items)
    assert unlearn_first_request(experiment, params, protocol) == 2  # A1 in two of the user's baskets
