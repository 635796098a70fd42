"""Unlearning on session-based (sequence) models: request rows, evaluation queries, SCIF's
math on a sequence model, and every method through the sequential protocol.

A tiny GRU4Rec is trained for one epoch (and once with `sequence.objective: all_positions`) on
a small synthetic data set (timestamps and item categories, one sequence per user); the
scenario is the sensitive category "Horror". (SASRec
runs the same protocol in experiments/grids/sbr_ml-100k.yaml; kept out of the unit tests
for time.)
"""

from __future__ import annotations

import csv
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.config import load_config
from erase_jax.run import build_experiment, load_run, train_run
from erase_jax.tasks import sbr as sbr_task
from erase_jax.tasks.base import get_task
from erase_jax.unlearn.influence.solvers import SolverStatus
from erase_jax.unlearn.methods import base
from erase_jax.unlearn.methods.scif import SCIF, target_block
from erase_jax.unlearn.protocol import jobs
from erase_jax.unlearn.protocol.run import (
    UnlearnConfig,
    build_protocol,
    load_quarter,
    request_data,
)

# Every test here trains a GRU4Rec or runs the protocol: the slow tier. In the fast tier the SBR
# task's request rows are built by tests/models/test_conformance.py.
pytestmark = pytest.mark.slow

SYNTHETIC = "data.synthetic={n_users: 100, n_items: 50, avg_interactions: 12}"
TINY = {
    "GRU4Rec": ["model_params={embedding_size: 8, hidden_size: 8}"],
}
SCENARIO = dict(scenario="sensitive", category="Horror", fraction=0.01)
APPROXIMATE = ("scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif")
# fewer solver / fine-tuning iterations than the defaults: these tests check that each method
# runs the protocol on sequence models; the defaults run in experiments/grids/sbr_ml-100k.yaml
CHEAP = {
    "scif": {"cg_iterations": 20},
    "gif": {"gif_iterations": 5},
    "ceu": {"ceu_cg_iterations": 10, "ceu_hessian_samples": 128},
    "idea": {"idea_iterations": 10, "idea_hessian_samples": 128, "idea_finetune_samples_per_forget_row": 8},
    "fanchuan": {"unlearn_iters_contrastive": 2},
    "seif": {"seif_repair_epochs": 2},
}


def sbr_config(model: str, extra=()):
    return load_config(None, [
        f"model={model}", *TINY[model], "dataset=synthetic", SYNTHETIC,
        "data.min_user_interactions=0", "data.min_item_interactions=0",
        "train.epochs=1", "train.valid_metric=mrr@10", "train.batch_size=64", *extra,
    ])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = {}
    for model in TINY:
        folder = tmp_path_factory.mktemp(f"sbr_{model}")
        train_run(sbr_config(model), folder / "run", quiet=True)
        runs[model] = folder / "run"
    return runs


def first_request(protocol):
    stream = protocol.stream
    removed_before = np.zeros(len(protocol.experiment.data.interactions), bool)
    removed_after = removed_before.copy()
    batch = stream.batch(0)
    removed_after[np.concatenate([protocol.forget_set.rows_of_request(protocol.experiment.data.interactions, r)
                                  for r in batch.requests])] = True
    return batch, removed_before, removed_after


def test_forget_and_clean_rows_are_the_users_sequence_with_and_without_the_forgotten_items(trained):
    experiment, _ = load_run(trained["GRU4Rec"])
    protocol = build_protocol(experiment, UnlearnConfig(method="scif", **SCENARIO))
    batch, _, removed_after = first_request(protocol)
    user = int(batch.users[0])
    inter = experiment.data.interactions
    forgotten_items = set(inter.items[removed_after].tolist())
    assert forgotten_items

    # F: the user's training prefix rows of the trained run, nothing else
    forget_rows = protocol.rows.user_rows.gather(batch.users)
    train = experiment.examples.train
    assert set(inter.users[train.target_rows[forget_rows]].tolist()) == {user}
    assert len(forget_rows) == int(np.sum(inter.users[train.target_rows] == user))

    # C: exactly the rows the retrain trains on for this user (the counterfactual sequence)
    clean = protocol.rows.counterfactual_rows(batch.users, removed_after)
    retrained = build_experiment(experiment.config, experiment.data.without(removed_after, experiment.config.seed))
    retrain_train = retrained.examples.train
    mine = retrained.data.interactions.users[retrain_train.target_rows] == user
    assert clean.prefix_lists() == retrain_train.select(mine).prefix_lists()
    np.testing.assert_array_equal(clean.targets, retrain_train.targets[mine])
    for prefix, target in zip(clean.prefix_lists(), clean.targets):
        assert not forgotten_items & set(prefix) and int(target) not in forgotten_items


def test_request_batches_share_one_width_and_cut_only_padding(trained):
    experiment, params = load_run(trained["GRU4Rec"])
    protocol = build_protocol(experiment, UnlearnConfig(method="scif", **SCENARIO))
    batch, removed_before, removed_after = first_request(protocol)
    retain_rows = protocol.rows.user_rows.gather([u for u in range(5) if u not in batch.users])
    request = request_data(protocol, batch, removed_before, removed_after, retain_rows, jax.random.PRNGKey(0), None,
                           experiment.context)
    width = request.forget["items"].shape[1]
    assert request.retain["items"].shape[1] == width and request.clean["items"].shape == request.forget["items"].shape
    assert width < experiment.examples.train.max_length  # synthetic prefixes are short: the width is cut
    # cutting trailing padding changes no score
    rows = experiment.examples.train.select(protocol.rows.user_rows.gather(batch.users))
    full = sbr_task.sequence_batch(rows, width=rows.max_length)
    model = experiment.model
    np.testing.assert_allclose(
        model.scores(params, experiment.context, get_task("SBR").query_of(request.forget)),
        model.scores(params, experiment.context, get_task("SBR").query_of(full)), rtol=1e-5, atol=1e-6,
    )


def test_users_are_queried_with_their_last_test_prefix_of_the_cleaned_data(trained):
    experiment, params = load_run(trained["GRU4Rec"])
    protocol = build_protocol(experiment, UnlearnConfig(method="scif", **SCENARIO))
    batch, _, removed_after = first_request(protocol)
    data = experiment.data.without(removed_after, experiment.config.seed)
    view = protocol.rows.evaluation(data)
    user = int(batch.users[0])
    test = view.test
    mine = np.flatnonzero(data.interactions.users[test.target_rows] == user)
    last = mine[np.argmax(test.target_times[mine])]
    model, query_params, context = view.by_user(experiment.model, params, experiment.context)
    by_id = model.scores(query_params, context, {"users": jnp.array([user])})
    direct = experiment.model.scores(params, experiment.context, {
        "items": jnp.asarray(test.prefixes[last:last + 1]), "lengths": jnp.asarray(test.lengths[last:last + 1])})
    np.testing.assert_allclose(by_id, direct, rtol=1e-5, atol=1e-6)
    forgotten = set(experiment.data.interactions.items[removed_after].tolist())
    assert not forgotten & set(test.prefix_lists()[last])
    full_test = protocol.rows.evaluation(experiment.data).test
    with_test = np.union1d(data.interactions.users[test.target_rows], experiment.data.interactions.users[full_test.target_rows])
    assert len(view.scorable(np.setdiff1d(np.arange(data.interactions.n_users), with_test))) == 0


def test_a_user_removed_altogether_is_queried_with_its_full_data_prefix(trained):
    """Random users: all of a user's rows go; its query is its last test prefix of the full data."""
    experiment, params = load_run(trained["GRU4Rec"])
    protocol = build_protocol(experiment, UnlearnConfig(method="scif", **SCENARIO))
    inter = experiment.data.interactions
    full = protocol.rows.evaluation(experiment.data)
    user = int(inter.users[full.test.target_rows[0]])
    view = protocol.rows.evaluation(experiment.data.without(inter.users == user, experiment.config.seed))
    assert user not in view.data.interactions.users[view.test.target_rows]
    assert view.scorable(np.array([user])).tolist() == [user]
    model, query_params, context = view.by_user(experiment.model, params, experiment.context)
    full_model, full_params, full_context = full.by_user(experiment.model, params, experiment.context)
    np.testing.assert_allclose(model.scores(query_params, context, {"users": jnp.array([user])}),
                               full_model.scores(full_params, full_context, {"users": jnp.array([user])}), rtol=1e-6)


def cross_entropy_of_logits(batch):
    def loss(flat_logits):
        log_p = jax.nn.log_softmax(flat_logits.reshape(batch["weight"].shape[0], -1))
        nll = -jnp.take_along_axis(log_p, batch["targets"][:, None], axis=1)[:, 0]
        return jnp.sum(batch["weight"] * nll) / jnp.sum(batch["weight"])

    return loss


@pytest.mark.parametrize("curvature", ["hessian", "gauss_newton"])
def test_scif_on_a_sequence_model_is_the_damped_newton_step_of_its_block(trained, curvature):
    """SCIF (correct mode) on GRU4Rec without dropout against an explicit solve over the
    original's target block (item embedding + dense layer): with the exact Hessian, and with the
    Gauss-Newton matrix J^T H_out J (the default on sequence models) built from `jax.jacfwd` of
    the logits and `jax.hessian` of their cross-entropy."""
    experiment, params = load_run(trained["GRU4Rec"])
    model = dataclasses.replace(experiment.model, dropout_prob=0.0)
    experiment = dataclasses.replace(experiment, model=model)
    protocol = build_protocol(experiment, UnlearnConfig(method="scif", **SCENARIO))
    batch, removed_before, removed_after = first_request(protocol)
    retain_rows = protocol.rows.user_rows.gather(np.setdiff1d(np.arange(4), batch.users))
    request = request_data(protocol, batch, removed_before, removed_after, retain_rows, jax.random.PRNGKey(0), None,
                           experiment.context)
    damping = 0.5  # large enough that the block Hessian + damping is positive definite
    method = SCIF(damping=damping, cg_tol=1e-10, cg_iterations=2000, curvature=curvature)
    new_params, _, info = method.unlearn(model, params, (), request, jax.random.PRNGKey(1))
    assert int(info["skipped"]) == 0

    block = target_block(model, params, [])
    flat, unflatten = jax.flatten_util.ravel_pytree(block.values(params))
    context = experiment.context

    def mean_loss(vector, batch):
        return model.loss(block.insert(params, unflatten(vector)), context, batch, None)

    real = lambda b: float(jnp.sum(b["weight"]))
    kept = {k: jnp.concatenate([request.clean[k], request.retain[k]]) for k in request.retain}
    n_kept, n_clean, n_forget = real(kept), real(request.clean), real(request.forget)
    gradient = (n_clean * jax.grad(mean_loss)(flat, request.clean) - n_forget * jax.grad(mean_loss)(flat, request.forget)) / n_kept
    if curvature == "hessian":
        matrix = jax.hessian(mean_loss)(flat, kept)
    else:
        logits = lambda vector: model.output_loss_parts(block.insert(params, unflatten(vector)), context, kept, None)[0].ravel()
        jacobian = jax.jacfwd(logits)(flat)
        matrix = jacobian.T @ jax.hessian(cross_entropy_of_logits(kept))(logits(flat)) @ jacobian
    step = np.linalg.solve(np.asarray(matrix, np.float64) + damping * np.eye(len(flat)), np.asarray(gradient, np.float64))
    expected = unflatten(jnp.asarray(flat - step, jnp.float32))
    for got, want in zip(block.values(new_params), expected):
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-5)
    untouched = [name for name in new_params["params"] if name not in ("item_embedding", "dense_w", "dense_b")]
    for name in untouched:
        np.testing.assert_array_equal(new_params["params"][name], params["params"][name])


@pytest.mark.parametrize("model_name,method", [("GRU4Rec", m) for m in APPROXIMATE])
def test_every_method_runs_the_sequential_protocol_on_sequence_models(trained, tmp_path, model_name, method):
    config = UnlearnConfig(method=method, method_options=CHEAP.get(method, {}), **SCENARIO)
    rows = jobs.unlearn(trained[model_name], config, out=str(tmp_path / "scenario"), quiet=True)
    unlearned = [r for r in rows if r["eval_type"] == "unlearning"]
    assert [r["checkpoint_idx"] for r in unlearned] == [0, 1, 2, 3]
    experiment, params = load_run(trained[model_name])
    for k in range(4):
        quarter, removed = load_quarter(tmp_path / "scenario" / method, k, params, len(experiment.data.interactions))
        assert removed.sum() > 0
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(quarter))
    for row in unlearned:
        assert np.isfinite(row["test_ndcg@10"]) and row["sensitive_scored_users"] >= 1
        assert 0 <= row["pct_users_with_sensitive@20"] <= 100


@pytest.mark.parametrize("method", ["ceu", "idea", "gif"])
def test_newton_methods_with_gauss_newton_curvature_take_converged_steps(trained, tmp_path, method):
    """With the Gauss-Newton curvature (PSD) no solve meets negative curvature, diverges or is
    skipped, and every method runs the protocol."""
    options = {**CHEAP[method], "curvature": "gauss_newton"}
    config = UnlearnConfig(method=method, method_options=options, **SCENARIO)
    rows = jobs.unlearn(trained["GRU4Rec"], config, out=str(tmp_path / "scenario"), quiet=True)
    assert [r["checkpoint_idx"] for r in rows if r["eval_type"] == "unlearning"] == [0, 1, 2, 3]
    with open(tmp_path / "scenario" / method / "requests.csv") as f:
        requests = list(csv.DictReader(f))
    assert len(requests) >= 4
    assert all(r["skipped"] == "False" for r in requests)
    healthy = {str(int(SolverStatus.CONVERGED)), str(int(SolverStatus.MAX_ITERATIONS))}
    assert all(r["solver_status"] in healthy for r in requests), [r["solver_status"] for r in requests]
    for row in rows:
        assert np.isfinite(row["test_ndcg@10"])


def test_sequence_retrain_removes_exactly_the_forgotten_rows(trained, tmp_path):
    config = UnlearnConfig(method="retrain", **SCENARIO)
    rows = jobs.retrain_all(trained["GRU4Rec"], config, (3,), out=str(tmp_path / "scenario"), quiet=True)
    assert rows[0]["eval_type"] == "retraining" and np.isfinite(rows[0]["test_ndcg@10"])
    experiment, _ = load_run(trained["GRU4Rec"])
    protocol = build_protocol(experiment, config)
    retrained_config = load_config(tmp_path / "scenario" / "retrain" / "k3" / "config.yaml")
    assert retrained_config.model == "GRU4Rec"
    retrained = build_experiment(experiment.config, experiment.data.without(
        protocol.stream.removal_mask_through(experiment.data.interactions, protocol.stream.checkpoint_batches[3]),
        experiment.config.seed))
    forgotten = protocol.forget_set.removal_mask(experiment.data.interactions)
    inter = experiment.data.interactions
    pairs = set(zip(inter.users[forgotten].tolist(), inter.items[forgotten].tolist()))
    train = retrained.examples.train
    owners = retrained.data.interactions.users[train.target_rows]
    assert not pairs & set(zip(owners.tolist(), train.targets.tolist()))


def test_exact_methods_refuse_sequence_models(trained, tmp_path):
    with pytest.raises(ValueError, match="GRU4Rec"):
        jobs.unlearn(trained["GRU4Rec"], UnlearnConfig(method="sisa", **SCENARIO), out=str(tmp_path / "s"), quiet=True)
    assert "sisa" in base.method_names()


def test_fraud_sessions_are_forgotten_through_the_protocol(tmp_path):
    """Spam on a sequence model: fraud sessions injected at training, forgotten request by
    request; every row reports what the genuine users' queries still show of the targets."""
    run = tmp_path / "run"
    train_run(sbr_config("GRU4Rec", ["data.spam_ratio=0.05"]), run, quiet=True)
    experiment, _ = load_run(run)
    fraud = experiment.data.fraud
    assert fraud is not None and fraud.target_items is not None and len(fraud.users) >= 4
    config = UnlearnConfig(method="kookmin", scenario="spam")
    rows = jobs.unlearn(run, config, out=str(tmp_path / "spam"), quiet=True)
    rows += jobs.retrain_all(run, config, (3,), out=str(tmp_path / "spam"), quiet=True)
    for row in rows:
        assert 0.0 <= row["spam_users_with_target@20"] <= 1.0 and row["spam_scored_users"] > 0
    retrained = [r for r in rows if r["eval_type"] == "retraining"][0]
    assert retrained["n_removed"] == int(fraud.removal_mask(experiment.data.interactions).sum())


def test_all_positions_runs_the_protocol_and_its_retrain_in_the_same_objective(tmp_path):
    """`sequence.objective: all_positions`: the original, a method's requests and the retrain."""
    folder = tmp_path / "run"
    train_run(sbr_config("GRU4Rec", ["sequence.objective=all_positions", "sequence.max_length=4"]), folder, quiet=True)
    experiment, _ = load_run(folder)
    rows = get_task("SBR").request_rows(experiment)
    protocol = build_protocol(experiment, UnlearnConfig(method="scif", **SCENARIO))
    batch, _, removed_after = first_request(protocol)
    forget, _, _ = rows.request_batches(batch.users, removed_after, np.zeros(0, np.int64), None, with_clean=False)
    ranks = experiment.examples.train.select(rows.user_rows.gather(batch.users)).ranks
    assert ranks.max() > 4  # F holds targets past the cap: their contexts are cut to their chunk's
    assert np.asarray(forget["lengths"][: len(ranks)]).tolist() == ((ranks - 1) % 4 + 1).tolist()
    config = UnlearnConfig(method="scif", method_options=CHEAP["scif"], **SCENARIO)
    unlearned = jobs.unlearn(folder, config, out=str(tmp_path / "scenario"), quiet=True)
    assert all(np.isfinite(r["test_ndcg@10"]) for r in unlearned)
    retrained = jobs.retrain_all(folder, dataclasses.replace(config, method="retrain"), (3,),
                                 out=str(tmp_path / "scenario"), quiet=True)
    assert np.isfinite(retrained[0]["test_ndcg@10"])
    assert load_config(tmp_path / "scenario" / "retrain" / "k3" / "config.yaml").sequence.objective == "all_positions"
