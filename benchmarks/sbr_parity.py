"""Numbers of the learned session-based models on a fixed synthetic batch, to compare two checkouts.

`dump` writes, per model (default hyperparameters, 60 items, prefixes up to 50): the initial
parameters, the loss and its gradient with dropout off and on (jitted, unbucketed and at a
bucket's width), the scores, the parameters after five jitted Adam steps, and the StableHLO
text of the jitted loss-and-gradient (without debug names), i.e. the program XLA compiles. Parameter paths
are written in one canonical form (no leading "params/", "layers/<i>" for a list entry or a
"layers_<i>" submodule), so a checkout whose parameter pytree nests differently compares
leaf by leaf. `compare` reports the largest absolute difference of every array and whether the programs'
texts are equal.

    PYTHONPATH=/path/to/old python benchmarks/sbr_parity.py dump /tmp/old.npz
    PYTHONPATH=$PWD python benchmarks/sbr_parity.py dump /tmp/new.npz
    python benchmarks/sbr_parity.py compare /tmp/old.npz /tmp/new.npz --out result.json

Only public model methods are used (`build_model`, `init`, `loss`, `output_loss_parts`,
`scores`), so any checkout with the model interface can be dumped.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

MODELS = ("GRU4Rec", "NARM", "SASRec", "SRGNN")
N_ITEMS, MAX_LENGTH, N_ROWS = 60, 50, 24


def sequence_shape(n_items: int, max_length: int):
    try:
        from erase_jax.models.sbr.base import SequenceShape
    except ImportError:  # the layout before models/sbr/
        from erase_jax.sbr import SequenceShape
    return SequenceShape(n_items, max_length)


def canonical(path) -> str:
    names = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
    if names and names[0] == "params":
        names = names[1:]
    return re.sub(r"layers_(\d+)", r"layers/\1", "/".join(names))


def flat(prefix: str, tree) -> dict[str, np.ndarray]:
    return {f"{prefix}:{canonical(path)}": np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def synthetic_batch(seed: int = 0, bucket: int | None = None) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    width = 32 if bucket is not None else MAX_LENGTH
    lengths = rng.integers(1, width + 1, N_ROWS)
    items = rng.integers(0, N_ITEMS, (N_ROWS, MAX_LENGTH))
    items[np.arange(MAX_LENGTH)[None, :] >= lengths[:, None]] = N_ITEMS
    weight = (rng.uniform(size=N_ROWS) > 0.2).astype(np.float32)
    batch = {"items": items.astype(np.int32), "lengths": lengths.astype(np.int32),
             "targets": rng.integers(0, N_ITEMS, N_ROWS).astype(np.int32), "weight": weight}
    if bucket is not None:
        batch["bucket"] = np.int32(bucket)  # width 32 of (8, 16, 32, 50)
    return {k: jnp.asarray(v) for k, v in batch.items()}


def dump_model(name: str) -> dict[str, np.ndarray]:
    import optax

    from erase_jax.models import build_model

    model = build_model(name)
    context = sequence_shape(N_ITEMS, MAX_LENGTH)
    params = model.init(jax.random.PRNGKey(0), context)
    out = flat("init", params)
    batch, bucketed = synthetic_batch(), synthetic_batch(seed=1, bucket=2)
    value_and_grad = jax.jit(jax.value_and_grad(lambda p, b, k: model.loss(p, context, b, k)))
    for label, b in (("full", batch), ("bucketed", bucketed)):
        for dropout, key in (("eval", None), ("dropout", jax.random.PRNGKey(1))):
            loss, grads = value_and_grad(params, b, key)
            out[f"loss_{label}_{dropout}:"] = np.asarray(loss)
            out.update(flat(f"grad_{label}_{dropout}", grads))
    # the program XLA compiles for the training gradient, without names and source locations
    lowered = value_and_grad.lower(params, bucketed, jax.random.PRNGKey(1)).as_text(debug_info=False)
    out["hlo_loss_grad:"] = np.asarray(re.sub(r'\s*\{?jax\.(result|arg)_info = "[^"]*"\}?,?', "", lowered))
    out["logits:"] = np.asarray(jax.jit(lambda p, b: model.output_loss_parts(p, context, b, None)[0])(params, batch))
    out["scores:"] = np.asarray(jax.jit(lambda p, q: model.scores(p, context, q))(params, batch))
    optimizer = optax.adam(1e-2)

    @jax.jit
    def step(p, state, key):
        grads = jax.grad(lambda p: model.loss(p, context, batch, key))(p)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    trained, state = params, optimizer.init(params)
    for index in range(5):
        trained, state = step(trained, state, jax.random.fold_in(jax.random.PRNGKey(2), index))
    out.update(flat("adam5", trained))
    return {f"{name}/{k}": v for k, v in out.items()}


def compare(old_path: str, new_path: str) -> dict:
    old, new = np.load(old_path), np.load(new_path)
    assert sorted(old.files) == sorted(new.files), sorted(set(old.files) ^ set(new.files))
    report: dict[str, dict] = {}
    for key in sorted(old.files):
        model, what = key.split("/", 1)
        kind = what.split(":", 1)[0]
        a, b = old[key], new[key]
        if a.dtype.kind == "U":  # program text
            report.setdefault(model, {})[kind] = {"identical_text": bool(a == b), "lines": str(a).count("\n")}
            continue
        assert a.shape == b.shape and a.dtype == b.dtype, key
        entry = report.setdefault(model, {}).setdefault(kind, {"arrays": 0, "max_abs_diff": 0.0, "bit_identical": True})
        entry["arrays"] += 1
        entry["max_abs_diff"] = max(entry["max_abs_diff"], float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0)))
        entry["bit_identical"] &= a.tobytes() == b.tobytes()
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    dump = sub.add_parser("dump")
    dump.add_argument("out")
    dump.add_argument("--models", nargs="+", default=list(MODELS))
    comparison = sub.add_parser("compare")
    comparison.add_argument("old")
    comparison.add_argument("new")
    comparison.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.command == "dump":
        arrays = {}
        for name in args.models:
            arrays.update(dump_model(name))
            print(f"{name}: {sum(k.startswith(name + '/') for k in arrays)} arrays", file=sys.stderr)
        np.savez(args.out, **arrays)
        return 0
    report = compare(args.old, args.new)
    text = json.dumps(report, indent=2)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)
    same = [e.get("bit_identical", e.get("identical_text")) for m in report.values() for e in m.values()]
    return 0 if all(same) else 1


if __name__ == "__main__":
    sys.exit(main())
