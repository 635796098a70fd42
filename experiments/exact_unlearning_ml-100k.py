"""SISA and RecEraser through the ml-100k Horror unlearning protocol (issue 5), next to the retrain.

    python experiments/exact_unlearning_ml-100k.py [--run RUN] [--out SCENARIO_DIR] [--methods sisa receraser]

The trained run is the BPR of the original's CF protocol (`experiments/configs/bpr_ml-100k.yaml`,
trained by `experiments/unlearning_protocol.py`); the forget set is its sensitive-category file
(Horror, seed 2, fraction 0.003, ratings >= 3.5: 98 single-user requests). The matched retrains
are copied from the run's own scenario folder, so every method here is compared with the same
four retrains. Each method runs the sequential protocol (4 quarter checkpoints) with its options
from `experiments/configs/bpr_ml-100k-shards-methods.yaml`; a killed run resumes from its last
request. Writes the usual files under `--out` (`<method>/unlearning.csv`, `requests.csv`; all
rows in `unlearning.csv`) and the 1-minute load average around each method in `load.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import yaml

from erase_jax.unlearn.commands import unlearn
from erase_jax.unlearn.retrain import RETRAIN_DIR
from erase_jax.unlearn.runner import UnlearnConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = Path("runs/experiments/unlearning_protocol_ml-100k")
FORGET_FILE = "ml-100k_unlearn_pairs_sensitive_category_Horror_seed_2_unlearning_fraction_0.003.inter"
METHODS = REPO_ROOT / "experiments" / "configs" / "bpr_ml-100k-shards-methods.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(PROTOCOL / "bpr_clean"))
    parser.add_argument("--out", default="runs/exact_ml100k_shards/sensitive")
    parser.add_argument("--methods", nargs="+", default=["sisa", "receraser"])
    parser.add_argument("--options", default=str(METHODS), help="YAML: method name -> options")
    args = parser.parse_args()
    run, out = Path(args.run).resolve(), Path(args.out).resolve()
    retrains = run / "unlearn" / "sensitive" / RETRAIN_DIR
    if not (out / RETRAIN_DIR).exists():
        shutil.copytree(retrains, out / RETRAIN_DIR)  # the run's own four retrains
    options = yaml.safe_load(Path(args.options).read_text())
    loads = json.loads((out / "load.json").read_text()) if (out / "load.json").exists() else {}
    for name in args.methods:
        config = UnlearnConfig(
            method=name, method_options=options[name], scenario="sensitive", category="Horror", fraction=0.003,
            forget_rating_threshold=3.5, forget_file=str(run.parent / "forget_sets" / FORGET_FILE),
        )
        before, started = os.getloadavg()[0], time.perf_counter()
        unlearn(run, config, str(out))
        loads[name] = {"load_before": before, "load_after": os.getloadavg()[0], "wall_seconds": time.perf_counter() - started}
        (out / "load.json").write_text(json.dumps(loads, indent=2))
        print(f"{name}: done in {loads[name]['wall_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
