"""How the influence core's cost scales with the number of items and with the number of devices.

    python benchmarks/influence_scaling.py [--items 1000 4000 16000 64000] [--devices 1 2 4]
        [--out benchmarks/results/influence_scaling.json]

Items: a BPR model (embedding 64, 6,000 users) on synthetic rows; for each item count, the
seconds of one gradient and one Hessian-vector product of the loss over all parameters on a
4,096-row batch, and of one SCIF request (correct mode: removal gradient, CG on the request's
user rows) with 100 forget rows and 800 retain rows. Item count enters through the size of
the item table, which every full-parameter gradient and HVP writes.

Devices: the same HVP through `influence.data_parallel_loss` with the batch's rows split over
1, 2, 4 forced host devices (`--xla_force_host_platform_device_count`), each count in its own
process. On a CPU the forced devices share the machine's cores, so this measures the overhead
of the split and that it runs, not a speed-up; on a multi-GPU host the same code splits the
rows over real devices.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _timed(fn, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn())  # compile
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(fn())
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def _setting(n_users: int, n_items: int, n_rows: int, seed: int = 0):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from erase_jax.data.cf import CFTrainData
    from erase_jax.models import build_model

    model = build_model("BPR", embedding_size=64)
    context = model.prepare(CFTrainData(n_users, n_items, np.zeros(1, np.int32), np.zeros(1, np.int32)))
    params = model.init(jax.random.PRNGKey(seed), context)
    rng = np.random.default_rng(seed)

    def rows(n, users=None):
        users = rng.integers(0, n_users, n) if users is None else users
        return {
            "users": jnp.asarray(users, jnp.int32),
            "pos": jnp.asarray(rng.integers(0, n_items, n), jnp.int32),
            "neg": jnp.asarray(rng.integers(0, n_items, n), jnp.int32),
            "weight": jnp.ones(n, jnp.float32),
        }

    return model, context, params, rows(n_rows), rows


def items_case(n_items: int, repeats: int) -> dict:
    import jax
    import numpy as np

    from erase_jax.unlearn import build_method
    from erase_jax.unlearn.influence.hvp import hvp
    from erase_jax.unlearn.methods.base import RequestData

    model, context, params, batch, rows = _setting(6000, n_items, 4096)
    key = jax.random.PRNGKey(0)
    loss = lambda p: model.loss(p, context, batch, key)
    vector = jax.tree.map(lambda x: x * 0 + 1e-3, params)
    gradient = jax.jit(jax.grad(loss))
    product = jax.jit(lambda p, v: hvp(loss, p, v))

    forget = rows(128, np.full(128, 7))
    forget["weight"] = forget["weight"].at[100:].set(0.0)
    clean = {**forget, "weight": forget["weight"].at[:3].set(0.0)}  # 3 forgotten rows
    retain = rows(1024)
    retain["weight"] = retain["weight"].at[800:].set(0.0)
    request = RequestData(0, np.array([7]), forget, clean, retain, 100, 3, context, context)
    method = build_method("scif")
    scif = lambda: method.unlearn(model, params, (), request, key)[0]
    return {
        "n_items": n_items,
        "gradient_seconds": _timed(lambda: gradient(params), repeats),
        "hvp_seconds": _timed(lambda: product(params, vector), repeats),
        "scif_request_seconds": _timed(scif, repeats),
    }


DEVICE_SCRIPT = """
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
sys.path.insert(0, sys.argv[2])
import jax
from influence_scaling import _setting, _timed
from erase_jax.unlearn.influence.sharding import data_parallel_loss
from erase_jax.unlearn.influence.hvp import hvp
model, context, params, batch, rows = _setting(6000, 4000, 16384)
loss = data_parallel_loss(model, context, jax.random.PRNGKey(0))
vector = jax.tree.map(lambda x: x * 0 + 1e-3, params)
product = jax.jit(lambda p, v: hvp(lambda q: loss(q, batch), p, v))
print(json.dumps({"devices": jax.local_device_count(), "hvp_seconds_16k_rows": _timed(lambda: product(params, vector), 10)}))
"""


def devices_case(n_devices: int) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", DEVICE_SCRIPT, str(n_devices), str(HERE)], capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"device run with {n_devices} devices failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from train_speed import result_header, write_result

    record = result_header(config=vars(args))
    record["items"] = [items_case(n, args.repeats) for n in args.items]
    for row in record["items"]:
        print(json.dumps(row), flush=True)
    record["devices"] = [devices_case(n) for n in args.devices]
    for row in record["devices"]:
        print(json.dumps(row), flush=True)
    write_result(record, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
