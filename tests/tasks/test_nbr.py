"""The next-basket task plug-in: its config section, request rows (F, the counterfactual C, R),
user queries, and the padding of several positives per row.

The experiment here is built from hand-made basket tables and the non-trainable P-TopFreq (its
scores read only the history), so every number is checked against a hand computation.
"""

import numpy as np
import pytest

from erase_jax.config import ConfigError, load_config
from erase_jax.data.basket_split import basket_split
from erase_jax.data.baskets import BasketConfig
from erase_jax.data.loading import LoadedData
from erase_jax.evaluators import basket_queries
from erase_jax.run import build_experiment
from erase_jax.tasks import get_task, task_of
from tests.data.test_baskets import basket_data

SIX = [[0, 1], [2], [3, 9], [9], [4], [5]]  # basket 3 holds only the "sensitive" item 9


def hand_experiment(users: dict):
    inter = basket_data(users)
    loaded = LoadedData(inter, basket_split(inter, 4), "hand", {"split": "basket", "min_baskets": 4})
    config = load_config(None, ["model=PTopFreq", "dataset=synthetic"])
    return build_experiment(config, loaded)


def test_the_task_owns_the_basket_section():
    config = load_config(None, ["model=PTopFreq", "dataset=synthetic"])
    assert config.basket == BasketConfig() and task_of(build_experiment(config).model) is not None
    assert get_task("nbr").name == "NBR"
    with pytest.raises(ConfigError, match="basket section applies to another task"):
        load_config(None, ["model=BPR", "basket.min_baskets=5"])


def test_forget_rows_are_the_train_example_and_clean_rows_the_rebuilt_one():
    experiment = hand_experiment({"a": SIX, "b": [[1], [2], [3], [4]], "c": [[5], [6], [7], [8], [0]]})
    rows = experiment.task.request_rows(experiment)
    inter = experiment.data.interactions
    removed = (inter.users == 0) & (inter.items == 9)  # user a forgets item 9
    forget, clean, retain = rows.request_batches(np.array([0]), removed, rows.user_rows.gather(np.array([1, 2])), None, True)
    n = inter.n_items
    # F: a's train example, history baskets 0..2 ([0, 1], [2], [3, 9]) -> target [9]
    assert np.asarray(forget["items"][0, :5]).tolist() == [0, 1, 2, 3, 9]
    assert np.asarray(forget["targets"][0]).tolist()[:1] == [9] and int(forget["target_sizes"][0]) == 1
    # C: without item 9 basket 3 vanishes, five baskets remain: history [0, 1], [2] -> target [3]
    assert np.asarray(clean["items"][0, :4]).tolist() == [0, 1, 2, n] and int(clean["lengths"][0]) == 3
    assert np.asarray(clean["targets"][0, :1]).tolist() == [3]
    assert clean["items"].shape == forget["items"].shape and clean["targets"].shape == forget["targets"].shape
    assert retain["items"].shape[1] == forget["items"].shape[1]
    assert sorted(np.asarray(retain["users"])[np.asarray(retain["weight"]) > 0].tolist()) == [1, 2]
    padding = np.asarray(experiment.task.positive_items(forget))
    assert padding[0].tolist()[:1] == [9] and set(padding[0, 1:].tolist()) <= {-1} and (padding[1:] == -1).all()
    assert n not in padding


def test_a_user_left_with_too_few_baskets_has_no_clean_example():
    experiment = hand_experiment({"a": [[9], [1], [2], [3]], "b": [[1], [2], [3], [4]]})
    rows = experiment.task.request_rows(experiment)
    inter = experiment.data.interactions
    removed = (inter.users == 0) & (inter.items == 9)
    _, clean, _ = rows.request_batches(np.array([0]), removed, rows.user_rows.gather(np.array([1])), None, True)
    assert clean is None


def test_users_are_queried_with_their_test_history_of_the_cleaned_data(monkeypatch):
    experiment = hand_experiment({"a": SIX, "b": [[1], [2], [3], [4]]})
    inter = experiment.data.interactions
    removed = (inter.users == 0) & (inter.items == 9)
    view = experiment.task.request_rows(experiment).evaluation(experiment.data.without(removed, 2))
    model, params, context = view.by_user(experiment.model, {}, experiment.context)
    scores = np.asarray(model.scores(params, context, {"users": np.array([0, 1])}))
    # a's cleaned test history: [0, 1], [2], [3], [4] (basket 3 vanished), target [5]
    bought = {0, 1, 2, 3, 4}
    assert set(np.argsort(-scores[0])[:5].tolist()) == bought and scores[0, 9] < scores[0, 4]
    assert set(np.argsort(-scores[1])[:3].tolist()) == {1, 2, 3}
    assert view.scorable(np.array([0, 1])).tolist() == [0, 1]
    assert len(view.test) == 2 and view.test.target_list(0) == [5]
    monkeypatch.setattr(basket_queries, "QUERY_CELLS", 1)  # one user per chunk: the same scores
    chunked = np.asarray(model.scores(params, context, {"users": np.array([0, 1, 0])}))
    np.testing.assert_array_equal(chunked, scores[[0, 1, 0]])


def test_a_user_removed_altogether_is_queried_with_the_full_data_history():
    """Random users: a's rows all go; a keeps a query (the full data's test history), left out of utility."""
    experiment = hand_experiment({"a": SIX, "b": [[1], [2], [3], [4]]})
    inter = experiment.data.interactions
    view = experiment.task.request_rows(experiment).evaluation(experiment.data.without(inter.users == 0, 2))
    model, params, context = view.by_user(experiment.model, {}, experiment.context)
    scores = np.asarray(model.scores(params, context, {"users": np.array([0, 1])}))
    # a's full test history: [0, 1], [2], [3, 9], [9], [4] (item 9 twice: ranked first), target [5]
    assert int(np.argmax(scores[0])) == 9 and set(np.argsort(-scores[0])[:6].tolist()) == {0, 1, 2, 3, 4, 9}
    assert set(np.argsort(-scores[1])[:3].tolist()) == {1, 2, 3}
    assert view.scorable(np.array([0, 1])).tolist() == [0, 1]
    assert view.test.users.tolist() == [1]  # utility: only b's test example
