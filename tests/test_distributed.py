"""`jax.distributed`: two processes on this machine (CPU collectives, gloo; coordinator on
localhost) train BPR with its tables split over both processes' devices, and get the epochs
that one process on one device gets."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    process_id, n_processes, port = (int(a) for a in sys.argv[1:4])
    MODELS = ("BPR",)  # LightGCN's split tables are checked on forced host devices (test_sharded_ranking)
    if n_processes > 1:
        jax.distributed.initialize(f"localhost:{port}", num_processes=n_processes, process_id=process_id)
    from jax.experimental import multihost_utils
    from erase_jax.batching.cf import CFBatcher
    from erase_jax.config import TrainConfig
    from erase_jax.data.cf import CFTrainData
    from erase_jax.models import build_model
    from erase_jax.table_sharding import shard_tables, table_mesh
    from erase_jax.train import init_state, make_optimizer, make_train_epoch

    rng = np.random.default_rng(0)  # the same data in every process
    train = CFTrainData(64, 48, rng.integers(0, 64, 900).astype(np.int32), rng.integers(0, 48, 900).astype(np.int32))
    mesh = table_mesh()
    report = {"processes": jax.process_count(), "devices": jax.device_count(), "local": jax.local_device_count()}
    for name in MODELS:
        model = build_model(name, embedding_size=8)
        batcher = CFBatcher.build(train, 128)
        optimizer = make_optimizer(TrainConfig(learning_rate=0.01), batcher.n_batches)
        epoch = make_train_epoch(model, optimizer)
        context = model.prepare(train)
        state = shard_tables(init_state(model, context, optimizer, 0), mesh)
        context, batcher_here = shard_tables((context, batcher), mesh, tables=())
        losses = []
        for e in range(2):
            order = shard_tables(batcher.shuffled_order(0, e), mesh, tables=())
            state, loss = epoch(state, context, batcher_here, order)
            losses.append(float(loss.addressable_data(0)))  # replicated: every process holds it
        params = [np.asarray(multihost_utils.process_allgather(leaf, tiled=True)).tolist()
                  for leaf in jax.tree.leaves(state.params)]
        table = state.params["params"]["item_embedding"]["embedding"]
        report[name] = {"losses": losses, "params": params,
                        "local_item_rows": sum(s.data.shape[0] for s in table.addressable_shards)}
    print(json.dumps(report))
    if n_processes > 1:
        jax.distributed.shutdown()
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def run_workers(n_processes: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    port = free_port()
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(i), str(n_processes), str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(n_processes)
    ]
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def test_two_processes_train_as_one():
    (single,) = run_workers(1)
    pair = run_workers(2)
    assert single["devices"] == 1
    for report in pair:
        assert (report["processes"], report["devices"], report["local"]) == (2, 2, 1)
        for name in ("BPR",):
            np.testing.assert_allclose(report[name]["losses"], single[name]["losses"], rtol=1e-5)
            for got, want in zip(report[name]["params"], single[name]["params"]):
                np.testing.assert_allclose(got, want, atol=1e-5)
            assert report[name]["local_item_rows"] == 24  # each process holds half of the 48 item rows
