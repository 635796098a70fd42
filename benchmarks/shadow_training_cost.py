"""Why K shadows trained as one vmap cost far more than K times one model on this CPU.

    python benchmarks/shadow_training_cost.py [--shadows 32] [--epochs 3] [--repeats 20]
        [--out benchmarks/results/shadow_training_cost.json]

On the privacy audit's data and model (`experiments/configs/bpr_ml-100k.yaml`: ML-100K, BPR
64-d, Adam, batch 2048, all 80 225 training rows in every shadow), side by side in one process:

1. the audit's K shadows trained for `--epochs` epochs (compiled beforehand) in vmapped groups
   of K, 8, 4 and 1 shadows, one group after another (`ShadowSet.group_size`; a group of 1 runs
   the unvmapped epoch), and one model alone: seconds per epoch for all K;
2. the pieces of one vmapped training step for K = 1, 8, 16, 32 models on one random batch
   (median of `--repeats` calls, compiled beforehand): the loss alone (three embedding
   gathers, the dot products, log-sigmoid), its gradient (plus the scatter-adds), the Adam
   update, and the where-select over parameters and Adam state that keeps a padding step
   from moving a shadow (`unlearn/exact/shards.py`).

Writes the JSON with the provenance block (`benchmarks/provenance.py`) and the 1-minute load
average before and after.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from provenance import provenance  # benchmarks/ is this script's folder

REPO_ROOT = Path(__file__).resolve().parents[1]

from erase_jax.audit.assignment import assign_states, trained_mask  # noqa: E402
from erase_jax.audit.shadows import ShadowSet, shadow_seeds, training_rows  # noqa: E402
from erase_jax.config import load_config  # noqa: E402
from erase_jax.run import build_experiment  # noqa: E402
from erase_jax.train import make_optimizer  # noqa: E402

CONFIG = REPO_ROOT / "experiments" / "configs" / "bpr_ml-100k.yaml"
GROUPS = (None, 8, 4, 1)  # None: all K at once
STEP_SIZES = (1, 8, 16, 32)


def median_seconds(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def step_pieces(model, context, config, n_users: int, n_items: int, k: int, repeats: int) -> dict:
    """Median seconds of each piece of one vmapped training step of k models."""
    params = jax.vmap(lambda key: model.init(key, context))(jax.random.split(jax.random.PRNGKey(0), k))
    optimizer = make_optimizer(config, 1)
    opt_state = jax.vmap(optimizer.init)(params)
    rng = np.random.default_rng(0)
    size = (k, config.batch_size)
    batch = {"users": jnp.asarray(rng.integers(0, n_users, size), jnp.int32),
             "pos": jnp.asarray(rng.integers(0, n_items, size), jnp.int32),
             "neg": jnp.asarray(rng.integers(0, n_items, size), jnp.int32), "weight": jnp.ones(size)}
    loss = jax.jit(jax.vmap(lambda p, b: model.loss(p, context, b, None)))
    grad = jax.jit(jax.vmap(lambda p, b: jax.grad(model.loss)(p, context, b, None)))
    grads = grad(params, batch)
    adam = jax.jit(jax.vmap(lambda g, o, p: optax.apply_updates(p, optimizer.update(g, o, p)[0])))
    select = jax.jit(jax.vmap(lambda keep, new, old: jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, old)))
    both = (params, opt_state)
    return {"k": k, "loss_seconds": median_seconds(loss, (params, batch), repeats),
            "gradient_seconds": median_seconds(grad, (params, batch), repeats),
            "adam_seconds": median_seconds(adam, (grads, opt_state, params), repeats),
            "select_seconds": median_seconds(select, (jnp.ones(k, bool), both, both), repeats),
            "gathered_megabytes": 3 * k * config.batch_size * model.embedding_size * 4 / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shadows", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results" / "shadow_training_cost.json"))
    args = parser.parse_args()
    experiment = build_experiment(load_config(str(CONFIG), [f"train.epochs={args.epochs}"]))
    _, users, items = training_rows(experiment)
    inter = experiment.data.interactions
    no_audited = np.zeros(0, np.int64)
    base = ShadowSet(experiment.model, experiment.context, experiment.config.train, inter.n_users, inter.n_items, users,
                     items, no_audited, assign_states(args.shadows, 0, 0), shadow_seeds(0, args.shadows))
    kept = trained_mask(base.states)
    load = {"before": os.getloadavg()[0]}
    training = []
    for group in GROUPS:
        shadow_set = dataclasses.replace(base, group_size=group)
        _, record = shadow_set.train(kept)
        training.append({**record, "seconds_per_epoch_all_shadows": record["train_seconds"] / args.epochs})
        print(training[-1], flush=True)
    _, one = base.train(kept, shadows=np.array([0]))
    one["seconds_per_epoch"] = one["train_seconds"] / args.epochs
    print("one model", one, flush=True)
    pieces = []
    for k in STEP_SIZES:
        pieces.append(step_pieces(experiment.model, experiment.context, experiment.config.train, inter.n_users, inter.n_items,
                                  k, args.repeats))
        print(pieces[-1], flush=True)
    load["after"] = os.getloadavg()[0]
    record = {
        "provenance": provenance(config={"run": os.path.relpath(CONFIG, REPO_ROOT), "shadows": args.shadows,
                                         "epochs": args.epochs, "repeats": args.repeats, "groups": list(GROUPS),
                                         "step_sizes": list(STEP_SIZES)}),
        "training_rows": len(users),
        "shadow_training": training,
        "one_model": one,
        "step_pieces": pieces,
        "load_average_1min": load,
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
