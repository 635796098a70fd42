"""What the leaderboard's pages show, computed once from `leaderboard.csv` (the long table).

One `Section` per (scenario, data set, model), in the order the CSV first names them (where a
scenario and data set have several models, a first section compares them: every model's
methods and retrain, utility and exposure, one table), with at the last checkpoint (all requests):

* the methods side by side: utility, exposure, agreement and cost measures, mean +/- std over
  the seeds (`erase_jax.unlearn.protocol.report` names and orders the measures);
* each utility and exposure measure's gap to the retrain of the same seed (0 = exact);
* the cost: seconds per request (median) and all requests' seconds, each also as a share of
  one retrain of the same seed (`retrain_seconds`: what retraining from scratch once costs);

and the trajectories: per utility / exposure measure, each method's mean over the seeds at
the four checkpoints. Methods come in the report's order: the original first, the other
methods as the CSV first names them, the retrain last. The markdown (`leaderboard.py`) and the
HTML page (`page.py`) render these; neither computes anything of its own.
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from erase_jax.result_labels import BASELINES, OLD_NAME
from erase_jax.unlearn.protocol import report

GAP_MEASURES = report.UTILITY + report.EXPOSURE
SIDE_BY_SIDE = report.UTILITY + report.EXPOSURE + report.AGREEMENT + report.AUDIT + report.COST
# the models' comparison (`_models_section`): full-ranking utility at two cut-offs, and exposure
MODEL_MEASURES = (("test_recall@20", "Recall@20"), ("test_ndcg@20", "NDCG@20"), ("test_recall@10", "Recall@10"),
                  ("test_ndcg@10", "NDCG@10"), *report.EXPOSURE)
EVERY_MODEL = "every model"  # the `model` of a comparison section
# (key, title, numerator, denominator: the retrain's column, or None for the numerator itself)
COST = (
    ("request_seconds_median", "s/request (median)", "request_seconds_median", None),
    ("pct_request_of_retrain", "% of one retrain per request", "request_seconds_median", "retrain_seconds"),
    ("request_seconds_total", "s for all requests", "request_seconds_total", None),
    ("pct_total_of_retrain", "% of one retrain for all requests", "request_seconds_total", "retrain_seconds"),
)


@dataclasses.dataclass(frozen=True)
class Stat:
    """One table cell: a measure's mean and std over the seeds (std None with one seed)."""

    key: str
    mean: float
    std: float | None

    def text(self, plus_minus: str = "+/-") -> str:
        mean = report.format_value(self.mean, self.key)
        return mean if self.std is None else f"{mean} {plus_minus} {report.format_value(self.std, self.key)}"


@dataclasses.dataclass(frozen=True)
class Table:
    """Methods (rows) x measures (columns); a cell is None where a method lacks the measure."""

    caption: str
    titles: tuple[str, ...]
    rows: tuple[tuple[str, tuple[Stat | None, ...]], ...]


@dataclasses.dataclass(frozen=True)
class Section:
    """One scenario of one model on one data set (see the module docstring)."""

    scenario: str
    dataset: str
    model: str
    checkpoint: int
    seeds: tuple[str, ...]
    tables: tuple[Table, ...]
    # measure title -> method -> mean at checkpoints 0 .. checkpoint (None where not evaluated)
    trajectories: dict[str, dict[str, tuple[float | None, ...]]]

    @property
    def title(self) -> str:
        return f"{self.scenario}: {self.model} on {self.dataset}"


def sections(frame: pd.DataFrame) -> list[Section]:
    """The views of a leaderboard (the CSV's columns, values as written) in the CSV's order; a
    scenario and data set with several models starts with their comparison (`_models_section`)."""
    values = frame.assign(value=pd.to_numeric(frame["value"], errors="coerce"), seed=frame["seed"].astype(str),
                          checkpoint=frame["checkpoint"].astype(int))
    first = (*BASELINES, OLD_NAME)  # a grid's label for the do-nothing method may be its old name
    others = [m for m in dict.fromkeys(values["method"]) if m not in (*first, report.REFERENCE)]
    order = [m for m in (*first, *others, report.REFERENCE) if m in set(values["method"])]
    found = []
    for keys, group in values.groupby(["scenario", "dataset"], sort=False):
        if group["model"].nunique() > 1:
            found.append(_models_section(keys, group, order))
        found += [_section((*keys, model), rows, order) for model, rows in group.groupby("model", sort=False)]
    return found


def _models_section(keys: tuple, group: pd.DataFrame, order: list[str]) -> Section:
    """Every model of one scenario and data set in one table at the last checkpoint: each model's
    methods and retrain (rows "<model>: <method>"), utility and exposure, so that the non-learned
    baselines (their `untouched` rows: recomputed without the removed rows) stand next to the
    learned models and their methods. No trajectories (each model's own section has them)."""
    k = int(group["checkpoint"].max())
    at_k = group[group["checkpoint"] == k]
    at_k = at_k.assign(method=at_k["model"] + ": " + at_k["method"])
    wide = at_k.pivot_table(index=["method", "seed"], columns="metric", values="value")
    present = set(wide.index.get_level_values("method"))
    rows = [f"{model}: {method}" for model in dict.fromkeys(group["model"]) for method in order
            if f"{model}: {method}" in present]
    table = _table("Every model and method side by side", wide, rows, report.present(wide, MODEL_MEASURES))
    seeds = tuple(sorted(set(group["seed"]), key=lambda s: (len(s), s)))
    return Section(keys[0], keys[1], EVERY_MODEL, k, seeds, (table,), {})


def _section(keys: tuple, group: pd.DataFrame, order: list[str]) -> Section:
    k = int(group["checkpoint"].max())
    wide = group.pivot_table(index=["method", "seed", "checkpoint"], columns="metric", values="value")
    at_k = wide.xs(k, level="checkpoint") if k in wide.index.get_level_values("checkpoint") else wide.iloc[:0]
    at_k.index = at_k.index.set_names(["method", "seed"])
    methods = [m for m in order if m in at_k.index.get_level_values("method")]
    tables = [_table("The methods side by side", at_k, methods, report.present(at_k, SIDE_BY_SIDE))]
    if report.REFERENCE in methods:
        retrain = at_k.xs(report.REFERENCE, level="method").reindex(at_k.index, level="seed")
        measures = report.present(at_k, GAP_MEASURES)
        gaps = at_k - retrain
        tables.append(_table("Gap to the retrain of the same seed (0 = what exact unlearning gives)", gaps,
                             methods[:-1], [(key, f"{title} - retrain") for key, title in measures]))
        cost = pd.DataFrame(index=at_k.index)
        for key, _, numerator, denominator in COST:
            if numerator in at_k and denominator is None:
                cost[key] = at_k[numerator]
            elif numerator in at_k and denominator in retrain:
                cost[key] = 100 * at_k[numerator] / retrain[denominator]
        tables.append(_table("Cost, also as a share of one retrain of the same seed", cost, methods[:-1],
                             report.present(cost, [(key, title) for key, title, _, _ in COST])))
    trajectories = {}
    for key, title in report.present(wide, GAP_MEASURES):
        means = wide[key].groupby(level=["method", "checkpoint"]).mean()
        trajectories[title] = {
            method: tuple(_number(means.get((method, c))) for c in range(k + 1))
            for method in order if method in means.index.get_level_values("method")
        }
    seeds = tuple(sorted(set(group["seed"]), key=lambda s: (len(s), s)))
    return Section(*keys, k, seeds, tuple(tables), trajectories)


def _table(caption: str, values: pd.DataFrame, methods: list[str], measures: list[tuple[str, str]]) -> Table:
    rows = []
    for method in methods:
        per_seed = values.xs(method, level="method")
        rows.append((method, tuple(_stat(per_seed[key], key) if key in per_seed else None for key, _ in measures)))
    return Table(caption, tuple(title for _, title in measures), tuple(rows))


def _stat(series: pd.Series, key: str) -> Stat | None:
    series = series.dropna()
    if series.empty:
        return None
    return Stat(key, float(series.mean()), None if len(series) == 1 else float(series.std()))


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
