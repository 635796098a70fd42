"""A training epoch of DNNTSP or Sets2Sets: erase-jax against the public PyTorch code, the same users, one run.

    python benchmarks/nbr_epoch_side_by_side.py [--model DNNTSP|Sets2Sets] [--users 1000] [--rounds 2] \
        [--torch-python /work/torch-venv/bin/python] [--out benchmarks/results/nbr_epoch_side_by_side.json]

Both train on the train-phase examples of the same seeded sample of Ta-Feng users (the sample
`benchmarks/nbr_pytorch_baseline.py run --users N --seed S` draws: `default_rng(S).choice` over the
exported train users, which are erase-jax's own examples in the same order), with the model's
Ta-Feng config (`experiments/configs/<model>_tafeng.yaml`): DNNTSP batch 64, 48 history baskets;
Sets2Sets batch 1 (one Adam step per user, as the original), 98 history baskets; Adam lr 1e-3.
Rounds alternate: one PyTorch epoch (a fresh `nbr_pytorch_baseline.py run --epochs 1` in its own
interpreter, 2 torch threads; its training pass's wall seconds, which include RC's Python data
feeding, not its evaluation), then one erase-jax epoch (the jitted epoch of `erase_jax.train`,
one `lax.scan` over the batches, compiled once before the first round and timed apart). Wall
and CPU seconds of both (CPU: every thread of the process; under a shared machine's load the
CPU ratio is the steadier one, the wall ratio depends on what else ran in each round).

`--phases K` adds where erase-jax's step time goes: the loss and gradient of one batch, and the
optimiser update, each jitted on its own and timed over K batches of the sample (their sum is
near, not equal to, a step of the scanned epoch: separate calls copy the state instead of
updating it in place). Needs the split exported first (`nbr_pytorch_baseline.py export`) and
the torch venv (see that script).
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

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

from erase_jax.batching.baskets import BasketBatcher  # noqa: E402
from erase_jax.config import load_config  # noqa: E402
from erase_jax.run import build_experiment  # noqa: E402
from erase_jax.train import init_state, make_optimizer, make_train_epoch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("DNNTSP", "Sets2Sets")


def config_path(model: str) -> Path:
    return ROOT / "experiments" / "configs" / f"{model.lower()}_tafeng.yaml"


def torch_epoch(python: str, model: str, users: int, seed: int, workdir: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one PyTorch training pass of `model` on the sample (a fresh run)."""
    out = workdir / "torch.json"
    for stale in (out, workdir / "torch.state.pt"):
        stale.unlink(missing_ok=True)
    command = [python, str(ROOT / "benchmarks" / "nbr_pytorch_baseline.py"), "run", "--model", model, "--epochs", "1",
               "--users", str(users), "--seed", str(seed), "--out", str(out), "--state", str(workdir / "torch.state.pt")]
    subprocess.run(command, check=True, capture_output=True, text=True)
    epoch = json.loads(out.read_text())["epochs"][0]
    return float(epoch["train_wall_s"]), float(epoch["train_cpu_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--model", choices=MODELS, default="DNNTSP")
    parser.add_argument("--phases", type=int, default=0, help="time loss+gradient and the update apart over this many batches")
    parser.add_argument("--torch-python", default="/work/torch-venv/bin/python")
    parser.add_argument("--out", default=None, help="default benchmarks/results/nbr_epoch_side_by_side[_<model>].json")
    args = parser.parse_args()
    suffix = "" if args.model == "DNNTSP" else f"_{args.model.lower()}"
    args.out = args.out or str(ROOT / "benchmarks" / "results" / f"nbr_epoch_side_by_side{suffix}.json")
    config_file = config_path(args.model)
    if args.users < 1:
        raise SystemExit("--users must be at least 1")

    config = load_config(str(config_file), [f"seed={args.seed}"])
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
    phases = step_phases(model, optimizer, state, context, batcher, args) if args.phases else None

    load_start = os.getloadavg()
    torch_seconds, jax_seconds, torch_cpu, jax_cpu = [], [], [], []
    with tempfile.TemporaryDirectory() as workdir:
        for round_ in range(args.rounds):
            wall, cpu = torch_epoch(args.torch_python, args.model, args.users, args.seed, Path(workdir))
            torch_seconds.append(wall)
            torch_cpu.append(cpu)
            started, cpu_started = time.perf_counter(), time.process_time()
            state, loss = compiled(state, context, batcher, batcher.shuffled_order(args.seed, round_))
            float(loss)  # waits for the epoch
            jax_seconds.append(time.perf_counter() - started)
            jax_cpu.append(time.process_time() - cpu_started)
            print(f"round {round_}: PyTorch {torch_seconds[-1]:.1f} s, erase-jax {jax_seconds[-1]:.2f} s", flush=True)

    record = {
        "provenance": provenance(config={"config": str(config_file.relative_to(ROOT)), "seed": args.seed, "users": args.users,
                                         "model": args.model}),
        "model": args.model, "users": args.users, "train_examples": len(sample), "batches": batcher.n_batches,
        "torch_epoch_seconds": torch_seconds, "jax_epoch_seconds": jax_seconds, "jax_compile_seconds": compile_seconds,
        "speedup_median": statistics.median(torch_seconds) / statistics.median(jax_seconds),
        "torch_epoch_cpu_seconds": torch_cpu, "jax_epoch_cpu_seconds": jax_cpu,
        "speedup_cpu_median": statistics.median(torch_cpu) / statistics.median(jax_cpu),
        "torch_seconds_per_example": statistics.median(torch_seconds) / len(sample),
        "jax_seconds_per_batch": statistics.median(jax_seconds) / batcher.n_batches,
        **({"jax_step_phases": phases} if phases else {}),
        "load_average_at_start": load_start, "load_average_at_end": os.getloadavg(),
    }
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"speedup {record['speedup_median']:.1f}x; wrote {args.out}")


def step_phases(model, optimizer, state, context, batcher, args) -> dict:
    """Median seconds of the loss and gradient of one batch, and of the optimiser update, each
    jitted apart (compiled first), over `args.phases` batches of the epoch's order."""
    batches = batcher.epoch(None, batcher.shuffled_order(args.seed, 0))
    grad_fn = jax.jit(jax.value_and_grad(model.loss))
    update_fn = jax.jit(lambda grads, opt_state, params: optimizer.update(grads, opt_state, params))
    key = jax.random.PRNGKey(args.seed)
    grad_seconds, update_seconds = [], []
    for index in range(min(args.phases, batcher.n_batches) + 1):  # the first call compiles
        batch = jax.tree.map(lambda leaf, i=index: leaf[i], batches)
        started = time.perf_counter()
        loss, grads = jax.block_until_ready(grad_fn(state.params, context, batch, key))
        middle = time.perf_counter()
        jax.block_until_ready(update_fn(grads, state.opt_state, state.params))
        if index:
            grad_seconds.append(middle - started)
            update_seconds.append(time.perf_counter() - middle)
    n_params = sum(leaf.size for leaf in jax.tree.leaves(state.params))
    return {"batches": len(grad_seconds), "loss_and_grad_seconds": statistics.median(grad_seconds),
            "update_seconds": statistics.median(update_seconds), "parameters": int(n_params)}


if __name__ == "__main__":
    main()
