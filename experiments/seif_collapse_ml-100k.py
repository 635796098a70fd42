"""Why SEIF's defaults collapse BPR on ML-100K (issue 20): its steps switched off one at a time.

    python experiments/seif_collapse_ml-100k.py [--requests 1 5 20] [--epochs 100]

Trains BPR (`experiments/configs/bpr_ml-100k.yaml`, seed 2, the full 100 epochs with the best
validated parameters kept, as `retrain_reference_ml-100k.py`), then serves the first requests of
the sensitive scenario (Horror, fraction 0.003, ratings >= 3.5, forget-set seed 2; one user per
request) with SEIF variants, and measures test Recall@20 of the model after 1, 5, 20 requests
and the mean norm of the user and item embedding rows:

* `defaults`: the original's settings (erase std 0.6, final 0.005, 4 repair epochs, lr 7e-4);
* `no_erase`: seif_erase_std = seif_erase_std_final = 0 (the repair alone);
* `erase_only`: seif_repair_epochs = 0 (the noise alone, no repair);
* `no_erase_repair_x10`: no noise, repair lr 7e-3 (does the fine-tuning itself harm?);
* `erase_0.1`: seif_erase_std 0.1 (six times smaller noise).

Writes `experiments/results/seif_collapse_ml-100k.json` with the provenance block.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import erase_jax as ej

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

CONFIG = REPO_ROOT / "experiments" / "configs" / "bpr_ml-100k.yaml"
SCENARIO = dict(fraction=0.003, forget_rating_threshold=3.5)
VARIANTS = {
    "defaults": {},
    "no_erase": {"seif_erase_std": 0.0, "seif_erase_std_final": 0.0},
    "erase_only": {"seif_repair_epochs": 0},
    "no_erase_repair_x10": {"seif_erase_std": 0.0, "seif_erase_std_final": 0.0, "seif_learning_rate": 7e-3},
    "erase_0.1": {"seif_erase_std": 0.1},
}


def embedding_norms(params) -> dict:
    leaves = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
              for path, leaf in __import__("jax").tree_util.tree_flatten_with_path(params)[0]}
    return {name: float(np.linalg.norm(value, axis=-1).mean()) for name, value in leaves.items() if value.ndim == 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--run", default=str(REPO_ROOT / "runs" / "experiments" / "seif_collapse_ml-100k"),
                        help="the trained run's folder (a rerun reuses it)")
    parser.add_argument("--out", default=str(REPO_ROOT / "experiments" / "results" / "seif_collapse_ml-100k.json"))
    args = parser.parse_args()
    start = time.time()
    run = ej.train_model([f"train.epochs={args.epochs}", f"train.stopping_step={args.epochs}"], config=CONFIG, out=args.run)
    trained = {"test_recall@20": float(ej.evaluate(run)["test"]["recall@20"]), "norms": embedding_norms(run.params)}
    print(f"trained: {trained} ({time.time() - start:.0f} s)", flush=True)
    results = {}
    for name in args.variants:
        loop = ej.requests(run, "sensitive:Horror", "seif", options=VARIANTS[name], **SCENARIO)
        rows = []
        for n in sorted(args.requests):
            for _ in loop.take(n - loop.next_batch):
                pass
            rows.append({"requests": loop.next_batch,
                         "test_recall@20": float(ej.evaluate(run, params=loop.params)["test"]["recall@20"]),
                         "norms": embedding_norms(loop.params)})
            print(name, rows[-1], flush=True)
        results[name] = {"options": VARIANTS[name], "after": rows}
    out = {"provenance": provenance(), "config": str(CONFIG.relative_to(REPO_ROOT)), "epochs": args.epochs,
           "scenario": {"category": "Horror", "seed": 2, **SCENARIO}, "trained": trained, "variants": results,
           "wall_seconds": round(time.time() - start, 1)}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
