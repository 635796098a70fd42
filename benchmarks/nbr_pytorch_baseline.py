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
    /work/torch-venv/bin/pip install torch-2.13.0+cpu-...whl "numpy<2" scikit-learn tqdm packaging dgl==1.1.3 "setuptools<70"

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
valid Recall@10 (its weights, in memory), then evaluates test with them. Metrics are this script's
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
import copy
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
PHASES = ("train", "valid", "test")
TOPK = (10, 20)
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


def top_items(scores, k: int = max(TOPK)) -> list[list[int]]:
    """Top-k item ids of each row of a [b, n_items] torch score matrix (torch.topk's order)."""
    import torch

    return torch.topk(scores, k, dim=1).indices.tolist()


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


def rc_layout(data: dict, folder: Path, phase: str) -> tuple[Path, Path, Path]:
    """One phase in RC's json layout: history {uid: [[-1], b1..bm, [-1]]}, future {uid: [[-1], t, [-1]]}, keyset."""
    keys = [str(u) for u in data["users"]]
    paths = folder / f"{phase}_history.json", folder / f"{phase}_future.json", folder / f"{phase}_keyset.json"
    paths[0].write_text(json.dumps({k: [[-1], *h, [-1]] for k, h in zip(keys, data["history"], strict=True)}))
    paths[1].write_text(json.dumps({k: [[-1], t, [-1]] for k, t in zip(keys, data["target"], strict=True)}))
    paths[2].write_text(json.dumps({phase: keys}))
    return paths


# ---------------------------------------------------------------------------------------------- models


class PTopFreq:
    """The user's history items by count, ties by first appearance; nothing is trained."""

    name = "PTopFreq"

    def __init__(self, split, args):
        self.n_items = split["n_items"]

    def train_epoch(self, data) -> float:
        return 0.0

    def rankings(self, data) -> list[list[int]]:
        out = []
        for history in data["history"]:
            counts: dict[int, int] = {}
            for basket in history:
                for item in basket:
                    counts[item] = counts.get(item, 0) + 1
            out.append(sorted(counts, key=lambda i: -counts[i])[: max(TOPK)])  # stable: first appearance wins
        return out

    def state(self):
        return None

    def load(self, state) -> None:
        pass


class DNNTSP:
    """RC's `methods/dnntsp`: temporal_set_prediction trained on SetDataset batches."""

    name = "DNNTSP"

    def __init__(self, split, args):
        import torch

        root = code_dir(args, "methods/dnntsp")
        sys.path.insert(0, str(root))
        from utils import load_config  # RC's module-level config dict, read by its data container

        load_config.config.update(items_total=split["n_items"], cuda=-1, item_embed_dim=args.dim, batch_size=args.batch_size)
        from model.temporal_set_prediction import temporal_set_prediction
        from utils.data_container import SetDataset, collate_set_across_user

        self.torch, self.SetDataset, self.collate = torch, SetDataset, collate_set_across_user
        self.model = temporal_set_prediction(items_total=split["n_items"], item_embedding_dim=args.dim)
        self.loss = torch.nn.MultiLabelSoftMarginLoss(reduction="mean")
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr, weight_decay=0)
        self.batch_size, self.eval_batch = args.batch_size, args.eval_batch_size
        self.folder = Path(tempfile.mkdtemp(prefix="nbr_rc_dnntsp_"))
        self.datasets = {}
        for phase in PHASES:
            paths = rc_layout(split["phases"][phase], self.folder, phase)
            self.datasets[phase] = SetDataset(*map(str, paths), item_embedding_matrix=self.model.item_embedding, key=phase)

    def _loader(self, phase: str, batch_size: int, shuffle: bool):
        from torch.utils.data import DataLoader

        return DataLoader(self.datasets[phase], batch_size=batch_size, shuffle=shuffle, drop_last=False, collate_fn=self.collate)

    def train_epoch(self, data) -> float:
        self.model.train()
        total, steps, started = 0.0, 0, time.perf_counter()
        for g, nodes_feature, edges_weight, lengths, nodes, truth, users_frequency in self._loader("train", self.batch_size, True):
            output = self.model(g, nodes_feature, edges_weight, lengths, nodes, users_frequency)
            loss = self.loss(output, truth.float())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total, steps = total + loss.item(), steps + 1
            progress(steps * self.batch_size, len(data["users"]), started, self.batch_size)
        return total / max(steps, 1)

    def rankings(self, data) -> list[list[int]]:
        phase = data["phase"]
        self.model.eval()
        out = []
        with self.torch.no_grad():  # the dataset embeds nodes in __getitem__, so the loader runs inside
            for g, nodes_feature, edges_weight, lengths, nodes, _, users_frequency in self._loader(phase, self.eval_batch, False):
                out += top_items(self.model(g, nodes_feature, edges_weight, lengths, nodes, users_frequency))
        return out

    def state(self):
        return copy.deepcopy(self.model.state_dict())

    def load(self, state) -> None:
        self.model.load_state_dict(state)


class Sets2Sets:
    """RC's `methods/sets2sets/sets2sets_new.py`: encoder, attention decoder and its train step, batch 1."""

    name = "Sets2Sets"

    def __init__(self, split, args):
        import torch

        sys.path.insert(0, str(code_dir(args, "methods/sets2sets")))
        import sets2sets_new as s2s

        s2s.use_cuda = False
        if args.dim != s2s.hidden_size:
            raise SystemExit(f"RC's Sets2Sets has hidden_size {s2s.hidden_size} built into its module; --dim {args.dim} unsupported")
        self.torch, self.s2s, self.n_items = torch, s2s, split["n_items"]
        self.encoder = s2s.EncoderRNN_new(self.n_items, s2s.hidden_size, s2s.num_layers)
        self.decoder = s2s.AttnDecoderRNN_new(s2s.hidden_size, self.n_items, s2s.num_layers, dropout_p=0.1)  # as RC's main
        adam = {"lr": args.lr, "betas": (0.9, 0.98), "eps": 1e-11, "weight_decay": 0}  # RC's trainIters
        self.enc_opt = torch.optim.Adam(self.encoder.parameters(), **adam)
        self.dec_opt = torch.optim.Adam(self.decoder.parameters(), **adam)
        self.criterion = s2s.custom_MultiLabelLoss_torch()
        counts = np.zeros(self.n_items)
        for history in split["phases"]["train"]["history"]:
            for basket in history:
                np.add.at(counts, basket, 1)
        self.weights = np.where(counts > 0, counts.max() / np.maximum(counts, 1), 0.0)
        self.rng = np.random.default_rng(args.seed)

    @staticmethod
    def _rc(history, target):
        return [[-1], *history, [-1]], [[-1], target, [-1]]

    def train_epoch(self, data) -> float:
        self.encoder.train(), self.decoder.train()
        total = 0.0
        order = self.rng.permutation(len(data["history"]))
        started = time.perf_counter()
        for step, r in enumerate(order, 1):
            inputs, target = self._rc(data["history"][r], data["target"][r])
            total += self.s2s.train(inputs, target, self.encoder, self.decoder, self.weights, self.enc_opt, self.dec_opt,
                                    self.criterion, self.n_items)
            progress(step, len(order), started)
        return total / max(len(order), 1)

    def rankings(self, data) -> list[list[int]]:
        self.encoder.eval(), self.decoder.eval()
        out = []
        with self.torch.no_grad():
            for history, target in zip(data["history"], data["target"], strict=True):
                inputs, future = self._rc(history, target)
                _, ranked = self.s2s.decoding_next_k_step(self.encoder, self.decoder, inputs, future, self.n_items, 1, max(TOPK))
                out.append([int(i) for i in ranked[0][: max(TOPK)]])
        return out

    def state(self):
        return copy.deepcopy(self.encoder.state_dict()), copy.deepcopy(self.decoder.state_dict())

    def load(self, state) -> None:
        self.encoder.load_state_dict(state[0])
        self.decoder.load_state_dict(state[1])


def progress(done: int, total: int, started: float, step: int = 1, every: int = 500) -> None:
    """A line on stderr every `every` training examples (an epoch can take an hour)."""
    if done // every != (done - step) // every or done >= total:
        print(f"  {min(done, total)}/{total} examples, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


MODELS = {"DNNTSP": DNNTSP, "Sets2Sets": Sets2Sets, "PTopFreq": PTopFreq}


def code_dir(args, sub: str) -> Path:
    path = Path(args.code_root).expanduser() / sub
    if not path.is_dir():
        raise SystemExit(f"{path} not found: point --code-root (or $NBR_TORCH_CODE) at a checkout of "
                         "liming-7/A-Next-Basket-Recommendation-Reality-Check")
    return path


def code_fingerprint(args, model: str) -> dict:
    """Which RC code ran: the checkout's REVISION file if any, and a hash of the model's source files."""
    root = Path(args.code_root).expanduser()
    sub = {"DNNTSP": "methods/dnntsp", "Sets2Sets": "methods/sets2sets"}.get(model)
    if sub is None:
        return {"code": "this script (numpy)"}
    files = sorted((root / sub).rglob("*.py"))
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
    revision = (root / "REVISION").read_text().strip() if (root / "REVISION").exists() else None
    return {"repository": "liming-7/A-Next-Basket-Recommendation-Reality-Check", "revision": revision, "path": sub,
            "code_root": str(root), "files": [str(f.relative_to(root)) for f in files], "sha256": digest}


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
    epochs, best, best_state = [], None, None
    for epoch in range(args.epochs if args.model != "PTopFreq" else 1):
        loss, wall, cpu = timed(model.train_epoch, phases["train"])
        ranked, eval_wall, eval_cpu = timed(model.rankings, phases["valid"])
        valid = rank_metrics(ranked, phases["valid"]["target"])
        row = {"epoch": epoch, "loss": round(loss, 6), "train_wall_s": wall, "train_cpu_s": cpu,
               "valid_wall_s": eval_wall, "valid_cpu_s": eval_cpu, "valid": valid}
        epochs.append(row)
        print(json.dumps(row), flush=True)
        if best is None or valid["recall@10"] > epochs[best]["valid"]["recall@10"]:
            best, best_state = epoch, model.state()
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
        "hyperparameters": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "dim", "max_history", "seed")},
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
    out = Path(args.out or HERE / "results" / f"nbr_pytorch_{args.model.lower()}_{split['dataset']}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


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
    args = parser.parse_args(argv)
    export(args) if args.mode == "export" else run(args)


if __name__ == "__main__":
    main()
