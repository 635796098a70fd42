"""The public PyTorch DNNTSP and Sets2Sets on erase-jax's next-basket split, with erase-jax's metrics.

The acceptance asks for the PyTorch implementations that ERASE's port followed, side by side with
the JAX models on the same split and machine. Their code is NOT in this repository: this harness
imports it from a checkout of `liming-7/A-Next-Basket-Recommendation-Reality-Check` ("RC"):
`methods/dnntsp` (Yu et al.'s DNNTSP code, model files identical to `yule-BUAA/DNNTSP` up to line
endings and a `sys.path` line) and `methods/sets2sets/sets2sets_new.py` (Hu & He's Sets2Sets as RC
adapted it). Point `--code-root` (or $NBR_TORCH_CODE) at that checkout (default /work/nbr-torch/rc; a
`REVISION` file there holding the commit is copied into the result). Its large data files are not needed.

The torch environment (torch 2.13 CPU; dgl 1.1.3 is the newest dgl whose import works with it: dgl 2.x
loads graphbolt libraries built for torch <= 2.2; dgl imports `setuptools.extern`, hence the old
setuptools, which pip reports as a conflict with torch's metadata and which is harmless here):

    python3 -m venv /work/torch-venv
    /work/torch-venv/bin/pip install torch-2.13.0+cpu-...whl "numpy<2" scikit-learn tqdm packaging
    /work/torch-venv/bin/pip install dgl==1.1.3              # DNNTSP only; Sets2Sets needs torch alone
    /work/torch-venv/bin/pip install --no-deps "setuptools<70"  # in one command with torch pip refuses it

The checkout: `git --git-dir <bare RC repository> archive HEAD methods | tar -x -C /work/nbr-torch/rc`
(its `dataset/` files are Git LFS objects, not needed), and the commit in `rc/REVISION`.

Two modes, two interpreters:

    # 1. the split, made by erase-jax itself (next-basket spec 1.3), under the project's venv
    .venv/bin/python benchmarks/nbr_pytorch_baseline.py export --dataset tafeng
    # 2. their models on it, under a venv with torch (and dgl for DNNTSP; see below)
    /work/torch-venv/bin/python benchmarks/nbr_pytorch_baseline.py run --model DNNTSP --epochs 1 --users 500
    /work/torch-venv/bin/python benchmarks/nbr_pytorch_baseline.py run --model Sets2Sets --epochs 1 --users 500
    /work/torch-venv/bin/python benchmarks/nbr_pytorch_baseline.py run --model PTopFreq   # numpy only

`export` writes one JSON: per phase (train/valid/test) the users, each example's history (baskets,
oldest first, the most recent `--max-history` kept) and target basket, as
`erase_jax.data.baskets.build_basket_examples` makes them (train target basket n-3, valid n-2,
test n-1; users with >= 4 baskets). Item ids are erase-jax's 0..n_items-1, which are also the ids
the RC code expects (no padding id).

`run` trains on the train examples, evaluates valid every epoch and keeps the epoch with the best
valid Recall@10 (its weights), then evaluates test with them; `--stopping-step N` stops after N
epochs without a better one (erase-jax's configs use 10; ERASE's 100 never stops). After every
epoch the whole training state (weights, optimiser moments, random streams, the epochs so far) is
saved to `--state` (default `<out>.state.pt`), and the same command started again goes on from it:
an epoch of the PyTorch DNNTSP on all of Ta-Feng takes tens of minutes on this CPU, so a run to
convergence spans several sessions. Resumed epochs are marked `"resumed": true`; the result is the
one an uninterrupted run gives (checked: equal losses epoch by epoch). Metrics are this script's
own, computed from the models' rankings with erase-jax's definitions (spec 3): full ranking over all
items, repeat items allowed, Recall@k = hits / |target|, NDCG@k with the ideal DCG over
min(k, |target|) positions, Hit@k; averaged over users. Timings per epoch: wall and CPU seconds of
the training pass (including the RC data pipeline, which builds DNNTSP's graphs in Python on the
fly) and of the valid pass.

What runs, per model (everything inside the model is theirs):
* DNNTSP: RC's `temporal_set_prediction` (d=32), `utils.data_container.SetDataset` and
  `collate_set_across_user` fed with this split in RC's file layout (history `[[-1], b1..bm, [-1]]`,
  future `[[-1], target, [-1]]`, a keyset per phase), `MultiLabelSoftMarginLoss(mean)`, Adam lr 1e-3,
  batch 64, shuffled every epoch (ERASE's setting, spec 2.1; RC's own loader does not shuffle and
  RC adds ReduceLROnPlateau on the train loss, not used here). Needs `dgl` (1.1.3 works with torch
  2.13 CPU; dgl 2.x needs torch <= 2.2 for graphbolt).
* Sets2Sets: RC's `EncoderRNN_new`, `AttnDecoderRNN_new`, `custom_MultiLabelLoss_torch` and one
  `train(...)` call per user (batch 1), RC's Adam (betas 0.9/0.98, eps 1e-11, lr 1e-3), d=32, lambda
  10; ranking from RC's `decoding_next_k_step` (its top-400 of the softmax output; metrics need the
  top 20). Item weights max(cnt)/cnt from the item counts of the train-phase histories (ERASE's
  choice; RC counted all users' histories).
* PTopFreq: the user's history items by count, ties by first appearance (RC's
  `methods/g-p-gp-topfreq/p_topfreq.py`), no fill; numpy, a sanity anchor.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from nbr_pytorch_models import MODELS, PHASES, TOPK, code_fingerprint  # noqa: E402  (benchmarks/)

DEFAULTS = {  # ERASE's Ta-Feng settings (next-basket spec 2.1, 2.2)
    "DNNTSP": {"epochs": 100, "batch_size": 64, "lr": 1e-3, "dim": 32, "max_history": 48},
    "Sets2Sets": {"epochs": 20, "batch_size": 1, "lr": 1e-3, "dim": 32, "max_history": 98},
    "PTopFreq": {"epochs": 1, "batch_size": 0, "lr": 0.0, "dim": 0, "max_history": 98},
}


def default_split_path(dataset: str) -> Path:
    return Path(tempfile.gettempdir()) / f"erase_jax_nbr_split_{dataset}.json"


# ---------------------------------------------------------------------------------------------- export


def export(args) -> None:
    """The split as erase-jax builds it, written as plain lists (runs under the project's venv)."""
    sys.path.insert(0, str(REPO_ROOT))
    from erase_jax.data.basket_loading import read_basket_data
    from erase_jax.data.baskets import BasketConfig, build_basket_examples
    from erase_jax.data.loading import DataConfig

    inter, source = read_basket_data(DataConfig(dataset=args.dataset, data_root=args.data_root), seed=args.seed)
    config = BasketConfig(min_baskets=4, max_history_baskets=args.max_history)
    examples = build_basket_examples(inter, config)
    phases = {}
    for phase in PHASES:
        rows = getattr(examples, phase)
        phases[phase] = {
            "users": [int(u) for u in rows.users],
            "history": [rows.history_lists(r) for r in range(len(rows))],
            "target": [rows.target_list(r) for r in range(len(rows))],
        }
    record = {"dataset": args.dataset, "source": source, "n_items": int(inter.n_items), "n_users": int(inter.n_users),
              "basket_config": {"min_baskets": config.min_baskets, "max_history_baskets": config.max_history_baskets},
              "phases": phases}
    out = Path(args.split or default_split_path(args.dataset))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, separators=(",", ":")))
    print(f"wrote {out}: {inter.n_items} items, " + ", ".join(f"{p} {len(phases[p]['users'])}" for p in PHASES))


# ---------------------------------------------------------------------------------------------- metrics


def rank_metrics(rankings: list[list[int]], targets: list[list[int]], ks=TOPK) -> dict[str, float]:
    """Mean Recall@k, NDCG@k (ideal over min(k, |target|)) and Hit@k of ranked item lists."""
    kmax = max(ks)
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg", "hit") for k in ks}
    for ranked, target in zip(rankings, targets, strict=True):
        wanted = set(target)
        hits = np.zeros(kmax)
        top = ranked[:kmax]
        hits[: len(top)] = [item in wanted for item in top]
        for k in ks:
            found = hits[:k].sum()
            sums[f"recall@{k}"] += found / len(wanted)
            sums[f"hit@{k}"] += float(found > 0)
            sums[f"ndcg@{k}"] += float(hits[:k] @ discounts[:k]) / float(discounts[: min(k, len(wanted))].sum())
    n = max(len(targets), 1)
    return {key: round(value / n, 6) for key, value in sorted(sums.items())}


# ---------------------------------------------------------------------------------------------- data


def load_split(args) -> dict:
    path = Path(args.split or default_split_path(args.dataset))
    if not path.exists():
        raise SystemExit(f"no split at {path}: run `.venv/bin/python {Path(__file__).name} export --dataset {args.dataset}` first")
    raw = path.read_bytes()
    split = json.loads(raw)
    split["path"], split["sha256"] = str(path), hashlib.sha256(raw).hexdigest()
    users = split["phases"]["train"]["users"]
    if args.users and args.users < len(users):
        keep = set(np.random.default_rng(args.seed).choice(users, size=args.users, replace=False).tolist())
        for phase in PHASES:
            data = split["phases"][phase]
            rows = [r for r, u in enumerate(data["users"]) if u in keep]
            split["phases"][phase] = {key: [data[key][r] for r in rows] for key in ("users", "history", "target")}
    for phase in PHASES:  # the most recent `max_history` baskets, as BasketConfig.max_history_baskets
        data = split["phases"][phase]
        data["history"] = [h[-args.max_history:] for h in data["history"]]
    return split



# ---------------------------------------------------------------------------------------------- run


def timed(fn, *a):
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn(*a)
    return value, round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def run(args) -> None:
    defaults = DEFAULTS[args.model]
    for key in ("epochs", "batch_size", "lr", "dim", "max_history"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    random.seed(args.seed)
    np.random.seed(args.seed)
    versions = {"numpy": np.__version__}
    if args.model != "PTopFreq":
        import torch

        torch.manual_seed(args.seed)
        torch.set_num_threads(args.threads)
        versions.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        if args.model == "DNNTSP":
            import dgl

            versions["dgl"] = dgl.__version__
    split = load_split(args)
    phases = split["phases"]
    for phase in PHASES:
        phases[phase]["phase"] = phase
    load_start = os.getloadavg()
    model, setup_wall, setup_cpu = timed(MODELS[args.model], split, args)
    out = Path(args.out or HERE / "results" / f"nbr_pytorch_{args.model.lower()}_{split['dataset']}.json")
    state_file = Path(args.state or str(out) + ".state.pt")
    identity = {"model": args.model, "split_sha256": split["sha256"], "users": args.users,
                **{k: getattr(args, k) for k in ("batch_size", "lr", "dim", "max_history", "seed")}}
    epochs, best, best_state = resume(model, state_file, identity)
    for epoch in range(len(epochs), args.epochs if args.model != "PTopFreq" else 1):
        if best is not None and args.stopping_step is not None and epoch - best > args.stopping_step:
            break
        loss, wall, cpu = timed(model.train_epoch, phases["train"])
        ranked, eval_wall, eval_cpu = timed(model.rankings, phases["valid"])
        valid = rank_metrics(ranked, phases["valid"]["target"])
        row = {"epoch": epoch, "loss": round(loss, 6), "train_wall_s": wall, "train_cpu_s": cpu,
               "valid_wall_s": eval_wall, "valid_cpu_s": eval_cpu, "valid": valid}
        epochs.append(row)
        print(json.dumps(row), flush=True)
        if best is None or valid["recall@10"] > epochs[best]["valid"]["recall@10"]:
            best, best_state = epoch, model.state()
        if args.model != "PTopFreq":
            save_state(model, state_file, identity, epochs, best, best_state)
    model.load(best_state)
    ranked, test_wall, test_cpu = timed(model.rankings, phases["test"])
    test = rank_metrics(ranked, phases["test"]["target"])
    train_walls = [e["train_wall_s"] for e in epochs]
    n_train = len(phases["train"]["users"])
    full_train = len(json.loads(Path(split["path"]).read_text())["phases"]["train"]["users"]) if args.users else n_train
    record = {
        "provenance": provenance_block(args, versions),
        "model": args.model,
        "implementation": code_fingerprint(args, args.model),
        "dataset": split["dataset"],
        "split": {"file": split["path"], "sha256": split["sha256"], "source": split["source"], "n_items": split["n_items"],
                  "users_per_phase": {p: len(phases[p]["users"]) for p in PHASES}, "subsample_users": args.users,
                  "subsample_seed": args.seed if args.users else None, "max_history_baskets": args.max_history},
        "hyperparameters": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "dim", "max_history", "seed",
                                                         "stopping_step")},
        "resumed_epochs": sum(1 for e in epochs if e.get("resumed")),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "setup_wall_s": setup_wall,
        "setup_cpu_s": setup_cpu,
        "epochs": epochs,
        "best_epoch": best,
        "valid_at_best": epochs[best]["valid"],
        "test": test,
        "test_wall_s": test_wall,
        "test_cpu_s": test_cpu,
        "train_epoch_wall_s_median": round(float(np.median(train_walls)), 3),
        "train_epoch_wall_s_per_1k_users": round(1000 * float(np.median(train_walls)) / max(n_train, 1), 3),
        "train_epoch_wall_s_full_estimate": None if not args.users else round(float(np.median(train_walls)) * full_train / n_train, 1),
        "note": ("metrics by this script (erase-jax definitions, spec 3) on the model's rankings; "
                 "train_epoch_wall_s_full_estimate is a linear extrapolation from the subsample, not a measurement"),
    }
    print(json.dumps({"test": test, "best_epoch": best, "train_epoch_wall_s_median": record["train_epoch_wall_s_median"]}))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


def save_state(model, path: Path, identity: dict, epochs: list, best, best_state) -> None:
    """Everything a later session needs to go on after this epoch, written atomically."""
    import torch

    state = {"identity": identity, "epochs": epochs, "best": best, "best_state": best_state,
             "train_state": model.train_state(), "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state())}
    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def resume(model, path: Path, identity: dict) -> tuple[list, int | None, object]:
    """(epochs done, best epoch, its weights) from `path` if a run with the same identity saved
    there, restoring the model's training state and the random streams; a fresh start otherwise."""
    if not path.exists():
        return [], None, None
    import torch

    state = torch.load(path, weights_only=False)
    if state["identity"] != identity:
        changed = sorted(k for k in identity if state["identity"].get(k) != identity[k])
        raise SystemExit(f"{path}: saved by a run with other settings ({', '.join(changed)}); delete it or pass --state")
    model.load_train_state(state["train_state"])
    python_state, numpy_state, torch_state = state["rng"]
    random.setstate(python_state)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    print(f"resumed from {path} after {len(state['epochs'])} epochs", file=sys.stderr)
    return [dict(e, resumed=True) for e in state["epochs"]], state["best"], state["best_state"]


def provenance_block(args, versions: dict) -> dict:
    sys.path.insert(0, str(HERE))
    from provenance import provenance

    command = f"{sys.executable} " + " ".join(sys.argv)
    return provenance(config=vars(args), command=command, versions=versions)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    exp = sub.add_parser("export", help="write erase-jax's split (project venv)")
    exp.add_argument("--dataset", default="tafeng")
    exp.add_argument("--data-root", default=None)
    exp.add_argument("--seed", type=int, default=2)
    exp.add_argument("--max-history", type=int, default=98, help="baskets kept per history at export (run may cut further)")
    exp.add_argument("--split", default=None, help=f"output file (default {default_split_path('<dataset>')})")
    go = sub.add_parser("run", help="train and evaluate one model on the exported split (torch venv)")
    go.add_argument("--model", choices=sorted(MODELS), required=True)
    go.add_argument("--dataset", default="tafeng")
    go.add_argument("--split", default=None)
    go.add_argument("--code-root", default=os.environ.get("NBR_TORCH_CODE", "/work/nbr-torch/rc"))
    go.add_argument("--epochs", type=int, default=None, help="default: ERASE's (DNNTSP 100, Sets2Sets 20)")
    go.add_argument("--users", type=int, default=0, help="subsample this many users (0: all)")
    go.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    go.add_argument("--batch-size", type=int, default=None)
    go.add_argument("--eval-batch-size", type=int, default=64)
    go.add_argument("--lr", type=float, default=None)
    go.add_argument("--dim", type=int, default=None)
    go.add_argument("--max-history", type=int, default=None, help="most recent history baskets (DNNTSP 48, Sets2Sets 98)")
    go.add_argument("--seed", type=int, default=2)
    go.add_argument("--out", default=None)
    go.add_argument("--state", default=None, help="training state saved after every epoch, resumed from when present "
                    "(default: <out>.state.pt)")
    go.add_argument("--stopping-step", type=int, default=None,
                    help="stop after this many epochs without a better valid Recall@10 (default: never, as ERASE)")
    args = parser.parse_args(argv)
    export(args) if args.mode == "export" else run(args)


if __name__ == "__main__":
    main()
