"""Adapters that run the public PyTorch next-basket code on erase-jax's split, one class per model.

Used by `benchmarks/nbr_pytorch_baseline.py` (its docstring says what runs, from which checkout, and
how). Each adapter trains one epoch (`train_epoch`), ranks a phase's users (`rankings`), hands out
the weights of its best epoch (`state` / `load`) and, for a run that spans several sessions, its
whole training state (`train_state` / `load_train_state`: weights, optimiser moments and its own
random stream). Everything inside the models is the checkout's code; only the feeding is ours.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PHASES = ("train", "valid", "test")
TOPK = (10, 20)


def top_items(scores, k: int = max(TOPK)) -> list[list[int]]:
    """Top-k item ids of each row of a [b, n_items] torch score matrix (torch.topk's order)."""
    import torch

    return torch.topk(scores, k, dim=1).indices.tolist()




def rc_layout(data: dict, folder: Path, phase: str) -> tuple[Path, Path, Path]:
    """One phase in RC's json layout: history {uid: [[-1], b1..bm, [-1]]}, future {uid: [[-1], t, [-1]]}, keyset."""
    keys = [str(u) for u in data["users"]]
    paths = folder / f"{phase}_history.json", folder / f"{phase}_future.json", folder / f"{phase}_keyset.json"
    paths[0].write_text(json.dumps({k: [[-1], *h, [-1]] for k, h in zip(keys, data["history"], strict=True)}))
    paths[1].write_text(json.dumps({k: [[-1], t, [-1]] for k, t in zip(keys, data["target"], strict=True)}))
    paths[2].write_text(json.dumps({phase: keys}))
    return paths



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

    def train_state(self):
        return None

    def load_train_state(self, state) -> None:
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

    def train_state(self):
        return {"model": self.state(), "optimizer": copy.deepcopy(self.optimizer.state_dict())}

    def load_train_state(self, state) -> None:
        self.load(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


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

    def train_state(self):
        return {"model": self.state(), "optimizers": (copy.deepcopy(self.enc_opt.state_dict()),
                                                      copy.deepcopy(self.dec_opt.state_dict())),
                "rng": self.rng.bit_generator.state}

    def load_train_state(self, state) -> None:
        self.load(state["model"])
        self.enc_opt.load_state_dict(state["optimizers"][0])
        self.dec_opt.load_state_dict(state["optimizers"][1])
        self.rng.bit_generator.state = state["rng"]


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

