"""The labels of result rows (`unlearning.csv`, `unlearning.json`, reports, grids), in one place.

Every row of an unlearning result names the model it measures with two columns:

    method      eval_type      the model
    trained     trained        the trained model, before any request (checkpoint_idx -1: on all
                               data; k = 0..3: on the data without the rows removed through k)
    <method>    unlearning     a method's model after the requests through checkpoint k
    retrain     retraining     the model trained from scratch without those rows

`untouched` is the method that changes nothing (its rows equal the trained model's).

Files written before the rename say "original" for the trained model (method and eval_type)
and for the do-nothing method (method "original", eval_type "unlearning"): "original" was
confusable with the original (PyTorch) benchmark. Readers pass rows through `current_row` /
`current_frame`, so old and new files read alike.

>>> from erase_jax.result_labels import current_row
>>> current_row({"method": "original", "eval_type": "original", "checkpoint_idx": "3"})
{'method': 'trained', 'eval_type': 'trained', 'checkpoint_idx': '3'}
>>> current_row({"method": "original", "eval_type": "unlearning"})["method"]
'untouched'
"""

from __future__ import annotations

TRAINED = "trained"  # method and eval_type of the trained model's rows
UNTOUCHED = "untouched"  # the do-nothing method
RETRAIN = "retrain"  # method of the retrains' rows; their eval_type is RETRAINING
RETRAINING = "retraining"
UNLEARNING = "unlearning"  # eval_type of a method's rows
OLD_NAME = "original"  # the trained model's and the do-nothing method's label in older files
BASELINES = (TRAINED, UNTOUCHED)  # shown first in tables, in this order


def current(method: str, eval_type: str | None = None) -> tuple[str, str | None]:
    """(method, eval_type) with today's labels; `eval_type` None: a table without that column,
    where "original" can only be the do-nothing method (a grid's method label)."""
    if eval_type == OLD_NAME:
        return TRAINED, TRAINED
    if method == OLD_NAME:
        return UNTOUCHED, eval_type
    return method, eval_type


def current_row(row: dict) -> dict:
    """A copy of a result row (CSV or JSON) with today's labels."""
    if OLD_NAME not in (row.get("method"), row.get("eval_type")):
        return row
    method, eval_type = current(row.get("method"), row.get("eval_type"))
    return {**row, "method": method, **({"eval_type": eval_type} if "eval_type" in row else {})}


def current_rows(rows) -> list[dict]:
    return [current_row(row) for row in rows]


def current_frame(frame):
    """A copy of a pandas table of result rows (columns `method`, optionally `eval_type`) with
    today's labels."""
    frame = frame.copy()
    if "eval_type" in frame:
        trained = frame["eval_type"] == OLD_NAME
        frame.loc[trained, ["method", "eval_type"]] = TRAINED
    else:
        trained = frame["method"] != frame["method"]  # all False
    frame.loc[(frame["method"] == OLD_NAME) & ~trained, "method"] = UNTOUCHED
    return frame


def eval_type_of(method: str) -> str:
    """The eval_type of a method's rows (TRAINED, RETRAINING or UNLEARNING)."""
    return {TRAINED: TRAINED, RETRAIN: RETRAINING}.get(method, UNLEARNING)
