"""SISA and RecEraser through the ml-100k Horror unlearning protocol (issue 5), next to the retrain.

    python experiments/exact_unlearning_ml-100k.py [--run RUN] [--out SCENARIO_DIR] [--methods sisa receraser]

The trained run is the BPR of the original's CF protocol (`experiments/configs/bpr_ml-100k.yaml`,
trained by `experiments/unlearning_protocol.py`); the forget set is its sensitive-category file
(Horror, seed 2, fraction 0.003, ratings >= 3.5: 98 single-user requests). The matched retrains
are copied from the run's own scenario folder, so every method here is compared with the same
four retrains. Each method runs the sequential protocol (4 quarter checkpoints) with its options
from `experiments/configs/bpr_ml-100k-shards-methods.yaml`; a killed run resumes from its last
request. Writes the usual files under `--out` (`<method>/unlearning.csv`, `requests.csv`; all
rows in `unlearning.csv`) and the 1-minute load average around each method in `load.json`, and
a summary (per-checkpoint quality and exposure, per-request cost, what each request retrained
and why) to `experiments/results/exact_unlearning_ml-100k.md`, with the `unlearning.csv` and each
method's `requests.csv` beside it (`--results` names another stem), and the same summary with
the provenance (command, config, commit, machine, date; `benchmarks/provenance.py`) as `.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from erase_jax.unlearn.protocol.jobs import unlearn
from erase_jax.unlearn.protocol.retrain import RETRAIN_DIR
from erase_jax.unlearn.protocol.run import UnlearnConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)
from unlearning_protocol import table  # noqa: E402  (the sibling script's markdown table)

PROTOCOL = Path("runs/experiments/unlearning_protocol_ml-100k")
FORGET_FILE = "ml-100k_unlearn_pairs_sensitive_category_Horror_seed_2_unlearning_fraction_0.003.inter"
METHODS = REPO_ROOT / "experiments" / "configs" / "bpr_ml-100k-shards-methods.yaml"
RESULTS = REPO_ROOT / "experiments" / "results" / "exact_unlearning_ml-100k"
QUALITY = ["method", "checkpoint_idx", "n_unlearned_users", "n_removed", "test_recall@20", "test_ndcg@20",
           "pct_users_with_sensitive@20", "forgotten_hit@20"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(PROTOCOL / "bpr_clean"))
    parser.add_argument("--out", default="runs/exact_ml100k_shards/sensitive")
    parser.add_argument("--methods", nargs="+", default=["sisa", "receraser"])
    parser.add_argument("--options", default=str(METHODS), help="YAML: method name -> options")
    parser.add_argument("--results", default=str(RESULTS), help="stem of the summary .md and the copied CSVs")
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
    write_summary(out, [m for m in ("sisa", "receraser") if (out / m / "requests.csv").exists()], loads, Path(args.options), Path(args.results))


def request_summary(requests: pd.DataFrame) -> dict:
    """Cost and retrained shards of a method's requests: all of them, and split by whether the
    request removed validation rows (each of those retrains the shards that validated on them)."""
    def part(rows: pd.DataFrame) -> dict:
        shards = rows["n_retrained_shards"]
        return {
            "requests": len(rows),
            "seconds median / p90 / mean / max": " / ".join(f"{rows['seconds'].quantile(q):.2f}" for q in (0.5, 0.9))
            + f" / {rows['seconds'].mean():.2f} / {rows['seconds'].max():.1f}",
            "shards retrained (mean; 0 / 1 / 2 / >= 3)": f"{shards.mean():.2f}; {(shards == 0).sum()} / {(shards == 1).sum()} / "
            f"{(shards == 2).sum()} / {(shards >= 3).sum()}",
        }

    with_valid = requests["removed_valid_rows"] > 0
    return {
        "all": part(requests), "removing validation rows": part(requests[with_valid]),
        "removing no validation row": part(requests[~with_valid]),
        "removed rows left in retrained shards": int(requests["forgotten_rows_in_retrained_shards"].fillna(0).sum()),
    }


def md_table(frame: pd.DataFrame) -> str:
    return table(list(map(str, frame.columns)), frame.astype(str).values.tolist())


def write_summary(out: Path, methods: list[str], loads: dict, options: Path, stem: Path) -> None:
    """`stem`.md: quality and exposure per checkpoint next to the original and the retrain, and
    each method's request cost; the CSVs it is made from are copied beside it."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    quality = pd.read_csv(out / "unlearning.csv")
    shutil.copyfile(out / "unlearning.csv", f"{stem}_unlearning.csv")
    record = {"provenance": provenance(config={"run": os.path.relpath(out, REPO_ROOT), "methods": os.path.relpath(options, REPO_ROOT)}),
              "unlearning_csv": f"{stem.name}_unlearning.csv", "methods": {}}
    lines = [f"# SISA and RecEraser, ML-100K BPR, sensitive category Horror ({len(methods)} methods)", "",
             f"Run folder: `{os.path.relpath(out, REPO_ROOT)}`; method options `{os.path.relpath(options, REPO_ROOT)}`.", "",
             md_table(quality[QUALITY].round(4)), ""]
    for name in methods:
        requests = pd.read_csv(out / name / "requests.csv")
        shutil.copyfile(out / name / "requests.csv", f"{stem}_{name}_requests.csv")
        summary = request_summary(requests)
        record["methods"][name] = {**loads[name], "requests_csv": f"{stem.name}_{name}_requests.csv", "requests": dict(summary)}
        lines += [f"## {name}", "", f"Wall {loads[name]['wall_seconds']:.0f} s, load average {loads[name]['load_before']:.1f} "
                  f"before and {loads[name]['load_after']:.1f} after; removed rows left in retrained shards: "
                  f"{summary.pop('removed rows left in retrained shards')}.", "",
                  md_table(pd.DataFrame(summary).T.rename_axis("which requests").reset_index()), ""]
    Path(f"{stem}.md").write_text("\n".join(lines))
    Path(f"{stem}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {stem}.md", flush=True)


if __name__ == "__main__":
    main()
