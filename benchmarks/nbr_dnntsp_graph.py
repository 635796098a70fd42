"""DNNTSP's graph stage on Ta-Feng-like batches: dense same-basket products vs an edge list.

Both compute the two weighted GCN layers (with LayerNorm and ReLU) of `erase_jax.models.nbr.dnntsp`
from a batch, graph construction included, forward and backward (gradient of the sum of the
outputs with respect to the GCN weights and the node embeddings), jitted:

    dense   the model's formulation: per example a [W, W] x [W, d] product over the same-basket
            occurrence pairs, each occurrence's message segment-summed to its (node, step)
    edges   a jraph-style GraphsTuple (nodes = the (node, step) pairs, one edge per same-basket
            occurrence pair, padded to the static budget of W^2 edges per example that [b, W]
            allows): gather the senders' states, scale by the edge weight, segment-sum to receivers

The two are checked equal before timing. Also timed: the whole model's loss and gradient (dense).
Batches: b users, W occurrences each at most, 12k items drawn by a Zipf-like popularity, basket
sizes geometric (mean 6.27, at most 102), at most 48 baskets (Ta-Feng: median 5 baskets,
mean basket 6.27). Times: median of `--repeats` calls after one compile call.

    python benchmarks/nbr_dnntsp_graph.py --out benchmarks/results/nbr_dnntsp_graph.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

from erase_jax.models import build_model  # noqa: E402
from erase_jax.models.layers import dense  # noqa: E402
from erase_jax.models.nbr.base import BasketShape  # noqa: E402
from erase_jax.models.nbr.dnntsp import cooccurrence_graph  # noqa: E402

N_ITEMS, H, D = 12_000, 48, 32


def tafeng_like_batch(b: int, width: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(N_ITEMS) + 10.0)
    popularity /= popularity.sum()
    items = np.full((b, width), N_ITEMS, np.int32)
    baskets = np.full((b, width), H, np.int32)
    lengths, n_baskets = np.zeros(b, np.int32), np.zeros(b, np.int32)
    for r in range(b):
        flat = []
        while len(flat) < width and n_baskets[r] < H:
            size = min(rng.geometric(1 / 6.27), 102, width - len(flat))
            basket = np.sort(rng.choice(N_ITEMS, size, replace=False, p=popularity))
            flat += [(int(i), int(n_baskets[r])) for i in basket]
            n_baskets[r] += 1
        lengths[r] = len(flat)
        items[r, : len(flat)] = [i for i, _ in flat]
        baskets[r, : len(flat)] = [t for _, t in flat]
    targets = rng.choice(N_ITEMS, (b, 8)).astype(np.int32)
    return {"users": jnp.zeros(b, jnp.int32), "items": jnp.asarray(items), "baskets": jnp.asarray(baskets),
            "lengths": jnp.asarray(lengths), "n_baskets": jnp.asarray(n_baskets), "targets": jnp.asarray(targets),
            "weight": jnp.ones(b)}


def layer_norm_relu(x):
    mean = x.mean(-1, keepdims=True)
    return jax.nn.relu((x - mean) / jnp.sqrt(jnp.square(x - mean).mean(-1, keepdims=True) + 1e-5))


def gcn_stage(variant: str):
    """(params, batch) -> sum of the second layer's outputs, for `variant` dense or edges."""

    def run(params, batch):
        items = batch["items"]
        b, width = items.shape
        n_steps = min(width, H)
        g = cooccurrence_graph(items, batch["baskets"], batch["lengths"], batch["n_baskets"], N_ITEMS, n_steps)
        rows = jnp.arange(b)[:, None]
        hidden = params["embedding"][g.node_items]  # [b, V, d]
        if variant == "edges":  # GraphsTuple fields: senders / receivers over the b * V * T (node, step) nodes
            node_step = ((rows * width + g.alias) * n_steps + g.step)
            senders = jnp.broadcast_to(node_step[:, None, :], (b, width, width)).reshape(-1)
            receivers = jnp.broadcast_to(node_step[:, :, None], (b, width, width)).reshape(-1)
            edge_weight = g.pair_weight.reshape(-1, 1)
        for layer in range(2):
            static = hidden.ndim == 3
            own = (hidden[:, :, None, :] if static else hidden) * g.self_weight[:, None, :, None]
            if variant == "dense":
                at = hidden[rows, g.alias] if static else hidden[rows, g.alias, g.step]
                messages = jnp.einsum("bop,bpd->bod", g.pair_weight, at).reshape(-1, D)
                segments = ((rows * width + g.alias) * n_steps + g.step).reshape(-1)
            else:
                states = hidden.reshape(-1, D)
                messages = edge_weight * states[senders // n_steps if static else senders]
                segments = receivers
            neighbours = jax.ops.segment_sum(messages, segments, b * width * n_steps).reshape(b, width, n_steps, D)
            hidden = layer_norm_relu(dense(neighbours + own, params[f"w{layer}"]) + params[f"b{layer}"])
        return jnp.sum(hidden * g.node_mask[:, :, None, None])

    return run


def timed(fn, args, repeats: int) -> dict:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - started
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn(*args))
        seconds.append(time.perf_counter() - started)
    return {"median_seconds": statistics.median(seconds), "seconds": seconds, "first_call_seconds": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="64x32,64x128,64x512,16x512", help="b x W per case")
    parser.add_argument("--edges-max-pairs", type=int, default=4_500_000, help="skip the edge list beyond b W^2 edges")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    key = jax.random.PRNGKey(0)
    keys = jax.random.split(key, 3)
    gcn_params = {"embedding": 0.02 * jax.random.normal(keys[0], (N_ITEMS + 1, D)),
                  "w0": jax.random.normal(keys[1], (D, D)) / np.sqrt(D), "b0": jnp.zeros(D),
                  "w1": jax.random.normal(keys[2], (D, D)) / np.sqrt(D), "b1": jnp.zeros(D)}
    model, context = build_model("DNNTSP"), BasketShape(N_ITEMS, H)
    model_params = model.init(key, context)
    model_step = jax.jit(jax.value_and_grad(lambda p, batch: model.loss(p, context, batch, None)))
    rows = []
    for case in args.cases.split(","):
        b, width = (int(x) for x in case.split("x"))
        batch = tafeng_like_batch(b, width, seed=width)
        row = {"b": b, "W": width, "T": min(width, H), "mean_occurrences": float(batch["lengths"].mean()),
               "mean_baskets": float(batch["n_baskets"].mean()), "edge_budget": b * width * width}
        steps = {v: jax.jit(jax.value_and_grad(gcn_stage(v))) for v in ("dense", "edges")}
        dense_value = steps["dense"](gcn_params, batch)[0]
        row["gcn_dense"] = timed(steps["dense"], (gcn_params, batch), args.repeats)
        if b * width * width <= args.edges_max_pairs:
            edge_value = steps["edges"](gcn_params, batch)[0]
            row["gcn_values_relative_difference"] = float(abs(edge_value - dense_value) / abs(dense_value))
            assert row["gcn_values_relative_difference"] < 1e-4, row
            row["gcn_edges"] = timed(steps["edges"], (gcn_params, batch), args.repeats)
            row["edges_over_dense"] = row["gcn_edges"]["median_seconds"] / row["gcn_dense"]["median_seconds"]
        row["model_loss_and_grad_dense"] = timed(model_step, (model_params, batch), args.repeats)
        row["load_average_after"] = os.getloadavg()
        print(json.dumps({k: (v["median_seconds"] if isinstance(v, dict) else v) for k, v in row.items()}), flush=True)
        rows.append(row)
    record = {
        "provenance": provenance(config=vars(args) | {"out": str(args.out)}),
        "what": "DNNTSP GCN stage (graph build + 2 weighted GCN layers, forward and backward): dense same-basket "
                "occurrence products vs a GraphsTuple-style edge list; and the whole model's loss+grad (dense)",
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
