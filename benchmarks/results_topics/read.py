"""Reading the result files under `benchmarks/results/` and `experiments/results/` (each read once)."""

from __future__ import annotations

import csv
import json
from functools import cache
from pathlib import Path

from erase_jax.result_labels import current_rows, eval_type_of

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = "benchmarks/results/"
EXP = "experiments/results/"
REFERENCES = BENCH + "published_reference_numbers.json"


@cache
def load(path: str) -> dict:
    return json.loads((REPO_ROOT / path).read_text())


@cache
def rows_of(path: str) -> list[dict]:
    with (REPO_ROOT / path).open(newline="") as handle:
        return list(csv.DictReader(handle))


def references() -> dict:
    return load(REFERENCES)


def paper_recall(model: str, method: str) -> float:
    return references()["receraser_paper_ml-1m_recall@20"][model][method]


def pick(rows: list[dict], method: str, checkpoint: str = "3") -> dict:
    """The row of a method at a checkpoint in a protocol's combined unlearning.csv rows (labels
    as `erase_jax.result_labels`: `trained` for the trained model; older files' "original" too)."""
    eval_type = eval_type_of(method)
    for row in current_rows(rows):
        if row["method"] == method and row["checkpoint_idx"] == checkpoint and row["eval_type"] == eval_type:
            return row
    raise KeyError(f"no {method} row at checkpoint {checkpoint}")
