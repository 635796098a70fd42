"""`sequence.objective: all_positions`: one pass per chunk gives the prefix rows' loss and gradient.

For a causal model without dropout, the all-positions loss of a set of sequences equals the mean
(times the pair count: the sum) of the prefix rows' losses, to float tolerance: exactly the
prefix rows within the length cap, the chunk contexts beyond it (`erase_jax.data.positions`).
"""

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from erase_jax.batching.sequences import SequenceBatcher
from erase_jax.config import ConfigError
from erase_jax.data.interactions import from_tokens
from erase_jax.data.positions import chunk_contexts, position_rows
from erase_jax.data.sequences import SequenceConfig, augment
from erase_jax.models import build_model
from erase_jax.models.sbr.base import SequenceShape
from erase_jax.tasks.sbr import SBRRequestRows, sequence_batch, task_from_interactions
from tests.tiny import tiny_config, tiny_run

N_ITEMS = 11
CAUSAL = {
    "GRU4Rec": dict(embedding_size=8, hidden_size=12, dropout_prob=0.0),
    "SASRec": dict(hidden_size=8, inner_size=16, hidden_dropout=0.0, attention_dropout=0.0),
}


def _interactions(lengths, seed=0):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(len(lengths)), lengths)
    return from_tokens(users.astype(str), rng.integers(0, N_ITEMS, len(users)).astype(str),
                       timestamps=np.arange(len(users), dtype=float))


def _rows(lengths, max_length, seed=0):
    return augment(_interactions(lengths, seed), max_length=max_length)


def _position_batch(rows):
    positions = position_rows(rows)
    return {"items": jnp.asarray(positions.items), "lengths": jnp.asarray(positions.lengths),
            "targets": jnp.asarray(positions.targets), "weight": jnp.asarray(positions.weights)}


def _model(name, rows):
    model = build_model(name, **CAUSAL[name])
    context = SequenceShape(rows.n_items, rows.max_length)
    return model, context, model.init(jax.random.PRNGKey(3), context)


SASREC_SLOW = [pytest.param(n, marks=pytest.mark.slow) if n == "SASRec" else n for n in sorted(CAUSAL)]


@pytest.mark.parametrize("name", SASREC_SLOW)
@pytest.mark.parametrize("case", ["within_cap", "beyond_cap"])
def test_all_positions_loss_and_gradient_equal_the_prefix_rows(name, case):
    # within the cap (8): every pair is its prefix row's; beyond it (cap 4, sequences up to 12):
    # the pairs of chunk 0 are the prefix rows', later ones the chunk contexts'
    max_length = 8 if case == "within_cap" else 4
    rows = _rows((5, 9, 3, 2) if case == "within_cap" else (5, 9, 12, 2), max_length)
    prefix_rows = rows if case == "within_cap" else chunk_contexts(rows)
    model, context, params = _model(name, rows)
    key = jax.random.PRNGKey(0)
    prefix_loss = lambda p: model.loss(p, context, sequence_batch(prefix_rows, width=max_length), key)
    position_loss = lambda p: model.loss(p, context, _position_batch(rows), key)
    (loss, grads), (expected, expected_grads) = jax.value_and_grad(position_loss)(params), jax.value_and_grad(prefix_loss)(params)
    np.testing.assert_allclose(loss * len(rows), expected * len(rows), rtol=1e-5)  # the sum over the prefix rows
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    # the Gauss-Newton hook: one logits row per position, the loss their weighted mean CE
    logits, weight, _ = model.output_loss_parts(params, context, _position_batch(rows), key)
    targets = _position_batch(rows)["targets"].reshape(-1)
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[:, None], axis=1)[:, 0]
    np.testing.assert_allclose(jnp.sum(weight * nll) / jnp.sum(weight), loss, rtol=1e-5)
    if case == "beyond_cap":  # the chunk-0 pairs are the untouched prefix rows
        assert np.array_equal(prefix_rows.prefixes[rows.ranks <= max_length], rows.prefixes[rows.ranks <= max_length])


@pytest.mark.parametrize("name", SASREC_SLOW)
def test_bucketed_position_batches_give_the_same_loss(name):
    rows = _rows((3, 4, 2, 20, 6), max_length=16)
    model, context, params = _model(name, rows)
    batcher = SequenceBatcher.build_positions(position_rows(rows), batch_size=2, mix_lengths=False)
    epoch = batcher.epoch(None, jnp.asarray(batcher.shuffled_order(0, 0)))
    assert epoch["targets"].shape == (batcher.n_batches, 2, 16) and set(np.asarray(epoch["bucket"]).tolist()) == {0, 1}
    key = jax.random.PRNGKey(0)
    for b in range(batcher.n_batches):
        batch = jax.tree.map(lambda x: x[b], epoch)
        full_width = {k: v for k, v in batch.items() if k != "bucket"}
        np.testing.assert_allclose(model.loss(params, context, batch, key), model.loss(params, context, full_width, key), rtol=1e-5)


@pytest.mark.parametrize("name", ["NARM", "SRGNN"])
def test_all_positions_is_refused_for_models_that_are_not_causal(name):
    with pytest.raises(ConfigError, match=f"{name} is not causal"):
        tiny_config(name, ["sequence.objective=all_positions"])


def test_an_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="objective"):
        tiny_config("GRU4Rec", ["sequence.objective=every_position"])


def test_a_tiny_gru4rec_trains_with_all_positions(tmp_path):
    import json

    folder = tiny_run("GRU4Rec", tmp_path, ["sequence.objective=all_positions", "train.epochs=2"])
    result = json.loads((folder / "result.json").read_text())
    losses = result["record"]["epoch_loss"] if "record" in result else result["epoch_loss"]
    assert len(losses) == 2 and all(np.isfinite(losses)) and losses[1] < losses[0]


def test_request_rows_hold_the_chunk_contexts_of_the_objective():
    inter = _interactions((7, 12, 9))
    sequence = SequenceConfig(max_length=4, objective="all_positions")
    examples = task_from_interactions(inter, sequence)
    config = SimpleNamespace(sequence=sequence, data=SimpleNamespace(split_ratios=(0.8, 0.1, 0.1)))
    experiment = SimpleNamespace(examples=examples, data=SimpleNamespace(interactions=inter), config=config, context=None)
    requests = SBRRequestRows(experiment)
    user = np.array([1])
    removed = np.zeros(len(inter), bool)
    removed[np.flatnonzero(inter.users == 1)[2]] = True  # the user's third item
    retain = np.flatnonzero(examples.train.sequences != 1)
    forget, clean, kept = requests.request_batches(user, removed, retain, None, with_clean=True)
    rows = examples.train.select(np.flatnonzero(examples.train.sequences == 1))
    counterfactual = task_from_interactions(inter.select(np.flatnonzero((inter.users == 1) & ~removed)), sequence).train
    for batch, expected in ((forget, rows), (clean, counterfactual), (kept, examples.train.select(retain))):
        cut = chunk_contexts(expected)
        n = len(cut)
        assert np.array_equal(np.asarray(batch["lengths"][:n]), cut.lengths)
        assert np.array_equal(np.asarray(batch["items"][:n, :4]), cut.prefixes)
        assert float(jnp.sum(batch["weight"])) == n
    assert rows.ranks.max() > 4  # some contexts were cut
