"""RecBole 1.2.1 (PyTorch, CPU) reference numbers for the session-based (SBR) models.

The original ERASE benchmark trains GRU4Rec, NARM, SASRec and SR-GNN with RecBole on one
chronological sequence per user (data-and-evaluation spec 1.3 and 2.2). This script measures
RecBole itself on ml-100k so that `benchmarks/sbr_speed.py` and `erase-jax train` can be
compared with it on the same data, split and machine:

* ``--mode speed``: wall time of ``trainer._train_epoch`` over a few epochs after warm-up
  ones, and of one full-ranking test evaluation.
* ``--mode batches``: wall and CPU time of the first N training batches, extrapolated to an
  epoch (for a machine too loaded to time whole RecBole epochs).
* ``--mode quality``: full training with early stopping on valid MRR@10 (patience 10), then
  the best checkpoint's test metrics (Recall/MRR/NDCG/Hit/Precision @10,20) and timings.
  ``--epochs N`` caps training at N epochs (a fixed budget, for comparing with
  ``erase-jax train ... --set train.epochs=N``: both keep the best-validated epoch and test it).
  On a crowded machine use ``--threads 1``: two torch threads spin-wait for each other when
  the cores are oversubscribed and epochs then take many times longer.

Settings follow spec 2.2: user sequences from ``[user_id, item_id, timestamp]`` (no k-core),
prefixes truncated to the last 50 items, per-user time-ordered 80/10/10 split of the
augmented rows, CE over all items, batch 256 (train and eval), Adam lr 1e-3, seed 2, full
ranking without history masking. RecBole 1.2.1 has no SRGNNTrainer (the ERASE fork's), so
its step decay (lr x 0.1 every 3 epochs) is applied here by setting the optimiser's lr
before each epoch.

    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/recbole-venv/bin/python \\
        benchmarks/recbole_sbr_baseline.py --mode quality --models GRU4Rec NARM SASRec SRGNN
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 /work/recbole-venv/bin/python \\
        benchmarks/recbole_sbr_baseline.py --mode speed --models GRU4Rec

Results go to ``benchmarks/results/recbole_sbr_{mode}_ml-100k.json``; a run updates the
entries of the models it ran and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import recbole  # noqa: E402
import torch  # noqa: E402
from provenance import provenance  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_logger, init_seed  # noqa: E402
from recbole_baseline import _round_metrics, load_average, machine_facts, prepare_ml100k  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SEED = 2

COMMON_CONFIG = {
    "use_gpu": False,
    "seed": SEED,
    "reproducibility": True,
    "show_progress": False,
    "state": "INFO",
    "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "USER_ID_FIELD": "user_id",
    "ITEM_ID_FIELD": "item_id",
    "TIME_FIELD": "timestamp",
    "MAX_ITEM_LIST_LENGTH": 50,
    "train_neg_sample_args": None,
    "loss_type": "CE",
    "train_batch_size": 256,
    "eval_batch_size": 256,
    "learner": "adam",
    "learning_rate": 1e-3,
    "eval_args": {"group_by": "user", "order": "TO", "split": {"RS": [0.8, 0.1, 0.1]}, "mode": "full"},
    "metrics": ["Recall", "MRR", "NDCG", "Hit", "Precision"],
    "topk": [10, 20],
    "valid_metric": "MRR@10",
    "stopping_step": 10,
    "eval_step": 1,
    "repeatable": True,
}

# spec 2.2, the original's effective values
MODEL_CONFIG = {
    "GRU4Rec": {"epochs": 100, "embedding_size": 64, "hidden_size": 128, "num_layers": 1, "dropout_prob": 0.3},
    "NARM": {"epochs": 30, "embedding_size": 64, "hidden_size": 100, "n_layers": 1, "dropout_probs": [0.25, 0.5]},
    "SASRec": {
        "epochs": 60, "n_layers": 2, "n_heads": 2, "hidden_size": 32, "inner_size": 128,
        "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "initializer_range": 0.02,
    },
    "SRGNN": {"epochs": 30, "embedding_size": 100, "step": 1, "weight_decay": 1e-5},
}
STEP_DECAY = {"SRGNN": (3, 0.1)}  # the ERASE fork's SRGNNTrainer: StepLR(step_size=3, gamma=0.1)


def build(model_name: str, work_dir: Path, extra: dict | None = None):
    started = time.perf_counter()
    config_dict = {**COMMON_CONFIG, **MODEL_CONFIG[model_name], "data_path": str(work_dir), **(extra or {})}
    config = Config(model=model_name, dataset="ml-100k", config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = create_dataset(config)
    loaders = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, loaders[0]._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    if model_name in STEP_DECAY:
        _add_step_decay(trainer, config["learning_rate"], *STEP_DECAY[model_name])
    return config, dataset, loaders, trainer, time.perf_counter() - started


def _add_step_decay(trainer, base_lr: float, step_size: int, gamma: float) -> None:
    inner = trainer._train_epoch

    def train_epoch(train_data, epoch_idx, *args, **kwargs):
        for group in trainer.optimizer.param_groups:
            group["lr"] = base_lr * gamma ** (epoch_idx // step_size)
        return inner(train_data, epoch_idx, *args, **kwargs)

    trainer._train_epoch = train_epoch


def split_sizes(loaders) -> dict:
    train_data, valid_data, test_data = loaders
    return {
        "items": int(train_data._dataset.item_num - 1),  # id 0 is [PAD]
        "train_rows": int(len(train_data._dataset)),
        "valid_rows": int(len(valid_data._dataset)),
        "test_rows": int(len(test_data._dataset)),
    }


def run_speed(model_name: str, work_dir: Path, warmup_epochs: int, timed_epochs: int) -> dict:
    config, _, loaders, trainer, data_seconds = build(model_name, work_dir)
    train_data, _, test_data = loaders
    trainer.eval_collector.data_collect(train_data)
    warmup, timed, losses = [], [], []
    for epoch in range(warmup_epochs + timed_epochs):
        started = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        elapsed = time.perf_counter() - started
        losses.append(round(float(sum(loss) if isinstance(loss, tuple) else loss), 4))
        (timed if epoch >= warmup_epochs else warmup).append(round(elapsed, 3))
        print(f"[{model_name}] epoch {epoch} {elapsed:.2f}s loss {losses[-1]}", flush=True)
    started = time.perf_counter()
    result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    eval_seconds = time.perf_counter() - started
    return {
        "warmup_epoch_seconds": warmup,
        "epoch_seconds": timed,
        "median_epoch_seconds": round(statistics.median(timed), 3),
        "min_epoch_seconds": min(timed),
        "train_batches_per_epoch": len(train_data),
        "epoch_losses": losses,
        "eval_seconds": round(eval_seconds, 3),
        "eval_metrics_after_training": _round_metrics(result),
        "data_build_seconds": round(data_seconds, 2),
        "split": split_sizes(loaders),
        "model_config": MODEL_CONFIG[model_name],
    }


def run_batches(model_name: str, work_dir: Path, n_batches: int) -> dict:
    """Wall and process-CPU time of the first `n_batches` training batches of one epoch.

    For a loaded machine on which a whole RecBole epoch does not fit in the time at hand:
    the same steps as `trainer._train_epoch` (RecBole's loader, `calculate_loss`, backward,
    Adam; no clipping or AMP in these configs), extrapolated to the epoch's batch count.
    """
    config, _, loaders, trainer, data_seconds = build(model_name, work_dir)
    train_data = loaders[0]
    trainer.model.train()
    wall, cpu = time.perf_counter(), time.process_time()
    for index, interaction in enumerate(train_data):
        if index == n_batches:
            break
        trainer.optimizer.zero_grad()
        loss = trainer.model.calculate_loss(interaction.to(trainer.device))
        loss.backward()
        trainer.optimizer.step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_epoch = len(train_data) / n_batches
    return {
        "timed_batches": n_batches,
        "train_batches_per_epoch": len(train_data),
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "extrapolated_epoch_wall_seconds": round(wall * per_epoch, 1),
        "extrapolated_epoch_cpu_seconds": round(cpu * per_epoch, 1),
        "last_loss": round(float(loss), 4),
        "data_build_seconds": round(data_seconds, 2),
        "split": split_sizes(loaders),
        "model_config": MODEL_CONFIG[model_name],
    }


def run_quality(model_name: str, work_dir: Path, max_epochs: int | None) -> dict:
    extra = {"epochs": max_epochs} if max_epochs else None
    config, _, loaders, trainer, data_seconds = build(model_name, work_dir, extra)
    train_data, valid_data, test_data = loaders
    train_times, valid_times, valid_scores = [], [], []
    inner_train, inner_valid = trainer._train_epoch, trainer._valid_epoch

    def timed(inner, times):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            out = inner(*args, **kwargs)
            times.append(time.perf_counter() - started)
            return out

        return wrapper

    trainer._train_epoch, trainer._valid_epoch = timed(inner_train, train_times), timed(inner_valid, valid_times)
    started = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=True, show_progress=False,
        callback_fn=lambda epoch, score: valid_scores.append(float(score)),
    )
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_seconds = time.perf_counter() - started
    print(f"[{model_name}] test {dict(test_result)}", flush=True)
    return {
        "epochs_run": len(train_times),
        "max_epochs": config["epochs"],
        "best_epoch": int(max(range(len(valid_scores)), key=valid_scores.__getitem__)) + 1 if valid_scores else None,
        "best_valid_mrr@10": round(float(best_valid_score), 6),
        "best_valid": _round_metrics(best_valid_result),
        "test": _round_metrics(test_result),
        "epoch_seconds": [round(t, 3) for t in train_times],
        "median_epoch_seconds": round(statistics.median(train_times), 3),
        "median_valid_seconds": round(statistics.median(valid_times), 3),
        "test_eval_seconds": round(test_seconds, 3),
        "fit_seconds": round(fit_seconds, 1),
        "train_batches_per_epoch": len(train_data),
        "valid_mrr@10_per_epoch": [round(s, 4) for s in valid_scores],
        "data_build_seconds": round(data_seconds, 2),
        "split": split_sizes(loaders),
        "model_config": MODEL_CONFIG[model_name],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("speed", "batches", "quality"), default="quality")
    parser.add_argument("--models", nargs="+", choices=list(MODEL_CONFIG), default=list(MODEL_CONFIG))
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/recbole_sbr_work"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--warmup-epochs", type=int, default=1, help="speed mode")
    parser.add_argument("--timed-epochs", type=int, default=3, help="speed mode")
    parser.add_argument("--epochs", type=int, default=None, help="quality mode: cap on epochs (default: spec 2.2)")
    parser.add_argument("--batches", type=int, default=30, help="batches mode: training batches timed per model")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args(argv)

    out = (args.out or RESULTS_DIR / f"recbole_sbr_{args.mode}_ml-100k.json").resolve()
    work_dir = args.work_dir.resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    command = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 " + shlex.join(
        [sys.executable, "benchmarks/recbole_sbr_baseline.py", *sys.argv[1:]]
    )
    torch.set_num_threads(args.threads)
    prepare_ml100k(work_dir)
    os.chdir(work_dir)  # RecBole writes ./log and ./saved relative to the working directory

    previous = json.loads(out.read_text()) if out.exists() else {}
    results = {
        "tool": f"RecBole {recbole.__version__} (PyTorch {torch.__version__}, CPU)",
        "mode": args.mode,
        "dataset": "ml-100k (user sequences)",
        "machine": machine_facts(),
        "common_config": COMMON_CONFIG,
        "models": previous.get("models", {}),
    }
    for model_name in args.models:
        start = {
            "provenance": provenance(config={"common": COMMON_CONFIG, "model": MODEL_CONFIG[model_name]}, command=command),
            "load_average_start": load_average(),
            "torch_num_threads": args.threads,
        }
        if args.mode == "speed":
            entry = run_speed(model_name, work_dir, args.warmup_epochs, args.timed_epochs)
        elif args.mode == "batches":
            entry = run_batches(model_name, work_dir, args.batches)
        else:
            entry = run_quality(model_name, work_dir, args.epochs)
        results["models"][model_name] = {**start, **entry, "load_average_end": load_average()}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        print(f"[{model_name}] written to {out}", flush=True)


if __name__ == "__main__":
    main()
