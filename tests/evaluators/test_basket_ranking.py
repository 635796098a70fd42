"""The next-basket evaluator (next-basket spec 3) on a hand-worked example.

A stand-in model scores items by a fixed table per user, so every ranking is chosen by hand;
the expected metric values below are worked out from the module's definitions. Row 2 has an
empty target basket (dropped), row 3 a history of 10 occurrences (the second width, 10, next to 8).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.evaluators.basket_ranking import NBR_METRICS, evaluate_nbr, top_k_baskets
from erase_jax.models import build_model
from tests.models.nbr.hand_rows import basket_rows

N_ITEMS = 6
HISTORIES = [[[0, 1], [2]], [[3], [3, 4], [5]], [[2]], [[0, 1, 2], [3, 4, 5], [0, 1], [2, 3]]]
TARGETS = [[1, 3, 5], [0], [], [4, 5]]
RANKINGS = [[1, 4, 3, 0, 2, 5], [3, 5, 0, 1, 2, 4], [0, 1, 2, 3, 4, 5], [4, 5, 0, 1, 2, 3]]
ROWS = basket_rows(HISTORIES, TARGETS, N_ITEMS, 4)


@dataclasses.dataclass(frozen=True)
class TableModel:
    """scores = params[user]: a hand-chosen ranking per user."""

    def scores(self, params, context, query):
        return params[query["users"]]


def table():
    scores = np.zeros((len(RANKINGS), N_ITEMS), np.float32)
    for user, ranking in enumerate(RANKINGS):
        scores[user, ranking] = np.arange(N_ITEMS, 0, -1)
    return jnp.asarray(scores)


D = lambda j: 1.0 / np.log2(j + 2)  # the discount of (0-based) rank j
PER_ROW = {  # rows 0, 1, 3 at k = 2 and k = 3
    "recall@2": [1 / 3, 0, 1], "recall@3": [2 / 3, 1, 1],
    "precision@2": [1 / 2, 0, 1], "precision@3": [2 / 3, 1 / 3, 2 / 3],
    "hit@2": [1, 0, 1], "hit@3": [1, 1, 1],
    "mrr@2": [1, 0, 1], "mrr@3": [1, 1 / 3, 1],
    "ndcg@2": [1 / (D(0) + D(1)), 0, 1], "ndcg@3": [(D(0) + D(2)) / (D(0) + D(1) + D(2)), D(2), 1],
    "recall_repeat@2": [1 / 3, 0, 1], "recall_repeat@3": [1 / 3, 0, 1],
    "recall_explore@2": [0, 0, 0], "recall_explore@3": [1 / 3, 1, 0],
    "repeat_ratio@2": [1 / 2, 1, 1], "repeat_ratio@3": [1 / 3, 2 / 3, 1],
}


@pytest.mark.parametrize("block_size", [1, 1024])
def test_every_metric_matches_the_hand_worked_example(block_size):
    summary, per_row = evaluate_nbr(TableModel(), table(), None, ROWS, ks=(2, 3), block_size=block_size, per_row=True)
    assert list(summary) == [f"{m}@{k}" for m in NBR_METRICS for k in (2, 3)]
    for name, values in PER_ROW.items():
        assert summary[name] == pytest.approx(np.mean(values)), name
        np.testing.assert_allclose(per_row[name][[0, 1, 3]], values, err_msg=name)
        assert np.isnan(per_row[name][2]), name  # the row without a target
    for k in (2, 3):
        np.testing.assert_allclose(per_row[f"recall_repeat@{k}"] + per_row[f"recall_explore@{k}"], per_row[f"recall@{k}"])


def test_metrics_can_be_selected_and_unknown_ones_are_rejected():
    summary = evaluate_nbr(TableModel(), table(), None, ROWS, ks=(3,), metrics=("repeat_ratio", "ndcg"))
    assert list(summary) == ["repeat_ratio@3", "ndcg@3"]
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate_nbr(TableModel(), table(), None, ROWS, metrics=("phr",))
    with pytest.raises(ValueError, match="only 6 items"):
        evaluate_nbr(TableModel(), table(), None, ROWS, ks=(10,))


def test_the_padding_item_is_never_ranked_and_repeats_are_not_masked():
    model = build_model("GPTopFreq")
    context = model.prepare(ROWS)
    top, in_history = top_k_baskets(model, model.init(jax.random.PRNGKey(0), context), context, ROWS, N_ITEMS)
    for r, history in enumerate(HISTORIES):
        assert sorted(top[r]) == list(range(N_ITEMS))  # every real item once, never the padding id N_ITEMS
        bought = {i for basket in history for i in basket}
        assert set(top[r, : len(bought)]) == bought  # GP-TopFreq ranks the history first: no masking
        np.testing.assert_array_equal(in_history[r], [int(i) in bought for i in top[r]])


@pytest.mark.slow
def test_sets2sets_evaluates_end_to_end():
    model = build_model("Sets2Sets", embedding_size=4, hidden_size=4)
    context = model.prepare(ROWS)
    params = model.init(jax.random.PRNGKey(0), context)
    summary, per_row = evaluate_nbr(model, params, context, ROWS, ks=(2, 3), block_size=2, per_row=True)
    scores = np.asarray(model.scores(params, context, {k: jnp.asarray(v) for k, v in {
        "users": ROWS.users, "items": ROWS.items, "baskets": ROWS.baskets, "lengths": ROWS.lengths,
        "n_baskets": ROWS.n_baskets}.items()}))
    hits = [len(set(np.argsort(-s, kind="stable")[:3]) & set(t)) / len(t) for s, t in zip(scores, TARGETS, strict=True) if t]
    assert summary["recall@3"] == pytest.approx(np.mean(hits))
    assert np.isnan(per_row["ndcg@3"][2])
