"""RecBole 1.2.1 (PyTorch, CPU) reference numbers for the erase-jax benchmarks.

The original ERASE benchmark trains its collaborative-filtering models with
RecBole. This script measures RecBole itself on this machine so that the JAX
implementation can be compared against it:

* ``--mode speed`` (default data set ``ml-1m-receraser``): for each model,
  the wall-clock time of ``trainer._train_epoch`` (data loading, negative
  sampling, forward, backward and optimiser step; for SGL also the per-epoch
  edge-dropout sub-graph construction) over a few epochs after warm-up ones,
  and of one full-ranking evaluation ``trainer.evaluate(test_data)`` over all
  test users (RecBole's full-sort evaluation, top-k with train/valid items
  masked).
* ``--mode quality`` (default data set ``ml-100k``): full training with early
  stopping on the validation split, then best-valid and test metrics
  (Recall/NDCG/Hit/MRR/Precision @10 and @20) plus the split sizes.

Data sets (read from ``/work/shared/data``; converted files go to
``--work-dir``, never into the repository):

* ``ml-1m-receraser``: RecEraser's ``train.txt``/``test.txt`` (one line per
  user: ``user item item ...``, 0-based ids). Written as RecBole pre-split
  benchmark files (``benchmark_filename: [train, valid, test]``); the
  validation file holds 10% of each user's train items (seeded), so the model
  trains on the remaining 90%. No k-core filtering, no rating threshold.
* ``ml-100k``: ``ml-100k.inter`` with the original ERASE CF protocol:
  5-core users and items, per-user time-ordered 80/10/10 split, rating
  threshold 3.5 (creates the label field only), full ranking.

Model settings follow the original benchmark: BPR (embedding 64), LightGCN
(embedding 64, 2 layers, reg 1e-4), SGL (embedding 64, 3 layers, reg 1e-4,
ED, drop 0.1, tau 0.2, ssl weight 0.1); Adam, lr 1e-3, batch 2048, seed 2,
CPU only, ``torch.set_num_threads(2)`` (``--threads``).

Run with the separate RecBole virtual environment (see
``benchmarks/recbole_notes.md`` for how it is built)::

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/recbole-venv/bin/python \\
        benchmarks/recbole_baseline.py --mode speed --models BPR LightGCN
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/recbole-venv/bin/python \\
        benchmarks/recbole_baseline.py --mode speed --models SGL \\
        --warmup-epochs 0 --timed-epochs 1
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/recbole-venv/bin/python \\
        benchmarks/recbole_baseline.py --mode quality --dataset ml-100k

Results are JSON files under ``benchmarks/results/``. A run updates the
entries of the models it ran and keeps the others, so models can be measured
in separate invocations.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from provenance import provenance  # benchmarks/ is this script's folder

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")

import recbole  # noqa: E402
import torch  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_logger, init_seed  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = Path("/work/shared/data")
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
MODELS = ("BPR", "LightGCN", "SGL")
DEFAULT_THREADS = 2  # the machine has 2 cores
SEED = 2

# Settings shared by every run (the original benchmark's training setup).
COMMON_CONFIG = {
    "use_gpu": False,
    "seed": SEED,
    "reproducibility": True,
    "show_progress": False,
    "state": "INFO",
    "train_batch_size": 2048,
    "eval_batch_size": 4096,
    "learner": "adam",
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
    "metrics": ["Recall", "NDCG", "Hit", "MRR", "Precision"],
    "topk": [10, 20],
    "valid_metric": "Recall@20",
    "stopping_step": 10,
    "epochs": 100,
    "eval_step": 1,
}

MODEL_CONFIG = {
    "BPR": {"embedding_size": 64},
    "LightGCN": {
        "embedding_size": 64,
        "n_layers": 2,
        "reg_weight": 1e-4,
        "require_pow": False,
    },
    "SGL": {
        "embedding_size": 64,
        "n_layers": 3,
        "reg_weight": 1e-4,
        "type": "ED",
        "drop_ratio": 0.1,
        "ssl_tau": 0.2,
        "ssl_weight": 0.1,
    },
}


# --------------------------------------------------------------------------
# Data conversion
# --------------------------------------------------------------------------


def _read_user_lines(path: Path) -> dict[int, list[int]]:
    """Read ``user item item ...`` lines into {user: [items]} (order kept)."""
    rows: dict[int, list[int]] = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) > 1:
                rows[int(parts[0])] = [int(x) for x in parts[1:]]
    return rows


def _write_inter(path: Path, rows: dict[int, list[int]]) -> int:
    """Write {user: [items]} as a RecBole atomic ``.inter`` file."""
    n = 0
    with open(path, "w") as f:
        f.write("user_id:token\titem_id:token\n")
        for user in sorted(rows):
            for item in rows[user]:
                f.write(f"{user}\t{item}\n")
                n += 1
    return n


def prepare_ml1m_receraser(work_dir: Path, valid_ratio: float, seed: int) -> dict:
    """Write RecBole benchmark files train/valid/test for the RecEraser split.

    Valid holds ``round(valid_ratio * n)`` (at least 1 when n >= 2) randomly
    chosen train items of each user; train keeps the rest.
    """
    src = DATA_ROOT / "ml-1m-receraser"
    out = work_dir / "ml-1m-receraser"
    out.mkdir(parents=True, exist_ok=True)
    train_full = _read_user_lines(src / "train.txt")
    test = _read_user_lines(src / "test.txt")
    rng = np.random.default_rng(seed)
    train, valid = {}, {}
    for user in sorted(train_full):
        items = np.asarray(train_full[user])
        n_valid = int(round(valid_ratio * len(items)))
        if len(items) >= 2:
            n_valid = max(1, n_valid)
        perm = rng.permutation(len(items))
        valid[user] = items[perm[:n_valid]].tolist()
        train[user] = items[perm[n_valid:]].tolist()
    sizes = {
        "train_interactions": _write_inter(out / "ml-1m-receraser.train.inter", train),
        "valid_interactions": _write_inter(out / "ml-1m-receraser.valid.inter", valid),
        "test_interactions": _write_inter(out / "ml-1m-receraser.test.inter", test),
        "source_train_interactions": sum(len(v) for v in train_full.values()),
        "valid_carve": f"{valid_ratio:.0%} of each user's train items, numpy seed {seed}",
    }
    return sizes


def prepare_ml100k(work_dir: Path) -> dict:
    """Link the (already atomic) ml-100k.inter into the work directory."""
    out = work_dir / "ml-100k"
    out.mkdir(parents=True, exist_ok=True)
    link = out / "ml-100k.inter"
    if not link.exists():
        link.symlink_to(DATA_ROOT / "ml-100k" / "ml-100k.inter")
    return {}


def dataset_config(dataset: str) -> dict:
    if dataset == "ml-1m-receraser":
        return {
            "load_col": {"inter": ["user_id", "item_id"]},
            "benchmark_filename": ["train", "valid", "test"],
            "eval_args": {"mode": "full"},
        }
    if dataset == "ml-100k":
        return {
            "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
            "user_inter_num_interval": "[5,inf)",
            "item_inter_num_interval": "[5,inf)",
            "threshold": {"rating": 3.5},
            "eval_args": {
                "group_by": "user",
                "order": "TO",
                "split": {"RS": [0.8, 0.1, 0.1]},
                "mode": "full",
            },
        }
    raise ValueError(f"unknown dataset {dataset!r}")


def prepare(dataset: str, work_dir: Path, seed: int) -> dict:
    if dataset == "ml-1m-receraser":
        return prepare_ml1m_receraser(work_dir, valid_ratio=0.1, seed=seed)
    if dataset == "ml-100k":
        return prepare_ml100k(work_dir)
    raise ValueError(f"unknown dataset {dataset!r}")


# --------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_facts() -> dict:
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": int(nproc) if nproc.isdigit() else os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recbole": recbole.__version__,
        "numpy": np.__version__,
        "torch_num_threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------
# RecBole runs
# --------------------------------------------------------------------------


def build(model_name: str, dataset: str, work_dir: Path, extra: dict | None = None):
    """Config, data loaders, model and trainer for one RecBole run."""
    config_dict = {
        **COMMON_CONFIG,
        **dataset_config(dataset),
        **MODEL_CONFIG[model_name],
        "data_path": str(work_dir),
        "checkpoint_dir": str(work_dir / "saved"),
        **(extra or {}),
    }
    config = Config(model=model_name, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)

    t0 = time.perf_counter()
    ds = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, ds)
    data_seconds = time.perf_counter() - t0

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return config, ds, (train_data, valid_data, test_data), trainer, data_seconds


def split_sizes(ds, loaders) -> dict:
    train_data, valid_data, test_data = loaders
    return {
        "users": int(ds.user_num - 1),  # RecBole reserves id 0 for [PAD]
        "items": int(ds.item_num - 1),
        "interactions": int(ds.inter_num),
        "train_interactions": int(train_data._dataset.inter_num),
        "valid_interactions": int(valid_data._dataset.inter_num),
        "test_interactions": int(test_data._dataset.inter_num),
        "valid_users": int(len(valid_data.uid_list)),
        "test_users": int(len(test_data.uid_list)),
    }


def _round_metrics(result) -> dict:
    return {k: round(float(v), 6) for k, v in dict(result).items()}


def run_speed(model_name, dataset, work_dir, warmup_epochs, timed_epochs) -> dict:
    config, ds, loaders, trainer, data_seconds = build(model_name, dataset, work_dir)
    train_data, _, test_data = loaders
    trainer.eval_collector.data_collect(train_data)  # as Trainer.fit does

    warmup_seconds, epoch_seconds, losses = [], [], []
    for epoch in range(warmup_epochs + timed_epochs):
        t0 = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        dt = time.perf_counter() - t0
        loss = sum(loss) if isinstance(loss, tuple) else loss
        losses.append(round(float(loss), 4))
        (epoch_seconds if epoch >= warmup_epochs else warmup_seconds).append(round(dt, 3))
        print(f"[{model_name}] epoch {epoch} {dt:.2f}s loss {loss:.4f}", flush=True)

    t0 = time.perf_counter()
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_seconds = time.perf_counter() - t0
    print(f"[{model_name}] full-sort eval {eval_seconds:.2f}s", flush=True)

    return {
        "warmup_epochs": warmup_epochs,
        "timed_epochs": timed_epochs,
        "warmup_epoch_seconds": warmup_seconds,
        "epoch_seconds": epoch_seconds,
        "median_epoch_seconds": round(statistics.median(epoch_seconds), 3),
        "min_epoch_seconds": min(epoch_seconds),
        "train_batches_per_epoch": len(train_data),
        "train_batch_size": config["train_batch_size"],
        "epoch_losses": losses,
        "eval_seconds": round(eval_seconds, 3),
        "eval_users": int(len(test_data.uid_list)),
        "eval_batches": len(test_data),
        "eval_batch_size_users": int(test_data.step),
        "eval_metrics_after_training": _round_metrics(result),
        "data_build_seconds": round(data_seconds, 2),
        "split": split_sizes(ds, loaders),
        "model_config": MODEL_CONFIG[model_name],
    }


def run_quality(model_name, dataset, work_dir, epochs) -> dict:
    config, ds, loaders, trainer, data_seconds = build(
        model_name, dataset, work_dir, extra={"epochs": epochs}
    )
    train_data, valid_data, test_data = loaders

    train_times, valid_times, valid_scores = [], [], []
    inner_train, inner_valid = trainer._train_epoch, trainer._valid_epoch

    def timed_train(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner_train(*args, **kwargs)
        train_times.append(time.perf_counter() - t0)
        return out

    def timed_valid(*args, **kwargs):
        t0 = time.perf_counter()
        out = inner_valid(*args, **kwargs)
        valid_times.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch, trainer._valid_epoch = timed_train, timed_valid

    t0 = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data,
        valid_data,
        saved=True,
        show_progress=False,
        callback_fn=lambda epoch, score: valid_scores.append(float(score)),
    )
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_seconds = time.perf_counter() - t0
    print(f"[{model_name}] test {dict(test_result)}", flush=True)

    return {
        "epochs_run": len(train_times),
        "best_epoch": int(np.argmax(valid_scores)) if valid_scores else None,
        "best_valid_score_recall@20": round(float(best_valid_score), 6),
        "best_valid": _round_metrics(best_valid_result),
        "test": _round_metrics(test_result),
        "median_epoch_seconds": round(statistics.median(train_times), 3),
        "median_valid_seconds": round(statistics.median(valid_times), 3),
        "test_eval_seconds": round(test_seconds, 3),
        "fit_seconds": round(fit_seconds, 1),
        "train_batches_per_epoch": len(train_data),
        "valid_recall@20_per_epoch": [round(s, 4) for s in valid_scores],
        "data_build_seconds": round(data_seconds, 2),
        "split": split_sizes(ds, loaders),
        "model_config": MODEL_CONFIG[model_name],
    }


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("speed", "quality"), default="speed")
    parser.add_argument(
        "--dataset",
        choices=("ml-1m-receraser", "ml-100k"),
        default=None,
        help="default: ml-1m-receraser for speed, ml-100k for quality",
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/recbole_work"))
    parser.add_argument(
        "--out", type=Path, default=None, help="result JSON (default under benchmarks/results)"
    )
    parser.add_argument("--warmup-epochs", type=int, default=1, help="speed mode")
    parser.add_argument("--timed-epochs", type=int, default=3, help="speed mode")
    parser.add_argument("--epochs", type=int, default=100, help="quality mode: max epochs")
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="torch.set_num_threads"
    )
    args = parser.parse_args(argv)

    dataset = args.dataset or ("ml-1m-receraser" if args.mode == "speed" else "ml-100k")
    out = args.out or RESULTS_DIR / f"recbole_{args.mode}_{dataset}.json"
    out = out.resolve()
    work_dir = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    command = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 " + shlex.join(
        [sys.executable, "benchmarks/recbole_baseline.py", *sys.argv[1:]]
    )

    torch.set_num_threads(args.threads)
    conversion = prepare(dataset, work_dir, SEED)
    # RecBole writes ./log, ./log_tensorboard relative to the working directory.
    os.chdir(work_dir)

    previous = json.loads(out.read_text()) if out.exists() else {}
    results = {
        **{k: v for k, v in previous.items() if k != "models"},
        **{
            "tool": f"RecBole {recbole.__version__} (PyTorch {torch.__version__}, CPU)",
            "mode": args.mode,
            "dataset": dataset,
            "machine": machine_facts(),
            "common_config": COMMON_CONFIG,
            "dataset_config": dataset_config(dataset),
        },
    }
    if conversion:
        results["conversion"] = conversion
    results["models"] = previous.get("models", {})

    for model_name in args.models:
        start = {
            "provenance": provenance(
                config={"common": COMMON_CONFIG, "dataset": dataset_config(dataset), "model": MODEL_CONFIG[model_name]},
                command=command,
            ),
            "load_average_start": load_average(),
            "torch_num_threads": args.threads,
        }
        if args.mode == "speed":
            entry = run_speed(
                model_name, dataset, work_dir, args.warmup_epochs, args.timed_epochs
            )
        else:
            entry = run_quality(model_name, dataset, work_dir, args.epochs)
        entry = {**start, **entry, "load_average_end": load_average()}
        # Keep earlier measurements of the same model (timings vary with load).
        earlier = results["models"].get(model_name)
        if earlier is not None:
            previous_runs = earlier.pop("previous_runs", [])
            entry["previous_runs"] = previous_runs + [earlier]
        results["models"][model_name] = entry
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"[{model_name}] written to {out}", flush=True)


if __name__ == "__main__":
    main()
