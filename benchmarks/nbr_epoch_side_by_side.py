"""A DNNTSP training epoch: erase-jax against the public PyTorch DNNTSP, the same users, one run.

    python benchmarks/nbr_epoch_side_by_side.py [--users 1000] [--rounds 2] \
        [--torch-python /work/torch-venv/bin/python] [--out benchmarks/results/nbr_epoch_side_by_side.json]

Both train on the train-phase examples of the same seeded sample of Ta-Feng users (the sample
`benchmarks/nbr_pytorch_baseline.py run --users N --seed S` draws: `default_rng(S).choice` over the
exported train users, which are erase-jax's own examples in the same order), batch 64, Adam lr
1e-3, 48 history baskets. Rounds alternate: one PyTorch epoch (a fresh `nbr_pytorch_baseline.py
run --epochs 1` in its own interpreter, 2 torch threads; its training pass's wall seconds, which
include RC's Python graph building, not its evaluation), then one erase-jax epoch (the jitted
epoch of `erase_jax.train`, compiled once before the first round and timed apart). Needs the
split exported first (`nbr_pytorch_baseline.py export`) and the torch venv (see that script).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

from erase_jax.batching.baskets import BasketBatcher  # noqa: E402
from erase_jax.config import load_config  # noqa: E402
from erase_jax.run import build_experiment  # noqa: E402
from erase_jax.train import init_state, make_optimizer, make_train_epoch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "experiments" / "configs" / "dnntsp_tafeng.yaml"


def torch_epoch(python: str, users: int, seed: int, workdir: Path) -> float:
    """Wall seconds of one PyTorch DNNTSP training pass on the sample (a fresh run)."""
    out = workdir / "torch.json"
    for stale in (out, workdir / "torch.state.pt"):
        stale.unlink(missing_ok=True)
    command = [python, str(ROOT / "benchmarks" / "nbr_pytorch_baseline.py"), "run", "--model", "DNNTSP", "--epochs", "1",
               "--users", str(users), "--seed", str(seed), "--out", str(out), "--state", str(workdir / "torch.state.pt")]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return float(json.loads(out.read_text())["epochs"][0]["train_wall_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--torch-python", default="/work/torch-venv/bin/python")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "nbr_epoch_side_by_side.json"))
    args = parser.parse_args()

    config = load_config(str(CONFIG), [f"seed={args.seed}"])
    experiment = build_experiment(config)
    train = experiment.examples.train
    keep = set(np.random.default_rng(args.seed).choice([int(u) for u in train.users], size=args.users, replace=False).tolist())
    sample = train.select(np.flatnonzero(np.isin(train.users, sorted(keep))))
    batcher = BasketBatcher.build(sample, config.train.batch_size, config.basket.mix_lengths)
    model, context = experiment.model, experiment.model.prepare(sample)
    optimizer = make_optimizer(config.train, batcher.n_batches)
    state = init_state(model, context, optimizer, args.seed)
    train_epoch = make_train_epoch(model, optimizer)
    started = time.perf_counter()
    compiled = train_epoch.lower(state, context, batcher, batcher.shuffled_order(args.seed, 0)).compile()
    compile_seconds = time.perf_counter() - started

    torch_seconds, jax_seconds = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for round_ in range(args.rounds):
            torch_seconds.append(torch_epoch(args.torch_python, args.users, args.seed, Path(workdir)))
            started = time.perf_counter()
            state, loss = compiled(state, context, batcher, batcher.shuffled_order(args.seed, round_))
            float(loss)  # waits for the epoch
            jax_seconds.append(time.perf_counter() - started)
            print(f"round {round_}: PyTorch {torch_seconds[-1]:.1f} s, erase-jax {jax_seconds[-1]:.2f} s", flush=True)

    record = {
        "provenance": provenance(config={"config": str(CONFIG.relative_to(ROOT)), "seed": args.seed, "users": args.users}),
        "users": args.users, "train_examples": len(sample), "batches": batcher.n_batches,
        "torch_epoch_seconds": torch_seconds, "jax_epoch_seconds": jax_seconds, "jax_compile_seconds": compile_seconds,
        "speedup_median": statistics.median(torch_seconds) / statistics.median(jax_seconds),
        "load_average_at_end": os.getloadavg(),
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"speedup {record['speedup_median']:.1f}x; wrote {args.out}")


if __name__ == "__main__":
    main()
