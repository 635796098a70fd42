"""Scoring next-basket users by id (the protocol's exposure, agreement and forgetting measures):
each chunk at its bucket's width (`erase_jax.evaluators.basket_queries`) vs every user at the
stored width (what the code did before), side by side on a trained model.

    python benchmarks/nbr_user_queries.py --run /work/runs/nbr_tafeng/dnntsp_tafeng \
        [--users 1024] [--repeats 3] [--out benchmarks/results/nbr_user_queries.json]

Both score the same users (a seeded sample of the users with a test history, in id order, as
the evaluators ask) with the run's best parameters; the two score matrices are compared first
(max abs difference, top-20 agreement). Times: one compile call each, then `--repeats` timed
calls alternating the two, median reported; `jax.block_until_ready` on the scores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

from erase_jax.evaluators import basket_queries  # noqa: E402
from erase_jax.run import load_run  # noqa: E402


def full_width_scores(model, params, context, users):
    """Every user at the stored width, in chunks of QUERY_CELLS (the code before bucketing)."""
    inner, histories = context
    n, width = users.shape[0], histories["items"].shape[1]
    steps = min(width, getattr(inner, "max_history_baskets", width))
    chunk = max(1, min(n, basket_queries.QUERY_CELLS // (width * steps)))
    n_chunks = -(-n // chunk)
    padded = jnp.pad(users, (0, n_chunks * chunk - n)).reshape(n_chunks, chunk)
    score = lambda ids: model.logits(params, inner, {name: values[ids] for name, values in histories.items()}, None, steps)
    return jax.lax.map(score, padded).reshape(n_chunks * chunk, -1)[:n]


def timed(fn, *args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a trained NBR run folder (erase-jax train --out ...)")
    parser.add_argument("--users", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/nbr_user_queries.json")
    args = parser.parse_args()

    experiment, params = load_run(args.run)
    view = experiment.task.request_rows(experiment).evaluation(experiment.data)
    queries, params, context = view.by_user(experiment.model, params, experiment.context)
    scorable = view.scorable(np.arange(experiment.data.interactions.n_users))
    users = np.sort(np.random.default_rng(args.seed).choice(scorable, min(args.users, len(scorable)), replace=False))
    users = jnp.asarray(users, jnp.int32)
    bucketed = jax.jit(queries.scores)
    full = jax.jit(lambda p, c, u: full_width_scores(experiment.model, p, c, u))
    compile_seconds = {"bucketed": timed(bucketed, params, context, {"users": users}),
                       "full_width": timed(full, params, context, users)}
    a, b = np.asarray(bucketed(params, context, {"users": users})), np.asarray(full(params, context, users))
    top_a, top_b = np.argsort(-a, axis=1)[:, :20], np.argsort(-b, axis=1)[:, :20]
    same_top = float(np.mean([len(set(x) & set(y)) / 20 for x, y in zip(top_a, top_b, strict=True)]))
    seconds = {"bucketed": [], "full_width": []}
    for _ in range(args.repeats):
        seconds["full_width"].append(timed(full, params, context, users))
        seconds["bucketed"].append(timed(bucketed, params, context, {"users": users}))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    histories = context[1]
    lengths = np.asarray(histories["lengths"])[np.asarray(users)]
    record = {
        "provenance": provenance(config={"run": args.run, "model": experiment.config.model,
                                         "dataset": experiment.config.data.dataset}),
        "users": int(users.shape[0]), "stored_width": int(histories["items"].shape[1]),
        "history_length_percentiles_50_90_100": [float(x) for x in np.percentile(lengths, [50, 90, 100])],
        "max_abs_score_difference": float(np.max(np.abs(a - b))), "top20_overlap": same_top,
        "compile_seconds": compile_seconds, "seconds": seconds, "median_seconds": median,
        "speedup": median["full_width"] / median["bucketed"],
        "load_average_end": os.getloadavg(),
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("users", "median_seconds", "speedup", "max_abs_score_difference", "top20_overlap")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
