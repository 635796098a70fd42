"""RecEraser with its InBP partition on WMF embeddings, as the paper pre-trains them (ML-1M, K = 10).

    python experiments/receraser_wmf_partition_ml1m.py [--set seed=3] [--negative-weight 0.2] [--l2 10]
                                                       [--sweeps 15] [--tag NAME]

The paper partitions on WMF embeddings; the project's default partitions on the trained BPR
run's. This measures the difference with everything else at the methods YAML's settings:
1. WMF (Hu, Koren, Volinsky, ICDM'08) on the RecEraser split's training rows (the same 2 %
   validation carve), by alternating least squares on the whole-data loss
       sum_{observed (u, v)} (1 - p_u . q_v)^2 + w0 * sum_{unobserved} (p_u . q_v)^2 + l2 * (|P|^2 + |Q|^2),
   each sweep solving every user's (then every item's) d x d system exactly. Its own valid and
   test Recall@20 are reported (the paper's WMF: test 0.2507).
2. RecEraser (`receraser` options of the methods YAML) built with `partition_embeddings` = the
   WMF embeddings; valid and test Recall@20 of the ensemble.
The BPR-partition ensemble of the same seed is in `receraser_ml-1m_cpu_users_fastneg[_seed3].md`.
Writes `receraser_wmf_partition_ml-1m[_TAG].json` under `--out`.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from erase_jax.config import load_config, to_dict
from erase_jax.evaluators.cf_ranking import evaluate_cf
from erase_jax.models.cf.bpr import BPR
from erase_jax.run import build_experiment
from erase_jax.unlearn.methods.base import build_method

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

CONFIG = REPO_ROOT / "experiments" / "configs" / "bpr_ml-1m-receraser-shards.yaml"
METHODS = REPO_ROOT / "experiments" / "configs" / "bpr_ml-1m-receraser-shards-methods.yaml"

ROWS_PER_CHUNK = 32768  # rows whose d x d outer products are summed at once (memory: chunk x d x d)


@functools.partial(jax.jit, static_argnames=("n_owners", "negative_weight", "l2"))
def als_half_sweep(other, owner_chunks, other_chunks, real_chunks, n_owners: int, negative_weight: float, l2: float):
    """Every owner's (user's or item's) exact least-squares embedding given the other side's.

    Owner x minimises sum_{own v} (1 - x.q_v)^2 + w0 sum_{other v} (x.q_v)^2 + l2 |x|^2, i.e.
    solves (w0 Q^T Q + (1 - w0) sum_{own v} q_v q_v^T + l2 I) x = sum_{own v} q_v.
    """
    d = other.shape[1]

    def add_chunk(c, sums):
        outer, rhs = sums
        rows = other[other_chunks[c]] * real_chunks[c][:, None]  # padding rows contribute 0
        outer = outer + jax.ops.segment_sum((1.0 - negative_weight) * rows[:, :, None] * rows[:, None, :], owner_chunks[c], n_owners)
        return outer, rhs + jax.ops.segment_sum(rows, owner_chunks[c], n_owners)

    outer, rhs = jax.lax.fori_loop(0, owner_chunks.shape[0], add_chunk, (jnp.zeros((n_owners, d, d)), jnp.zeros((n_owners, d))))
    systems = negative_weight * other.T @ other + outer + l2 * jnp.eye(d)
    return jnp.linalg.solve(systems, rhs[..., None])[..., 0]


def train_wmf(train, embedding_size: int, negative_weight: float, l2: float, sweeps: int, seed: int):
    """(user, item) embeddings of WMF by `sweeps` ALS sweeps from a small random start."""
    users, items = np.asarray(train.users), np.asarray(train.items)
    n_pad = -len(users) % ROWS_PER_CHUNK

    def chunked(values, fill):
        return jnp.asarray(np.concatenate([values, np.full(n_pad, fill, values.dtype)]).reshape(-1, ROWS_PER_CHUNK))

    user_chunks, item_chunks = chunked(users, 0), chunked(items, 0)
    real = chunked(np.ones(len(users), np.float32), 0)
    key = jax.random.PRNGKey(seed)
    user_emb = 0.01 * jax.random.normal(key, (train.n_users, embedding_size))
    item_emb = 0.01 * jax.random.normal(jax.random.fold_in(key, 1), (train.n_items, embedding_size))
    for _ in range(sweeps):
        user_emb = als_half_sweep(item_emb, user_chunks, item_chunks, real, train.n_users, negative_weight, l2)
        item_emb = als_half_sweep(user_emb, item_chunks, user_chunks, real, train.n_items, negative_weight, l2)
    return user_emb, item_emb


def as_mf_params(user_emb, item_emb):
    """The embeddings as BPR parameters, to score them with the project's full-ranking evaluation."""
    return {"params": {"user_embedding": {"embedding": user_emb}, "item_embedding": {"embedding": item_emb}}}


def evaluate(model, params, context, eval_set, config) -> dict:
    return evaluate_cf(model, params, context, eval_set, config.eval.topk, config.eval.metrics, config.eval.block_size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--methods", default=str(METHODS))
    parser.add_argument("--set", action="append", default=[], help="config overrides key=value")
    parser.add_argument("--negative-weight", type=float, default=0.2, help="w0, the weight of unobserved pairs")
    parser.add_argument("--l2", type=float, default=10.0)
    parser.add_argument("--sweeps", type=int, default=15)
    parser.add_argument("--tag", default="")
    parser.add_argument("--out", default=str(REPO_ROOT / "experiments" / "results"))
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    experiment = build_experiment(config)
    train = experiment.examples.train
    result = {"provenance": provenance(config={"config": args.config, "overrides": args.set, "methods": args.methods}),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "arguments": " ".join(sys.argv[1:]), "config": to_dict(config),
              "wmf": {"negative_weight": args.negative_weight, "l2": args.l2, "sweeps": args.sweeps}}

    started = time.perf_counter()
    user_emb, item_emb = train_wmf(train, config.model_params.get("embedding_size", 64), args.negative_weight, args.l2,
                                   args.sweeps, config.seed)
    jax.block_until_ready(item_emb)
    result["wmf"]["seconds"] = time.perf_counter() - started
    wmf_params, mf = as_mf_params(user_emb, item_emb), BPR(embedding_size=user_emb.shape[1])
    for split in ("valid", "test"):
        result["wmf"][split] = evaluate(mf, wmf_params, experiment.context, getattr(experiment.task, split), config)
    print(f"WMF: valid {result['wmf']['valid']['recall@20']:.4f}, test {result['wmf']['test']['recall@20']:.4f}", flush=True)

    options = yaml.safe_load(Path(args.methods).read_text())["receraser"]
    method = build_method("receraser", **options)
    started = time.perf_counter()
    # The partition needs only embeddings; the BPR run's parameters are not used when they are given.
    params, _, record = method.build_ensemble(experiment.model, None, experiment, partition_embeddings=(user_emb, item_emb))
    scoring = method.scorer(experiment.model, params, experiment)
    result["receraser"] = {
        "options": options, "wall_seconds": time.perf_counter() - started,
        "shard_sizes": record["shard_sizes"], "shard_epochs": record["shards"]["epochs"],
        "valid": evaluate(*scoring, experiment.examples.valid, config),
        "test": evaluate(*scoring, experiment.examples.test, config),
    }
    print(f"RecEraser on the WMF partition: valid {result['receraser']['valid']['recall@20']:.4f}, "
          f"test {result['receraser']['test']['recall@20']:.4f}", flush=True)
    out = Path(args.out) / ("receraser_wmf_partition_ml-1m" + (f"_{args.tag}" if args.tag else "") + ".json")
    out.write_text(json.dumps(result, indent=2, default=lambda value: np.asarray(value).tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
