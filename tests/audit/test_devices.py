"""Shadows split over (forced host) devices train as on one device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import dataclasses, json, os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax, numpy as np
    from erase_jax.audit.assignment import assign_states, trained_mask
    from erase_jax.audit.devices import shadow_mesh, split_shadows
    from erase_jax.audit.shadows import ShadowSet, shadow_seeds
    from erase_jax.data.cf import CFTrainData
    from erase_jax.models import build_model
    from erase_jax.train import TrainConfig

    report = {"devices": jax.device_count()}
    rng = np.random.default_rng(0)
    keys = rng.choice(20 * 25, size=160, replace=False)
    users, items = (keys // 25).astype(np.int32), (keys % 25).astype(np.int32)
    audited = np.sort(rng.choice(160, 24, replace=False))
    for name in ("BPR", "LightGCN"):
        model = build_model(name, embedding_size=8)
        context = model.prepare(CFTrainData(20, 25, users, items))
        config = TrainConfig(epochs=2, batch_size=32, learning_rate=0.01, optimizer="adam")
        one = ShadowSet(model, context, config, 20, 25, users, items, audited, assign_states(4, 24, 0), shadow_seeds(0, 4))
        split = dataclasses.replace(one, mesh=shadow_mesh(2))
        kept = trained_mask(one.states)
        a, _ = one.train(kept)
        b, _ = split.train(kept)
        leaf = jax.tree.leaves(b)[0]
        report[name] = {
            "difference": max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))),
            "devices": len(leaf.sharding.device_set),
            "shadows_per_device": sorted({s.data.shape[0] for s in leaf.addressable_shards}),
        }
    try:
        split_shadows(np.zeros((3, 2)), shadow_mesh(2))
    except ValueError as error:
        report["uneven_error"] = str(error)
    print(json.dumps(report))
    """
)


@pytest.mark.slow  # a subprocess compiling BPR and LightGCN epochs twice, about a minute on 2 loaded cores
def test_shadows_split_over_two_host_devices_train_as_on_one():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["devices"] == 2
    for name in ("BPR", "LightGCN"):
        assert report[name]["difference"] < 1e-5, report[name]
        assert report[name]["devices"] == 2 and report[name]["shadows_per_device"] == [2], report[name]
    assert "multiple of 2" in report["uneven_error"]


def test_a_mesh_needs_existing_devices():
    from erase_jax.audit.devices import shadow_mesh

    with pytest.raises(ValueError, match="devices"):
        shadow_mesh(10_000)
