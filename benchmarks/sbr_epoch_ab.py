"""Training-epoch time of the session-based models in two checkouts, interleaved on one machine.

For each model, one worker process per checkout (its PYTHONPATH) builds the configuration's
data (`experiments/configs/<model>_ml-100k-seq.yaml`), initialises the training state from
the configuration's seed and compiles the training epoch; then the driver asks the workers
for epochs in turn, one at a time, the order alternating (A B, B A, A B, ...), so both
checkouts see the same load on a shared machine. Every worker trains epochs 0, 1, 2, ... of
the same run, so their losses are comparable epoch by epoch. Epoch 0 (one-off costs) is
recorded but left out of the medians.

    python benchmarks/sbr_epoch_ab.py --checkouts /path/to/old $PWD --labels before after \
        --repeats 3 --out benchmarks/results/flax_sbr_epoch_before_after.json

The driver imports nothing from the checkouts; a worker needs only `build_experiment`,
`init_state`, `make_optimizer`, `make_train_epoch` and the sequence batcher, in the layout
before or after `erase_jax/batching/`.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
MARK = "@@ "  # protocol lines on a worker's stdout


def worker(model_name: str) -> int:
    """Builds, initialises and compiles, then trains one epoch per "epoch" line on stdin."""
    import jax

    from erase_jax.config import load_config
    from erase_jax.run import build_experiment
    from erase_jax.train import init_state, make_optimizer, make_train_epoch

    try:
        from erase_jax.batching.sequences import SequenceBatcher
    except ImportError:  # the layout before erase_jax/batching/
        from erase_jax.sbr import SequenceBatcher

    def send(**message):
        print(MARK + json.dumps(message), flush=True)

    config = load_config(CONFIGS / f"{model_name.lower()}_ml-100k-seq.yaml", [])
    started = time.perf_counter()
    experiment = build_experiment(config)
    build_seconds = time.perf_counter() - started
    train = experiment.examples.train if hasattr(experiment, "examples") else experiment.task.train
    batcher = SequenceBatcher.build(train, config.train.batch_size)
    optimizer = make_optimizer(config.train, batcher.n_batches)
    started = time.perf_counter()
    state = init_state(experiment.model, experiment.context, optimizer, config.seed)
    jax.block_until_ready(state)
    init_seconds = time.perf_counter() - started
    train_epoch = make_train_epoch(experiment.model, optimizer)
    started = time.perf_counter()
    compiled = train_epoch.lower(state, experiment.context, batcher, batcher.shuffled_order(config.seed, 0)).compile()
    compile_seconds = time.perf_counter() - started
    send(ready=True, model_file=inspect.getfile(type(experiment.model)), build_seconds=build_seconds, init_seconds=init_seconds, compile_seconds=compile_seconds,
         batches_per_epoch=batcher.n_batches, jax=jax.__version__, devices=[str(d) for d in jax.devices()])
    epoch = 0
    for line in sys.stdin:
        if line.strip() != "epoch":
            break
        load = os.getloadavg()
        started, cpu_started = time.perf_counter(), time.process_time()
        state, loss = compiled(state, experiment.context, batcher, batcher.shuffled_order(config.seed, epoch))
        loss = float(loss)  # waits for the epoch
        send(epoch=epoch, seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu_started,
             loss=loss, loss_hex=float.hex(loss), load_average_start=load)
        epoch += 1
    return 0


class Worker:
    def __init__(self, checkout: str, model_name: str, log: Path):
        env = {**os.environ, "PYTHONPATH": checkout}
        self.log = open(log, "w")
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", model_name], env=env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)

    def receive(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RuntimeError(f"worker ended (exit {self.process.wait()}); see {self.log.name}")

    def epoch(self) -> dict:
        self.process.stdin.write("epoch\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self):
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait()
        self.log.close()


def machine_facts() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"nproc": os.cpu_count(), "cpu_model": cpu, "platform": platform.platform(), "python": platform.python_version()}


def measure(model_name: str, checkouts: list[str], labels: list[str], repeats: int, log_dir: Path) -> dict:
    workers = {}
    setup = {}
    for label, checkout in zip(labels, checkouts):  # one at a time: compiles do not overlap
        workers[label] = Worker(checkout, model_name, log_dir / f"{model_name}_{label}.log")
        setup[label] = workers[label].receive()
        print(f"[{model_name}] {label} ready: {setup[label]}", file=sys.stderr, flush=True)
    epochs = {label: [] for label in labels}
    order = []
    for repeat in range(repeats + 1):  # repeat 0: the untimed first epoch
        for label in (labels if repeat % 2 == 0 else labels[::-1]):
            epochs[label].append(workers[label].epoch())
            order.append(label)
            e = epochs[label][-1]
            print(f"[{model_name}] {label} epoch {e['epoch']} {e['seconds']:.2f}s (cpu {e['cpu_seconds']:.2f}s) "
                  f"loss {e['loss']:.6f} load {e['load_average_start'][0]:.1f}", file=sys.stderr, flush=True)
    for w in workers.values():
        w.close()
    result = {"order": order}
    for label in labels:
        timed = epochs[label][1:]
        result[label] = {
            **setup[label],
            "epochs": epochs[label],
            "median_epoch_seconds": statistics.median(e["seconds"] for e in timed),
            "median_epoch_cpu_seconds": statistics.median(e["cpu_seconds"] for e in timed),
        }
    a, b = labels
    result["ratio_median_epoch_seconds"] = result[b]["median_epoch_seconds"] / result[a]["median_epoch_seconds"]
    result["ratio_median_epoch_cpu_seconds"] = result[b]["median_epoch_cpu_seconds"] / result[a]["median_epoch_cpu_seconds"]
    result["paired_ratios"] = [eb["seconds"] / ea["seconds"] for ea, eb in zip(epochs[a][1:], epochs[b][1:])]
    result["losses_identical"] = [ea["loss_hex"] for ea in epochs[a]] == [eb["loss_hex"] for eb in epochs[b]]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--checkouts", nargs=2, metavar=("A", "B"))
    parser.add_argument("--labels", nargs=2, default=["before", "after"])
    parser.add_argument("--models", nargs="+", default=["GRU4Rec", "NARM", "SASRec", "SRGNN"])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per checkout and model")
    parser.add_argument("--logs", default="/tmp/sbr_epoch_ab", help="folder for the workers' stderr")
    parser.add_argument("--what", default="", help="what the two checkouts are, for the record")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    log_dir = Path(args.logs)
    log_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "what": args.what,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "checkouts": dict(zip(args.labels, args.checkouts)),
        "load_average_start": os.getloadavg(),
        "models": {},
    }
    for name in args.models:
        result["models"][name] = measure(name, args.checkouts, args.labels, args.repeats, log_dir)
        m = result["models"][name]
        print(f"{name}: median epoch {args.labels[0]} {m[args.labels[0]]['median_epoch_seconds']:.2f}s, "
              f"{args.labels[1]} {m[args.labels[1]]['median_epoch_seconds']:.2f}s, ratio "
              f"{m['ratio_median_epoch_seconds']:.3f}; losses identical: {m['losses_identical']}", file=sys.stderr, flush=True)
        result["load_average_end"] = os.getloadavg()
        if args.out:  # after every model, so a long run keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if not args.out:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
