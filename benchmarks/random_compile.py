"""What one random-draw site costs to compile on CPU, with JAX's two lowerings of threefry2x32.

A request program's XLA compile time grows with its random-draw sites (shuffles, fresh values,
sampled negatives, key splits): each is a threefry2x32 hash. On CPU, JAX lowers that hash as a
rolled loop of its 5 x 4 rounds (`jax._src.random.threefry2x32`, `use_rolled_loops=True`);
other platforms get the unrolled rounds. Both compute the same bits. This script compiles, in
one process and alternating, (a) an add (the floor any program pays), (b) `jax.random.randint`
over 8192 rows, (c) the CF negative draw (`batching.cf.sample_negatives`, 8 redraws) with each
lowering, and records compile seconds, run seconds and whether the outputs are equal. Then, with
the default (rolled) lowering, `randint` and a shuffle (uniform priorities + argsort, as a loader
pass's) under each of JAX's public key implementations (`jax.random.key(seed, impl=...)`:
threefry2x32, rbg, unsafe_rbg; rows with `key_impl`), alternated the same way.

    python benchmarks/random_compile.py --repeats 3 --out benchmarks/results/random_compile.json

It switches the CPU lowering through a private JAX hook (`mlir.register_lowering`), which is
why the library does not do so itself.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from train_speed import result_header, write_result  # benchmarks/ is this script's folder

ROWS = 8192


def use_lowering(kind: str) -> None:
    from jax._src.interpreters import mlir
    from jax._src.random import threefry2x32 as threefry

    rule = threefry._threefry2x32_cpu_lowering_rule if kind == "rolled" else threefry._threefry2x32_lowering_rule
    mlir.register_lowering(threefry.threefry2x32_p, rule, platform="cpu")


def timed(fn, *args) -> dict:
    started = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_seconds = time.perf_counter() - started
    out = jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(20):
        started = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - started)
    return {"compile_seconds": compile_seconds, "run_seconds": float(np.median(runs)), "checksum": int(np.asarray(out).sum())}


def programs(n_items: int):
    """Each program as a function of (key, users, positives)."""
    from erase_jax.batching.cf import sample_negatives

    return {
        "add": lambda key, users, positives: users + n_items,
        "randint": lambda key, users, positives: jax.random.randint(key, users.shape, 0, n_items),
        "negatives": lambda key, users, positives: sample_negatives(key, users, positives, n_items),
    }


KEY_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


def impl_programs(n_items: int):
    """Each program as a function of (typed key, users)."""
    def shuffle(key, users):
        return jnp.argsort(jax.random.uniform(key, users.shape) + (users * 0 + n_items))  # n_items: a new program

    return {"randint": lambda key, users: jax.random.randint(key, users.shape, 0, n_items) + users * 0 + n_items,
            "shuffle": shuffle}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    from erase_jax.batching.cf import PositiveIndex

    rng = np.random.default_rng(0)
    n_users, base_items = 943, 1682  # ML-100K's sizes, random positives (20 per user)
    users = jnp.asarray(rng.integers(0, n_users, ROWS).astype(np.int32))
    key = jax.random.PRNGKey(0)
    result = result_header(config=vars(args), rows=ROWS, results=[])
    for repeat in range(args.repeats):
        for kind in ("rolled", "unrolled"):
            use_lowering(kind)
            n_items = base_items + 2 * repeat + (kind == "unrolled")  # a new program each time (no in-process reuse)
            pos_users = np.repeat(np.arange(n_users), 20)
            positives = PositiveIndex.build(n_users, pos_users, rng.integers(0, n_items, len(pos_users)), n_items)
            for name, fn in programs(n_items).items():
                row = {"lowering": kind, "program": name, "repeat": repeat, "n_items": n_items,
                       **timed(fn, key, users, positives)}
                result["results"].append(row)
                print(f"{kind:8s} {name:9s} compile {row['compile_seconds']:.2f} s, run {row['run_seconds'] * 1e3:.2f} ms",
                      file=sys.stderr, flush=True)
    use_lowering("rolled")
    for repeat in range(args.repeats):
        for impl in KEY_IMPLS:
            typed = jax.random.key(0, impl=impl)
            n_items = base_items + 2 * args.repeats + 3 * repeat + KEY_IMPLS.index(impl)
            for name, fn in impl_programs(n_items).items():
                row = {"lowering": "rolled", "key_impl": impl, "program": name, "repeat": repeat, "n_items": n_items,
                       **timed(fn, typed, users)}
                result["results"].append(row)
                print(f"{impl:11s} {name:9s} compile {row['compile_seconds']:.2f} s, run {row['run_seconds'] * 1e3:.2f} ms",
                      file=sys.stderr, flush=True)
    # the same bits: each program's outputs under both lowerings, at one size
    same = {}
    for name in ("randint", "negatives"):
        outs = []
        for kind in ("rolled", "unrolled"):
            use_lowering(kind)
            jax.clear_caches()
            positives = PositiveIndex.build(n_users, np.repeat(np.arange(n_users), 2), np.tile([1, 2], n_users), base_items)
            outs.append(np.asarray(jax.jit(programs(base_items)[name])(key, users, positives)))
        same[name] = bool(np.array_equal(*outs))
    use_lowering("rolled")
    result["same_bits"] = same
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
