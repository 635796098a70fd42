"""The sequential unlearning protocol on next-basket data: DNNTSP on Ta-Feng, three scenarios.

Superseded by the grid `experiments/grids/nbr_tafeng.yaml` (the same settings, all scenarios and
methods in one leaderboard), whose `python experiments/leaderboard_rows.py experiments/grids/nbr_tafeng.yaml
--scenario <s> --out experiments/results/nbr_unlearning_tafeng_<s>.json` writes the result file
the results page reads. To be removed once the scenarios running with it now have their results in.

    python experiments/nbr_unlearning_tafeng.py --scenario random|fraud|category
        [--model DNNTSP] [--epochs 20] [--eval-step 5] [--fraction F]
        [--methods untouched scif gif ...] [--out runs/experiments/nbr_unlearning_tafeng]

1. `erase-jax train` with `experiments/configs/<model>_tafeng.yaml` (the original's NBR split:
   users with >= 4 baskets, train target basket n-3, valid n-2, test n-1, 48 history baskets)
   for a fixed budget of `--epochs` epochs, validating every `--eval-step` (the best validated
   epoch is kept). The random and category scenarios share one model (trained with the synthetic
   category file, which changes nothing in training); fraud trains on poisoned data
   (`data.spam_ratio=0.01`: ceil(0.01 U / 0.99) fake users, next-basket spec 4.4).
2. `erase-jax retrain --checkpoint-idx all`: the four matched retrains, same settings, each
   really without the first k requests' data (for fraud: without those fake users).
3. `erase-jax unlearn --method M` for every approximate method and `untouched` (do nothing),
   each evaluated against the retrains, then `erase-jax report` on the scenario folder.

Scenarios:
* random: whole users among those with >= 4 baskets until their items fit `--fraction` of all
  occurrences (default 0.003: 29 users); a request forgets one user.
* category: Ta-Feng's merged file has no categories (its items are renumbered). The synthetic
  category "synthetic" is drawn by a fixed rule from the data's own popularity: items sorted by
  occurrences in `tafeng_merged.json` (descending, ties by ascending id), every 50th item from
  the 25th on (240 items, 2 % of the catalogue and 1.9 % of the occurrences, spread evenly over
  head and tail, so that many users buy it as they would a real category). It is written as a
  list file and passed as `data.category_file`. A request forgets the category's items from all
  of one user's baskets (history and targets alike); users are drawn until their category
  occurrences reach `--fraction` of all occurrences (default 0.0001: 28 users).
* fraud: each of the ceil(0.01 x 13,858 / 0.99) = 140 fake users is one request.

Writes `experiments/results/nbr_unlearning_tafeng_<scenario>.md` (the report: each method's
gap to the retrain at the last checkpoint and the trajectory over the four) and `.json` (the
rows of the scenario's `unlearning.csv`, wall seconds per step, provenance). A finished step
is skipped on a rerun; an interrupted one resumes from its own checkpoints.
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import json
import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from cli_steps import erase_jax  # noqa: E402  (experiments/cli_steps.py)
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

METHODS = ("untouched", "scif", "gif", "ceu", "idea", "kookmin", "fanchuan", "seif")
MERGED = REPO_ROOT.parent / "shared" / "data" / "tafeng" / "tafeng_merged.json"
CATEGORY_STRIDE = 50
CATEGORY_OFFSET = 25
DEFAULT_FRACTION = {"random": 0.003, "category": 0.0001}
RESULTS = REPO_ROOT / "experiments" / "results"


def synthetic_category(merged: Path, out: Path) -> Path:
    """The synthetic category's item list (module doc), written to `out`."""
    counts = collections.Counter()
    for baskets in json.loads(merged.read_text()).values():
        for basket in baskets:
            counts.update(str(item) for item in basket)
    ranked = sorted(counts, key=lambda token: (-counts[token], int(token)))
    chosen = ranked[CATEGORY_OFFSET::CATEGORY_STRIDE]
    out.write_text("".join(f"{token}\n" for token in chosen))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", required=True, choices=["random", "fraud", "category"])
    parser.add_argument("--model", default="DNNTSP", choices=["DNNTSP", "Sets2Sets"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--eval-step", type=int, default=5)
    parser.add_argument("--fraction", type=float)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", type=Path, default=Path("runs/experiments/nbr_unlearning_tafeng"))
    args = parser.parse_args()
    if not MERGED.exists():
        sys.exit(f"{MERGED}: Ta-Feng's merged basket file is missing (see ../shared/README.md)")

    folder = (args.out / args.model).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    fraud = args.scenario == "fraud"
    run = folder / ("run_fraud" if fraud else "run")
    config = REPO_ROOT / "experiments" / "configs" / f"{args.model.lower()}_tafeng.yaml"
    overrides = [f"train.epochs={args.epochs}", f"train.eval_step={args.eval_step}"]
    if fraud:
        overrides.append("data.spam_ratio=0.01")
        scenario = ["--scenario", "spam"]
    else:
        category_file = synthetic_category(MERGED, folder / "synthetic.txt")
        overrides.append(f"data.category_file={category_file}")
        fraction = args.fraction or DEFAULT_FRACTION[args.scenario]
        name = "random:users" if args.scenario == "random" else "sensitive:synthetic"
        scenario = ["--scenario", name, "--fraction", str(fraction)]
    train = ["train", "--config", str(config), *[x for o in overrides for x in ("--set", o)], "--out", str(run)]

    # A finished step is not repeated; "done earlier" marks the skipped timings.
    seconds: dict[str, float | str] = {}
    if (run / "result.json").exists():
        seconds["train"] = "done earlier"
    else:
        seconds["train"] = erase_jax(train, folder / f"train_{args.scenario}.log")
    scenario_dir = run / "unlearn" / ("spam" if fraud else scenario[1].replace(":", "_"))
    if (scenario_dir / "retrain" / "unlearning.csv").exists():
        seconds["retrain"] = "done earlier"
    else:
        seconds["retrain"] = erase_jax(["retrain", "--run", str(run), *scenario, "--checkpoint-idx", "all",
                                        "--out", str(scenario_dir)], folder / f"retrain_{args.scenario}.log")
    for method in args.methods:
        if (scenario_dir / method / "unlearning.csv").exists():
            seconds[method] = "done earlier"
            continue
        seconds[method] = erase_jax(["unlearn", "--run", str(run), *scenario, "--method", method,
                                     "--out", str(scenario_dir)], folder / f"unlearn_{args.scenario}_{method}.log")
    erase_jax(["report", str(scenario_dir)], folder / f"report_{args.scenario}.log")

    rows = list(csv.DictReader((scenario_dir / "unlearning.csv").open()))
    record = {
        "provenance": provenance(config={"config": str(config.relative_to(REPO_ROOT)), "overrides": overrides,
                                         "scenario": scenario}),
        "command": "python experiments/nbr_unlearning_tafeng.py " + " ".join(sys.argv[1:]),
        "model": args.model, "scenario": args.scenario, "epochs": args.epochs,
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_at_end": os.getloadavg(), "wall_seconds": seconds, "rows": rows,
    }
    name = f"nbr_unlearning_tafeng_{args.scenario}"
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2))
    shutil.copyfile(scenario_dir / "report.md", RESULTS / f"{name}.md")
    print(f"wrote experiments/results/{name}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
