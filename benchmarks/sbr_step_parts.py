"""Where an `all_positions` training step of a causal sequence model spends its time.

On the first batch of the ml-100k epoch (`experiments/configs/<model>_ml-100k-seq.yaml` with
`sequence.objective: all_positions`, batch 256 chunk rows of width 50), each part jitted on its
own and timed after compilation (median of `--repeats` calls, wall and process CPU seconds):

* `step`: loss, gradient and Adam update, as one scan step of `make_train_epoch` runs them;
* `loss_and_grad`: the model's loss and its gradient;
* `encoder`: `represent_positions` [n, L, d] and its gradient (a random cotangent);
* `recurrence` (GRU4Rec): the GRU scan over precomputed input projections and its gradient;
* `output`: the scores of every position against every item, log-softmax, the targets' negative
  log-likelihood and its gradient with respect to the representation and the item embedding;
* `optimizer`: the Adam update alone;
* `batch`: drawing the epoch's batches on device (`batcher.epoch`) divided by their number.

The parts overlap (step = loss_and_grad + optimizer; loss_and_grad ~ encoder + output); their
sum is not the step. Same process, same load for every part.

    python benchmarks/sbr_step_parts.py --models GRU4Rec SASRec --out benchmarks/results/sbr_step_parts_ml-100k.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from train_speed import result_header, write_result

from erase_jax.config import load_config
from erase_jax.models.layers import gru_recurrence
from erase_jax.run import build_experiment
from erase_jax.train import init_state, make_optimizer

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def timed(fn, args, repeats: int) -> dict:
    """Median wall and CPU seconds of `fn(*args)` over `repeats` calls after one compiling call."""
    jax.block_until_ready(fn(*args))
    wall, cpu = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return {"wall_seconds": statistics.median(wall), "cpu_seconds": statistics.median(cpu)}


def parts(model_name: str, repeats: int, overrides: list[str]) -> dict:
    config = load_config(CONFIGS / f"{model_name.lower()}_ml-100k-seq.yaml", [*overrides, "sequence.objective=all_positions"])
    experiment = build_experiment(config)
    model, context = experiment.model, experiment.context
    batcher = experiment.task.batcher(config, experiment.examples.train)
    optimizer = make_optimizer(config.train, batcher.n_batches)
    state = init_state(model, context, optimizer, config.seed)
    params, key = state.params, jax.random.PRNGKey(0)
    order = jnp.asarray(batcher.shuffled_order(config.seed, 1))
    batches = jax.jit(batcher.epoch)(key, order)
    batch = jax.tree.map(lambda x: x[0], batches)
    items, lengths = batch["items"], batch["lengths"]

    loss_and_grad = jax.jit(jax.value_and_grad(lambda p, b, k: model.loss(p, context, b, k)))

    @jax.jit
    def step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(model.loss)(params, context, batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    representation = model.represent_positions(params, context, items, lengths, key)
    cotangent = jax.random.normal(jax.random.PRNGKey(1), representation.shape)
    # every array is an argument, not a closed-over constant XLA would fold at compile time
    encoder = jax.jit(jax.grad(lambda p, items, lengths, k, cotangent: jnp.sum(
        model.represent_positions(p, context, items, lengths, k) * cotangent)))

    def output_nll(representation, embedding, targets, weight):
        log_p = jax.nn.log_softmax(representation @ embedding[:-1].T, axis=-1)
        nll = -jnp.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
        return jnp.sum(weight * nll) / jnp.sum(weight)

    output = jax.jit(jax.grad(output_nll, argnums=(0, 1)))
    embedding = params["params"]["item_embedding"]
    grads = jax.grad(lambda p: model.loss(p, context, batch, key))(params)
    n_batches = batcher.n_batches
    epoch_batches = jax.jit(batcher.epoch)
    record = {
        "batch_shape": list(items.shape), "batches_per_epoch": n_batches, "n_items": context.n_items,
        "step": timed(step, (params, state.opt_state, batch, key), repeats),
        "loss_and_grad": timed(loss_and_grad, (params, batch, key), repeats),
        "encoder": timed(encoder, (params, items, lengths, key, cotangent), repeats),
        "output": timed(output, (representation, embedding, batch["targets"], batch["weight"]), repeats),
        "optimizer": timed(jax.jit(optimizer.update), (grads, state.opt_state, params), repeats),
        "batch": {k: v / n_batches for k, v in timed(epoch_batches, (key, order), repeats).items()},
    }
    if model_name == "GRU4Rec":
        net = params["params"]
        projected = jnp.einsum("nld,dk->lnk", embedding[items], net["w_ih"])
        zeros = jnp.zeros(3 * model.hidden_size)
        states_cotangent = jax.random.normal(jax.random.PRNGKey(2), (items.shape[1], items.shape[0], model.hidden_size))

        def recurrence(w_hh, projected, states_cotangent):
            return jnp.sum(gru_recurrence(w_hh, zeros, projected, model.hidden_size) * states_cotangent)

        record["recurrence"] = timed(jax.jit(jax.grad(recurrence, argnums=(0, 1))),
                                     (net["w_hh"], projected, states_cotangent), repeats)
    for name, part in record.items():
        if isinstance(part, dict):
            print(f"[{model_name}] {name}: {part['wall_seconds'] * 1e3:.1f} ms wall, {part['cpu_seconds'] * 1e3:.1f} ms CPU",
                  file=sys.stderr, flush=True)
    return record


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["GRU4Rec", "SASRec"], choices=("GRU4Rec", "SASRec"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    result = result_header(config=vars(args), models={})
    for name in args.models:
        result["models"][name] = parts(name, args.repeats, args.overrides)
        write_result(dict(result), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
