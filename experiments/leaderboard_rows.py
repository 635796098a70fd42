"""One scenario of a grid's leaderboard as a protocol result file: the rows the results pages read.

    erase-jax grid experiments/grids/sbr_ml-100k.yaml --out runs/grids
    python experiments/leaderboard_rows.py experiments/grids/sbr_ml-100k.yaml --model SASRec --scenario horror \\
        [--dataset D] [--seed S] [--leaderboard runs/grids/sbr_ml-100k/leaderboard.csv] \\
        --out experiments/results/sbr_unlearning_ml-100k_SASRec_sensitive.json

The leaderboard (`erase_jax.grid.leaderboard`) is long: one row per (cell, method, checkpoint,
measure). This selects one data set x model x scenario x seed of the grid (a label may be left
out where the grid has one value) and writes it back in the shape of a scenario's combined
`unlearning.csv`, one row per model and checkpoint (`erase_jax.result_labels`): each method's
rows (`eval_type` unlearning), the retrains' (`retrain`, retraining), and the trained model's
(`trained`, trained): the no-op method's measures, which are the trained model's, without those
of its request stream (count, times, memory). The JSON holds those `rows` next to the cell's
settings (`fraction`, `n_requests`, `epochs`) and a `provenance` block whose commit and machine
are the leaderboard's, where the numbers were measured (`commits` per method where they differ),
and whose command is the grid's followed by this one: the record the experiment scripts the
grids replaced wrote, so the results pages read either alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402  (benchmarks/provenance.py)

from erase_jax.grid.leaderboard import read_leaderboard  # noqa: E402
from erase_jax.grid.spec import GridError, load_grid  # noqa: E402
from erase_jax.result_labels import RETRAIN, RETRAINING, TRAINED, UNLEARNING, UNTOUCHED, current  # noqa: E402
from erase_jax.unlearn.methods.base import build_method  # noqa: E402
from erase_jax.unlearn.protocol.report import SEED_REFERENCE  # noqa: E402

LABELS = ("dataset", "model", "scenario", "seed")
# the measures of a request stream (its count, times, memory, compilation), not of the model it leaves
STREAM_ONLY = ("n_requests", "seconds", "_rss_", "_mib", "n_timeouts", "compil")


def select(board: pd.DataFrame, **wanted) -> tuple[pd.DataFrame, dict]:
    """The leaderboard rows of one data set x model x scenario x seed, and those labels. A label
    given as None must have one value in the board; ValueError names the choices otherwise."""
    chosen = {}
    for label in LABELS:
        values = sorted(set(board[label]))
        value = wanted.get(label)
        if value is None and len(values) != 1:
            raise ValueError(f"the leaderboard has several {label}s {values}: choose one (--{label})")
        value = values[0] if value is None else str(value)
        if value not in values:
            raise ValueError(f"no {label} {value!r} in the leaderboard; it has {values}")
        board = board[board[label] == value]
        chosen[label] = value
    return board, chosen


def protocol_rows(board: pd.DataFrame, no_ops: set[str]) -> list[dict]:
    """The selected leaderboard rows, one dict per (method, checkpoint) as `unlearning.csv` has
    them; `no_ops` are the method labels whose rows are also the trained model's."""
    rows = []
    for (method, checkpoint), measures in board.groupby(["method", "checkpoint"], sort=False):
        values = dict(zip(measures["metric"], measures["value"], strict=True))
        identity = {label: measures[label].iloc[0] for label in LABELS} | {"checkpoint_idx": checkpoint}
        if method == RETRAIN or method.startswith(SEED_REFERENCE):  # a retrain with another seed: `retrain@seed<s>`
            rows.append({**identity, "method": method, "eval_type": RETRAINING, **values})
            continue
        rows.append({**identity, "method": current(method)[0], "eval_type": UNLEARNING, **values})
        if method in no_ops:
            kept = {k: v for k, v in values.items() if not any(part in k for part in STREAM_ONLY)}
            rows.append({**identity, "method": TRAINED, "eval_type": TRAINED, **kept})
    return sorted(rows, key=lambda row: int(row["checkpoint_idx"]))


def measured_where(board: pd.DataFrame) -> dict:
    """Commit and machine of the leaderboard's rows: one commit, or "mixed" with one per method."""
    commits = {current(method)[0]: commit for method, commit in zip(board["method"], board["commit"], strict=True)}
    machines = sorted(set(board["machine"]))
    where = {"machine": {"description": machines[0] if len(machines) == 1 else " / ".join(machines)}}
    if len(set(commits.values())) == 1:
        return {**where, "commit": next(iter(commits.values()))}
    return {**where, "commit": "mixed", "commits": commits}


def record(grid_path: Path, board: pd.DataFrame, **wanted) -> dict:
    """The result file's content for one cell of the grid in `grid_path` (validated first)."""
    grid = load_grid(grid_path)
    selected, chosen = select(board, **wanted)
    cells = [c for c in grid.cells if all(str(getattr(c, label)) == chosen[label] for label in LABELS)]
    if not cells:
        raise ValueError(f"{grid_path}: no cell {chosen}; is the leaderboard this grid's?")
    no_ops = {c.method for c in cells if build_method(c.unlearn.method).name == UNTOUCHED}
    rows = protocol_rows(selected, no_ops)
    cell = cells[0]
    grid_file = str(grid_path.resolve().relative_to(REPO_ROOT)) if grid_path.resolve().is_relative_to(REPO_ROOT) else str(grid_path)
    settings = {"config": grid_file, "cell": " x ".join(chosen[label] for label in LABELS),
                "train.epochs": cell.run.train.epochs}
    if cell.run.data.spam_ratio:
        settings["data.spam_ratio"] = cell.run.data.spam_ratio
    block = provenance(config=settings)
    block["command"] = f"erase-jax grid {grid_file}, then {block['command']}"
    block.pop("dirty", None)  # the analysis' checkout, not where the numbers were measured
    requests = [row["n_requests"] for row in rows if row.get("n_requests") and row["method"] != RETRAIN]
    return {"provenance": {**block, **measured_where(selected)}, "grid": grid_file, **chosen,
            "fraction": cell.unlearn.fraction, "n_requests": int(float(requests[0])) if requests else None,
            "epochs": cell.run.train.epochs, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", type=Path, help="the grid file the leaderboard comes from")
    for label in LABELS:
        parser.add_argument(f"--{label}", help=f"the grid's {label} label (needed where the grid has several)")
    parser.add_argument("--leaderboard", type=Path, help="its leaderboard.csv (default runs/grids/<grid>/leaderboard.csv)")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args(argv)
    path = args.leaderboard or Path("runs/grids") / args.grid.stem / "leaderboard.csv"
    try:
        board = read_leaderboard(path)
        content = record(args.grid, board, **{label: getattr(args, label) for label in LABELS})
    except (GridError, ValueError, FileNotFoundError, KeyError) as error:
        sys.exit(f"leaderboard_rows: {error}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(content, indent=2) + "\n")
    print(f"wrote {args.out}: {len(content['rows'])} rows of {' x '.join(content[label] for label in LABELS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
