"""RecEraser and SISA on the RecEraser paper's MovieLens-1M split, BPR, K = 10 shards.

    python experiments/receraser_ml1m.py [--config experiments/configs/bpr_ml-1m-receraser-shards.yaml]
                                         [--methods experiments/configs/bpr_ml-1m-receraser-shards-methods.yaml]
                                         [--requests 3] [--out experiments/results] [--tag cpu]

1. Full-data BPR with the configuration's settings (`given` split: test as in test.txt, a
   validation carve from train.txt for early stopping). Its wall time, compilation included,
   is the cost of a full retrain; its embeddings are the pre-trained ones InBP partitions on.
2. RecEraser: InBP partition (K = 10), 10 BPR submodels trained as one vmap with per-shard
   early stopping, attention aggregation trained on all training data (method options from
   `--methods`). Also reported: the same submodels combined by the mean of scores, and each
   submodel alone.
3. SISA: random partition by interaction, 10 submodels, mean of scores.
4. Unlearning requests against RecEraser: each removes one random training interaction, so
   one shard is retrained from scratch, then the aggregator (warm-started when the options
   say so); the first request compiles the one-shard epoch, later ones reuse it. A request's
   cost is compared with the full retrain measured in the same run, so a machine's load
   affects both.

`--select-on-test` runs the public RecEraser code's protocol instead, for comparison with the
paper's numbers only: every model trains on all of train.txt (no validation carve) and every
early stopping (the full BPR, each shard, the aggregator) validates on test.txt, so the test
numbers are selected on test and optimistic. The default selects on the validation carve.

Writes `receraser_ml-1m[_TAG].json` (everything measured) and `.md` (tables) under `--out`.
Each phase records the 1-minute load average before and after it (the machine may be shared).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np
import yaml

from erase_jax.batching.cf import CFBatcher
from erase_jax.config import load_config, to_dict
from erase_jax.data.splits import Split
from erase_jax.evaluators.cf_ranking import evaluate_cf
from erase_jax.run import build_experiment
from erase_jax.train import best_params, fit
from erase_jax.unlearn.exact.aggregators import MeanOfScores
from erase_jax.unlearn.exact.shards import shard_slice
from erase_jax.unlearn.methods.base import build_method

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

DEFAULT_CONFIG = REPO_ROOT / "experiments" / "configs" / "bpr_ml-1m-receraser-shards.yaml"
DEFAULT_METHODS = REPO_ROOT / "experiments" / "configs" / "bpr_ml-1m-receraser-shards-methods.yaml"
PAPER = {"retrain": 0.2389, "sisa": 0.1737, "receraser": 0.2254}  # Table 3, BPR, Recall@20


def selecting_on_test(experiment):
    """The experiment under the public code's protocol: no validation carve (all of train.txt
    trains) and test.txt as the validation split, so every early stopping selects on test."""
    split = experiment.data.split
    if len(split.valid):
        raise ValueError("selecting on test needs the config's data.valid_ratio at 0 (all of train.txt trains)")
    data = dataclasses.replace(experiment.data, split=Split(split.train, split.test, split.test))
    return dataclasses.replace(experiment, data=data, examples=dataclasses.replace(experiment.examples, valid=experiment.examples.test))


def load() -> float:
    return os.getloadavg()[0]


def evaluate(model, params, context, eval_set, config) -> dict:
    return evaluate_cf(model, params, context, eval_set, config.eval.topk, config.eval.metrics, config.eval.block_size)


def train_full(experiment) -> dict:
    config = experiment.config
    batcher = CFBatcher.build(experiment.examples.train, config.train.batch_size, sampler=config.train.sampler)
    valid = experiment.examples.valid
    load_before, started = load(), time.perf_counter()
    result = fit(experiment.model, experiment.context, batcher,
                 lambda p: evaluate(experiment.model, p, experiment.context, valid, config), config.train, config.seed)
    params = best_params(result)
    jax.block_until_ready(params)
    wall = time.perf_counter() - started
    return {
        "params": params,
        "wall_seconds": wall,
        "compile_seconds": result.record["compile_seconds"],
        "epochs": len(result.record["epoch_loss"]),
        "best_epoch": int(result.state.best_epoch),
        "test": evaluate(experiment.model, params, experiment.context, experiment.examples.test, config),
        "load_before": load_before,
        "load_after": load(),
    }


def cached_full_training(experiment, cache: Path) -> dict:
    """`train_full`, or its saved result when the cache holds one for the same configuration."""
    summary_path, params_path = cache / "full_bpr.json", cache / "full_bpr.npz"
    wanted = to_dict(experiment.config)
    if summary_path.exists() and params_path.exists():
        saved = json.loads(summary_path.read_text())
        if saved["config"] == wanted:
            like = experiment.model.init(jax.random.PRNGKey(0), experiment.context)
            arrays = np.load(params_path)
            leaves = [arrays[f"leaf{i}"] for i in range(len(arrays.files))]
            return {**saved["full"], "params": jax.tree.unflatten(jax.tree.structure(like), leaves), "cached": True}
    full = train_full(experiment)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(params_path, **{f"leaf{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(full["params"]))})
    public = {k: v for k, v in full.items() if k != "params"}
    summary_path.write_text(json.dumps({"config": wanted, "full": public}, indent=2))
    return full


def ensemble(experiment, pretrained, method_name: str, options: dict) -> dict:
    method = build_method(method_name, **options)
    load_before, started = load(), time.perf_counter()
    params, state, record = method.build_ensemble(experiment.model, pretrained, experiment)
    jax.block_until_ready(params)
    wall = time.perf_counter() - started
    scoring = method.scorer(experiment.model, params, experiment)
    out = {
        "method": method_name,
        "options": options,
        "wall_seconds": wall,
        "record": record,
        "test": evaluate(*scoring, experiment.examples.test, experiment.config),
        "valid": evaluate(*scoring, experiment.examples.valid, experiment.config),
        "load_before": load_before,
        "load_after": load(),
    }
    context = scoring[2]
    if method.aggregation != "mean":
        out["test_mean_of_scores"] = evaluate(MeanOfScores(), {}, context, experiment.examples.test, experiment.config)
    out["test_each_shard"] = [
        evaluate(experiment.model, shard_slice(params["shards"], s), experiment.context, experiment.examples.test, experiment.config)
        for s in range(method.n_shards)
    ]
    out["_method"], out["_params"], out["_state"] = method, params, state
    return out


def requests(experiment, built: dict, n_requests: int, seed: int) -> list[dict]:
    """Removes one random training interaction per request, timing each."""
    method, params, state = built["_method"], built["_params"], built["_state"]
    rng = np.random.default_rng([seed, 404])
    train_rows = experiment.data.split.train
    rows = []
    for r in range(n_requests):
        row = int(rng.choice(train_rows))
        load_before, started = load(), time.perf_counter()
        params, state, diagnostics = method.forget_rows(experiment.model, params, state, experiment, np.array([row]))
        jax.block_until_ready(params)
        seconds = time.perf_counter() - started
        scoring = method.scorer(experiment.model, params, experiment)
        rows.append({"request": r, "removed_row": row, "seconds": seconds,
                     "test_after": evaluate(*scoring, experiment.examples.test, experiment.config),
                     "valid_after": evaluate(*scoring, experiment.examples.valid, experiment.config),
                     "load_before": load_before, "load_after": load(), **diagnostics})
        print(f"request {r}: {seconds:.1f} s (shard {diagnostics['shard_seconds']:.1f} s, aggregator "
              f"{diagnostics['aggregator_seconds']:.1f} s), shards {diagnostics['retrained_shards']}", flush=True)
    return rows


def markdown(results: dict) -> str:
    full, rec, sisa = results["full_bpr"], results["receraser"], results["sisa"]
    n_shards = len(rec["test_each_shard"])
    lines = [
        f"# RecEraser and SISA on ML-1M (RecEraser split), BPR, K = {n_shards}",
        "",
        f"Measured {results['date']} with `python experiments/receraser_ml1m.py{results['arguments']}` on "
        f"{results['machine']} (1-minute load averages per phase below). Configuration: "
        f"`{results['config_file']}`, method options `{results['methods_file']}`.",
        "",
        *(["**Selected on test** (`--select-on-test`, the public code's protocol): every model trained on all of "
           "train.txt and early-stopped on test.txt, so the test numbers below are optimistic; the validation "
           "column is test as well.", ""] if results.get("selected_on_test") else []),
        "## Test quality (full ranking, train and valid items masked)",
        "",
        "| model | valid Recall@20 | test Recall@20 | test NDCG@20 | paper Recall@20 |",
        "|---|---|---|---|---|",
        f"| BPR, all data (retrain) | | {full['test']['recall@20']:.4f} | {full['test']['ndcg@20']:.4f} | {PAPER['retrain']} |",
        f"| RecEraser: InBP + attention | {rec['valid']['recall@20']:.4f} | {rec['test']['recall@20']:.4f} | "
        f"{rec['test']['ndcg@20']:.4f} | {PAPER['receraser']} |",
        f"| InBP shards + mean of scores | | {rec['test_mean_of_scores']['recall@20']:.4f} | "
        f"{rec['test_mean_of_scores']['ndcg@20']:.4f} | |",
        f"| SISA: random + mean of scores | {sisa['valid']['recall@20']:.4f} | {sisa['test']['recall@20']:.4f} | "
        f"{sisa['test']['ndcg@20']:.4f} | {PAPER['sisa']} |",
        f"| one InBP submodel (mean over {n_shards}) | | {np.mean([s['recall@20'] for s in rec['test_each_shard']]):.4f} | "
        f"{np.mean([s['ndcg@20'] for s in rec['test_each_shard']]):.4f} | |",
        f"| one random-shard submodel (mean over {n_shards}) | | {np.mean([s['recall@20'] for s in sisa['test_each_shard']]):.4f} | "
        f"{np.mean([s['ndcg@20'] for s in sisa['test_each_shard']]):.4f} | |",
        "",
        "NDCG is RecBole-style (not comparable with the paper's evaluator).",
        "",
        "## Partitions",
        "",
        f"- InBP: capacity t = {rec['record']['capacity_units']} interactions, {rec['record']['rounds']} rounds, "
        f"{rec['record']['partition_seconds']:.1f} s; shard sizes {rec['record']['shard_sizes']}",
        f"- random: shard sizes {sisa['record']['shard_sizes']}",
        "",
        "## Time",
        "",
        "| what | seconds | load before / after |",
        "|---|---|---|",
        f"| full BPR training (= full retrain; {full['epochs']} epochs, compile {full['compile_seconds']:.1f} s) | "
        f"{full['wall_seconds']:.1f} | {full['load_before']:.1f} / {full['load_after']:.1f} |",
        f"| RecEraser ensemble: partition + {n_shards} shards (one vmap) + aggregator "
        f"({rec['record']['aggregator']['epochs'][0]} epochs, {rec['record']['aggregator']['train_seconds']:.1f} s) "
        f"+ compiling what requests run ({rec['record'].get('request_compile_seconds', 0.0):.1f} s) | "
        f"{rec['wall_seconds']:.1f} | {rec['load_before']:.1f} / {rec['load_after']:.1f} |",
        f"| SISA ensemble: partition + {n_shards} shards (one vmap) | {sisa['wall_seconds']:.1f} | "
        f"{sisa['load_before']:.1f} / {sisa['load_after']:.1f} |",
    ]
    for r in results["requests"]:
        lines.append(
            f"| RecEraser request {r['request']} (shard {r['retrained_shards']}: {r['shard_seconds']:.1f} s, {r['shard_epochs']} epochs; "
            f"aggregator {r['aggregator_seconds']:.1f} s, {r['aggregator_epochs']} epochs; test Recall@20 after "
            f"{r['test_after']['recall@20']:.4f}) | {r['seconds']:.1f} | {r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    if results["requests"]:
        ratios = [r["seconds"] / full["wall_seconds"] for r in results["requests"]]
        lines += ["", f"Request / full retrain: {', '.join(f'{x:.3f}' for x in ratios)} (target <= 0.2); the one-shard "
                      "epoch and the warm-started aggregator's were compiled with the ensemble."]
    lines += ["", "Shard epochs (per shard, early stopping): "
              f"RecEraser {rec['record']['shards']['epochs']}, SISA {sisa['record']['shards']['epochs']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--methods", default=str(DEFAULT_METHODS), help="YAML with the receraser and sisa options")
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--tag", default="", help="suffix of the result files (e.g. the machine)")
    parser.add_argument("--out", default=str(REPO_ROOT / "experiments" / "results"))
    parser.add_argument("--set", action="append", default=[], help="config overrides key=value")
    parser.add_argument("--cache", help="folder keeping the full-data BPR (parameters and measurements) between runs "
                                         "(default runs/receraser_ml1m[_select_on_test])")
    parser.add_argument("--select-on-test", action="store_true",
                        help="the public code's protocol, for comparison with the paper only: train on all of "
                             "train.txt and early-stop everything on test.txt (test numbers then optimistic)")
    args = parser.parse_args()
    config = load_config(args.config, [*args.set, *(["data.valid_ratio=0.0"] if args.select_on_test else [])])
    experiment = build_experiment(config)
    if args.select_on_test:
        experiment = selecting_on_test(experiment)
    methods = yaml.safe_load(Path(args.methods).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "receraser_ml-1m" + (f"_{args.tag}" if args.tag else "")
    device = jax.devices()[0]
    results = {
        "provenance": provenance(config={"config": os.path.relpath(args.config, REPO_ROOT), "overrides": args.set,
                                         "methods": os.path.relpath(args.methods, REPO_ROOT)}),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__} on {device.platform} "
                   f"({getattr(device, 'device_kind', device.platform)})",
        "arguments": "".join(f" {a}" for a in sys.argv[1:]),
        "selected_on_test": args.select_on_test,
        "config_file": os.path.relpath(args.config, REPO_ROOT),
        "methods_file": os.path.relpath(args.methods, REPO_ROOT),
        "methods": methods,
        "config": to_dict(config),
        "data": {"n_train": len(experiment.data.split.train), "n_valid": len(experiment.data.split.valid),
                 "n_test": len(experiment.data.split.test)},
    }

    def save():
        public = {k: ({kk: vv for kk, vv in v.items() if not kk.startswith("_")} if isinstance(v, dict) else v)
                  for k, v in results.items()}
        (out / f"{stem}.json").write_text(json.dumps(public, indent=2, default=lambda value: np.asarray(value).tolist()))

    print("full-data BPR", flush=True)
    cache = args.cache or REPO_ROOT / "runs" / ("receraser_ml1m_select_on_test" if args.select_on_test else "receraser_ml1m")
    full = cached_full_training(experiment, Path(cache))
    results["full_bpr"] = {k: v for k, v in full.items() if k != "params"}
    print(f"  test {full['test']}, {full['wall_seconds']:.0f} s", flush=True)
    save()
    print("RecEraser (InBP + attention)", flush=True)
    results["receraser"] = ensemble(experiment, full["params"], "receraser", methods["receraser"])
    print(f"  test {results['receraser']['test']}, {results['receraser']['wall_seconds']:.0f} s", flush=True)
    save()
    print("SISA (random + mean)", flush=True)
    results["sisa"] = ensemble(experiment, full["params"], "sisa", methods["sisa"])
    print(f"  test {results['sisa']['test']}, {results['sisa']['wall_seconds']:.0f} s", flush=True)
    save()
    results["requests"] = requests(experiment, results["receraser"], args.requests, config.seed)
    save()
    (out / f"{stem}.md").write_text(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
