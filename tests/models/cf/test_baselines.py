"""EASE and Random, the closed-form and random CF baselines, against independent computations;
on ML-100K (slow tier), the baselines' test utility in the order their definitions imply."""

import jax
import numpy as np
import pytest

import erase_jax as ej
from erase_jax.data.cf import CFTrainData
from erase_jax.evaluators.base import ScoredModel
from erase_jax.models import build_model
from erase_jax.models.cf.ease import memory_gib
from erase_jax.run import build_experiment
from erase_jax.unlearn.protocol.results import evaluate_model
from erase_jax.unlearn.protocol.run import build_protocol
from tests.conftest import REPO_ROOT, require_dataset
from tests.tiny import tiny_config, tiny_run

N_USERS, N_ITEMS = 12, 9


def small_train(seed=3) -> tuple[CFTrainData, np.ndarray]:
    """Random pairs (one repeated) and their dense count matrix X [users, items]."""
    rng = np.random.default_rng(seed)
    users = np.append(rng.integers(0, N_USERS, 50), 0).astype(np.int32)
    items = rng.integers(0, N_ITEMS, 51).astype(np.int32)
    items[-1] = items[np.nonzero(users[:-1] == 0)[0][0]]  # user 0 sees one item twice
    counts = np.zeros((N_USERS, N_ITEMS))
    np.add.at(counts, (users, items), 1.0)
    assert counts.max() > 1
    return CFTrainData(N_USERS, N_ITEMS, users, items), counts


def ridge_per_column(counts: np.ndarray, reg: float) -> np.ndarray:
    """B by its definition (Steck 2019, eq. 1 with diag(B) = 0), column by column: column j is the
    ridge regression of X_j on the other columns, with weight 0 on itself."""
    n_items = counts.shape[1]
    weights = np.zeros((n_items, n_items))
    for j in range(n_items):
        others = np.delete(np.arange(n_items), j)
        x = counts[:, others]
        weights[others, j] = np.linalg.solve(x.T @ x + reg * np.eye(n_items - 1), x.T @ counts[:, j])
    return weights


@pytest.mark.parametrize("reg", [0.5, 250.0])
def test_ease_matches_per_column_ridge_and_its_normal_equations(reg):
    train, counts = small_train()
    model = build_model("EASE", reg_weight=reg)
    context = model.prepare(train)
    weights = np.asarray(context.weights, np.float64)
    np.testing.assert_array_equal(np.diag(weights), 0.0)
    expected = ridge_per_column(counts, reg)
    np.testing.assert_allclose(weights, expected, rtol=2e-4, atol=1e-6 * np.abs(expected).max())
    # (X^T X + lambda I) B = X^T X + a diagonal matrix (the constraint's Lagrange multipliers)
    gram = counts.T @ counts
    residual = (gram + reg * np.eye(N_ITEMS)) @ weights - gram
    off_diagonal = residual - np.diag(np.diag(residual))
    assert np.abs(off_diagonal).max() < 1e-4 * np.abs(gram).max()

    query = np.array([0, 5, 11, 5], np.int32)
    scores = jax.jit(model.scores)(model.init(jax.random.key(0), context), context, {"users": query})
    np.testing.assert_allclose(scores, (counts @ expected)[query], rtol=2e-4, atol=1e-5)


def test_ease_refuses_a_catalogue_over_its_memory_bound_and_bad_knobs():
    train, _ = small_train()
    limit = memory_gib(N_ITEMS - 1)
    with pytest.raises(ValueError, match=rf"{N_ITEMS} items take .* GiB .*at most {N_ITEMS - 1} items"):
        build_model("EASE", max_memory_gib=limit).prepare(train)
    build_model("EASE", max_memory_gib=memory_gib(N_ITEMS)).prepare(train)  # at the bound: fits
    with pytest.raises(ValueError, match="reg_weight must be > 0"):
        build_model("EASE", reg_weight=0.0)
    with pytest.raises(ValueError, match="reg_weight must be > 0"):  # through the run config, by name
        build_experiment(tiny_config("EASE", ["model_params.reg_weight=0"]))


def random_scores(seed: int, users, train=None) -> np.ndarray:
    train = train or small_train()[0]
    model = build_model("Random")
    context = model.prepare(train)
    params = model.init(jax.random.key(seed), context)
    return np.asarray(jax.jit(model.scores)(params, context, {"users": np.asarray(users, np.int32)}))


def test_random_ranks_each_user_by_a_seeded_permutation():
    users = [0, 1, 2, 3, 0]
    scores = random_scores(2, users)
    for row in scores:  # a full ranking without ties: the scores are a permutation of 0..n-1
        np.testing.assert_array_equal(np.sort(row), np.arange(N_ITEMS))
    np.testing.assert_array_equal(scores[0], scores[4])  # the same user, the same ranking
    assert len({tuple(row) for row in scores[:4]}) == 4  # users draw their own
    np.testing.assert_array_equal(random_scores(2, users), scores)  # the seed fixes the draw
    assert not np.array_equal(random_scores(3, users), scores)
    other_data = CFTrainData(N_USERS, N_ITEMS, np.zeros(1, np.int32), np.zeros(1, np.int32))
    np.testing.assert_array_equal(random_scores(2, users, other_data), scores)  # the data play no part


def test_random_permutations_are_uniform_over_items():
    """Each item's mean position over 4,000 users is (n - 1) / 2 within 5 standard errors."""
    n_users = 4000
    train = CFTrainData(n_users, N_ITEMS, np.arange(n_users, dtype=np.int32), np.zeros(n_users, np.int32))
    scores = random_scores(5, np.arange(n_users), train)
    mean, spread = scores.mean(axis=0), np.sqrt((N_ITEMS**2 - 1) / 12 / n_users)
    assert np.abs(mean - (N_ITEMS - 1) / 2).max() < 5 * spread


def test_baselines_on_ml_100k_rank_as_expected(data_root):
    """Test Recall@20 on ML-100K (the original's CF split and protocol): EASE > ItemKNN and
    Pop > Random, and Random near its expectation (about 20 / 1,682 candidate items)."""
    require_dataset(data_root, "ml-100k")
    config = REPO_ROOT / "experiments" / "configs" / "bpr_ml-100k.yaml"
    recall = {}
    for name in ("EASE", "ItemKNN", "Pop", "Random"):
        run = ej.train_model([f"model={name}", f"data_root={data_root}"], config=config)
        recall[name] = ej.evaluate(run)["test"]["recall@20"]
    assert recall["EASE"] > recall["ItemKNN"] > recall["Random"]
    assert recall["EASE"] > recall["Pop"] > recall["Random"]
    assert recall["Random"] < 0.05


@pytest.mark.parametrize("name", ["EASE", "Random"])
def test_unlearning_a_baseline_is_recomputing_it(tmp_path, name):
    """The protocol with the no-op method on a non-learned model gives, at every checkpoint, the
    model recomputed from the trained split's training rows without those removed through it
    (built here from the interactions, apart from the protocol's context code). The retrain
    also recomputes the split (as for every model), so it may differ from this by that alone."""
    folder = tiny_run(name, tmp_path / "run")
    rows = ej.protocol(folder, "sensitive:Horror", "untouched", fraction=0.05, with_retrains=False)
    unlearned = [row for row in rows if row["eval_type"] == "unlearning"]
    assert [row["checkpoint_idx"] for row in unlearned] == [0, 1, 2, 3]
    run = ej.load(folder)
    protocol = build_protocol(run.experiment, ej.scenario_config("sensitive:Horror", fraction=0.05))
    inter, train_rows = run.experiment.data.interactions, run.experiment.data.split.train
    for row in unlearned:
        kept = train_rows[~protocol.removed_through(row["checkpoint_idx"])[train_rows]]
        assert len(kept) < len(train_rows)
        train = CFTrainData(inter.n_users, inter.n_items, inter.users[kept], inter.items[kept])
        recomputed = ScoredModel(run.experiment.model, run.params, run.experiment.model.prepare(train))
        expected = evaluate_model(protocol, row["checkpoint_idx"], recomputed)
        for measure in ("test_recall@20", "test_ndcg@20"):
            assert row[measure] == pytest.approx(expected[measure], abs=1e-6)
    trained = {row["checkpoint_idx"]: row["test_ndcg@20"] for row in rows if row["eval_type"] == "trained"}
    assert name == "Random" or trained[3] != unlearned[3]["test_ndcg@20"]  # EASE: the removals changed it
