"""Time one gradient, Hessian-vector product and Gauss-Newton product of LightGCN's loss.

    python benchmarks/lightgcn_curvature_products.py --run runs/benchmarks/LightGCN_ml-100k [--rows 2048]
        [--out benchmarks/results/lightgcn_curvature_products_ml-100k.json]

Compares the training path (graph product with its custom VJP: gradients, and HVPs only
reverse-over-reverse) with the forward-mode twin that the unlearning methods' curvature
products use (`LightGCN.forward_mode()`: forward-over-reverse HVPs, Gauss-Newton products).
Prints the median of `--repeats` timed calls after one compiling call, in milliseconds, and
writes them with the provenance (`provenance.py`) and load average to `--out` when given.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from provenance import provenance  # benchmarks/ is this script's folder

from erase_jax.run import load_run
from erase_jax.unlearn import influence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a trained LightGCN run folder")
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args()
    load_before = os.getloadavg()

    experiment, params = load_run(args.run)
    model, context, train = experiment.model, experiment.context, experiment.examples.train
    rng = np.random.default_rng(0)
    rows = rng.choice(len(train.users), args.rows, replace=False)
    batch = {
        "users": jnp.asarray(train.users[rows], jnp.int32),
        "pos": jnp.asarray(train.items[rows], jnp.int32),
        "neg": jnp.asarray(rng.integers(0, context.n_items, args.rows), jnp.int32),
        "weight": jnp.ones(args.rows, jnp.float32),
    }
    v = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), params)

    def loss(m):
        return lambda p: m.loss(p, context, batch, None)

    def reverse_over_reverse(p, v):
        inner = lambda q: sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(jax.grad(loss(model))(q)), jax.tree.leaves(v)))
        return jax.grad(inner)(p)

    cases = {
        "gradient, custom VJP": lambda p, v: jax.grad(loss(model))(p),
        "gradient, forward-mode twin": lambda p, v: jax.grad(loss(model.forward_mode()))(p),
        "HVP reverse-over-reverse, custom VJP": reverse_over_reverse,
        "HVP forward-over-reverse, twin": lambda p, v: influence.curvature_operator("hessian", model, context, batch, None, p)(v),
        "Gauss-Newton product, twin": lambda p, v: influence.curvature_operator("gauss_newton", model, context, batch, None, p)(v),
    }
    out = {}
    for name, fn in cases.items():
        compiled = jax.jit(fn)
        jax.block_until_ready(compiled(params, v))
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            jax.block_until_ready(compiled(params, v))
            times.append(time.perf_counter() - started)
        out[name] = round(1000 * float(np.median(times)), 2)
        print(f"{name}: {out[name]} ms")
    result = {"provenance": provenance(config=vars(args)), "load_average_start": load_before,
              "load_average_end": os.getloadavg(), "rows": args.rows, "repeats": args.repeats, "median_ms": out}
    print(json.dumps(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
