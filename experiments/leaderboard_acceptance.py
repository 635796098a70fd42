"""Each method judged by the retrain and its noise floor, from a grid's leaderboard (issue 20, part 3).

    erase-jax grid experiments/grids/method_distance_ml-100k.yaml --out runs/grids
    python experiments/leaderboard_acceptance.py experiments/grids/method_distance_ml-100k.yaml --model BPR \\
        [--dataset D] [--scenario S] [--seed S] [--key bpr] [--checkpoint 3] \\
        [--leaderboard runs/grids/<grid>/leaderboard.csv] --out experiments/results/method_distance_ml-100k.json

Takes one data set x model x scenario x seed of the leaderboard as the protocol's rows
(`leaderboard_rows.py`; the grid needs `retrain_seeds` for a floor) and applies the report's
tests at the checkpoint (`erase_jax.unlearn.protocol.report`): the noise floor (`noise_floor`: the
largest gap of a retrain with another seed to the reference, and their lowest Jaccard@20 with it)
and per method `acceptance` (further from the retrain than doing nothing by more than the
retrain-vs-retrain distance; more than 5 % of the retrain's Recall@20 lost). Merges the result
into `--out` under `models.<key>` (default: the model label in lower case), as
`experiments/method_distance_ml-100k.py` wrote it: `provenance` (the leaderboard's commit and
machine, the grid's command then this one), `n_unlearned_users`, `n_removed`, `noise_floor`,
`methods_at_checkpoint_<k>`; and `notes` (`report.ACCEPTANCE_NOTE`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from leaderboard_rows import LABELS, record  # noqa: E402  (experiments/leaderboard_rows.py)

from erase_jax.grid.leaderboard import read_leaderboard  # noqa: E402
from erase_jax.grid.spec import GridError  # noqa: E402
from erase_jax.unlearn.protocol import report  # noqa: E402


def rows_frame(rows: list[dict]) -> pd.DataFrame:
    """Protocol rows (strings, as the CSV has them) as `report.load` gives them: numbers as numbers."""
    frame = pd.DataFrame(rows)
    for column in frame.columns:
        if column not in ("method", "eval_type", *LABELS):
            converted = pd.to_numeric(frame[column], errors="coerce")
            if converted.notna().sum() == frame[column].notna().sum():  # every filled cell a number
                frame[column] = converted
    return frame


def judged(cell: dict, k: int = 3) -> dict:
    """The acceptance entry of one cell's record (`leaderboard_rows.record`) at checkpoint k."""
    rows = rows_frame(cell["rows"])
    at_k = rows[rows["checkpoint_idx"] == k]
    if at_k.empty:
        raise ValueError(f"no row at checkpoint {k} in the leaderboard's cell")
    some = at_k[at_k["method"] != report.REFERENCE].iloc[0]
    return {
        "provenance": cell["provenance"], "grid": cell["grid"],
        "n_unlearned_users": int(some["n_unlearned_users"]), "n_removed": int(some["n_removed"]),
        "noise_floor": report.noise_floor(rows, k), f"methods_at_checkpoint_{k}": report.acceptance(rows, k),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path, help="the grid file the leaderboard comes from")
    for label in LABELS:
        parser.add_argument(f"--{label}", help=f"the grid's {label} label (needed where the grid has several)")
    parser.add_argument("--key", help="the entry under `models` (default: the model label in lower case)")
    parser.add_argument("--checkpoint", type=int, default=3)
    parser.add_argument("--leaderboard", type=Path, help="its leaderboard.csv (default runs/grids/<grid>/leaderboard.csv)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write (merged into when it exists)")
    args = parser.parse_args(argv)
    path = args.leaderboard or Path("runs/grids") / args.grid.stem / "leaderboard.csv"
    try:
        cell = record(args.grid, read_leaderboard(path), **{label: getattr(args, label) for label in LABELS})
        entry = judged(cell, args.checkpoint)
    except (GridError, ValueError, FileNotFoundError, KeyError) as error:
        sys.exit(f"leaderboard_acceptance: {error}")
    content = json.loads(args.out.read_text()) if args.out.exists() else {"models": {}}
    key = args.key or cell["model"].lower()
    content["models"][key] = entry
    content["notes"] = report.ACCEPTANCE_NOTE
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(content, indent=2, default=float) + "\n")
    failing = [m for m, found in entry[f"methods_at_checkpoint_{args.checkpoint}"].items() if not found["passes"]]
    print(f"wrote models.{key} into {args.out}; failing the acceptance: {', '.join(failing) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
