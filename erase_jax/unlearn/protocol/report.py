"""One scenario's results side by side: which method forgets, at what utility and cost.

    erase-jax report RUN/unlearn/<scenario> [--checkpoint 3] [--out DIR]

reads the scenario folder's combined `unlearning.csv` (the trained model, the matched retrains
and every method run in it; labels as `erase_jax.result_labels`, older files' too) and writes `report.md`, and `report.png` when matplotlib is installed
(`pip install -e '.[plot]'`):

* at one checkpoint (default: the last, all requests), one row per model with utility (test
  NDCG@10, Recall@20), what it still shows of the forgotten data (sensitive scenario: the share
  of unlearned users with a sensitive item in their top 20; spam: the share of genuine users
  with a spam target in their top 20 and the targets' mean rank), the forgotten interactions'
  hit@20, top-20 agreement with the retrain, and the cost (median and p90 seconds per request;
  the retrain's training seconds);
* the GAP TO THE RETRAIN of each of those measures, the benchmark's yardstick: an exact
  unlearning method has gap 0, the trained model shows what doing nothing leaves;
* the NOISE FLOOR of every gap: where the scenario holds retrains with other seeds
  (`erase-jax retrain --seeds ...`, methods `retrain@seed<s>`), the largest gap between such a
  retrain and the reference retrain (for Jaccard: the lowest Jaccard of such a retrain with the
  reference), shown as its own row; a method's gap within it is marked `~` (no larger than
  what a second, equally valid retrain shows), and a method whose Jaccard with the retrain is
  below the trained model's (doing nothing) is flagged as moving further from the retrain than doing nothing;
* the trajectory over the four checkpoints (1/4 ... 4/4 of the requests) of utility and
  exposure, where repeated unlearning shows whether a method degrades as requests accumulate.

Columns absent from a scenario (e.g. spam measures in a sensitive run) are left out; a method
that has not been evaluated at a checkpoint shows an empty cell.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from erase_jax.result_labels import BASELINES, RETRAIN, TRAINED, current_frame

CSV_FILE = "unlearning.csv"
REPORT_FILE = "report.md"
FIGURE_FILE = "report.png"
REFERENCE = RETRAIN
BASELINE = TRAINED
SEED_REFERENCE = "retrain@seed"  # prefix of the retrains with other seeds: the reference's noise floor
WITHIN_NOISE = "~"

# (csv column, title) of the measures shown, in table order
UTILITY = (("test_ndcg@10", "NDCG@10"), ("test_recall@20", "Recall@20"))
EXPOSURE = (
    ("pct_users_with_sensitive@20", "% unlearned users with a sensitive item @20"),
    ("spam_users_with_target@20", "share of genuine users with a spam target @20"),
    ("spam_mean_target_rank", "mean spam target rank"),
    ("spam_masked_target_hit_ratio@50", "spam target hit ratio @50 (history masked)"),
    ("forgotten_hit@20", "forgotten hit@20"),
)
AGREEMENT = (("agree_unlearned_jaccard@20", "Jaccard@20 vs retrain"),)
# the grid's membership audit (`erase_jax.grid.leaderboard.AUDIT_MEASURES`; 0.5: a removed pair looks never trained)
AUDIT = (("audit_game2_auc", "audit AUC (game 2)"), ("audit_game2_tpr@1%fpr", "audit TPR @ 1 % FPR"))
COST = (
    ("request_seconds_median", "s/request median"),
    ("request_seconds_p90", "s/request p90"),
    ("retrain_seconds", "retrain s"),
)


def load(scenario_dir: str | Path) -> pd.DataFrame:
    """The scenario's rows, one per (method, checkpoint); `method` is 'retrain' for the retrains."""
    path = Path(scenario_dir) / CSV_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no results; run `erase-jax unlearn` / `erase-jax retrain` with --out {scenario_dir} first"
        )
    rows = pd.read_csv(path)
    missing = {"method", "checkpoint_idx"} - set(rows.columns)
    if missing:
        raise ValueError(f"{path}: not an unlearning result file (no column {sorted(missing)})")
    rows = current_frame(rows[rows["checkpoint_idx"] >= 0])
    if rows.empty:
        raise ValueError(f"{path}: no checkpoint rows (only the trained model on all data)")
    return rows


def method_order(rows: pd.DataFrame) -> list[str]:
    """The trained model and `untouched` first, then the methods alphabetically, the retrain last."""
    methods = sorted(set(rows["method"]) - {*BASELINES, REFERENCE} - set(seed_references(rows)))
    return [m for m in (*BASELINES, *methods, REFERENCE) if m in set(rows["method"])]


def seed_references(rows: pd.DataFrame) -> list[str]:
    """The retrains with other seeds present (`retrain@seed<s>`)."""
    return sorted(m for m in set(rows["method"]) if str(m).startswith(SEED_REFERENCE))


def noise_floor(rows: pd.DataFrame, k: int) -> dict:
    """{measure: floor} at checkpoint k from the retrains with other seeds: for each gap
    measure the largest |value - reference retrain's value|, for Jaccard with the retrain the
    lowest; with the number of such retrains under "n_seeds". Empty without them."""
    at_k = rows[rows["checkpoint_idx"] == k].drop_duplicates("method", keep="last").set_index("method")
    seeds = [m for m in seed_references(rows) if m in at_k.index]
    if not seeds or REFERENCE not in at_k.index:
        return {}
    floor = {"n_seeds": len(seeds)}
    for key, _ in present(at_k, UTILITY + EXPOSURE):
        floor[f"gap_{key}"] = float((at_k.loc[seeds, key] - at_k.loc[REFERENCE, key]).abs().max())
    for key, _ in present(at_k.loc[seeds], AGREEMENT):
        floor[key] = float(at_k.loc[seeds, key].min())
    return floor


RECALL = "test_recall@20"
MAX_RECALL_LOSS = 0.05
ACCEPTANCE_NOTE = (
    "further_than_doing_nothing: Jaccard@20 with the retrain (unlearned users) below the trained model's (doing "
    "nothing; on graph models `untouched` differs: the same parameters on the graph without the removed edges); "
    "further_beyond_floor: below it by more than 1 - the lowest Jaccard of a retrain with another seed (the "
    "retrain-vs-retrain distance); recall_loss = 1 - Recall@20 / the retrain's, loses_over_5pct when above 0.05; "
    "passes: neither.")


def acceptance(rows: pd.DataFrame, k: int) -> dict:
    """Per method at checkpoint k, issue 20's two tests of a method against the retrain reference:
    is its top-20 Jaccard with the retrain below the trained model's (doing nothing) by more than
    the retrain-vs-retrain distance (1 - the floor's lowest Jaccard), and does it lose more than
    5 % of the retrain's Recall@20. With its gaps, which of them exceed the noise floor, and
    `passes` (neither test failed). Needs the retrain and the trained model at k; the floor
    tests are False without retrains of other seeds (`ACCEPTANCE_NOTE` defines the fields)."""
    table = at_checkpoint(rows, k)
    if REFERENCE not in table.index:
        raise ValueError(f"no retrain at checkpoint {k}: run `erase-jax retrain` in this scenario folder first")
    floor = noise_floor(rows, k)
    key = AGREEMENT[0][0]
    baseline = float(table.loc[BASELINE, key]) if BASELINE in table.index else math.nan
    floor_jaccard = floor.get(key, math.nan)
    retrain_recall = float(table.loc[REFERENCE, RECALL])
    checks = {}
    for method, row in table.drop(index=REFERENCE).iterrows():
        gaps = {m: float(row[f"gap_{m}"]) for m, _ in present(table, UTILITY + EXPOSURE) if _filled(row[f"gap_{m}"])}
        jaccard = float(row.get(key, math.nan))
        recall_loss = 1 - float(row[RECALL]) / retrain_recall
        further_beyond = bool(baseline - jaccard > 1 - floor_jaccard)
        checks[method] = {
            "jaccard_with_retrain": jaccard, "trained_jaccard": baseline, "floor_jaccard": floor_jaccard,
            "further_than_doing_nothing": bool(jaccard < baseline), "further_beyond_floor": further_beyond,
            "recall@20": float(row[RECALL]), "retrain_recall@20": retrain_recall, "recall_loss": recall_loss,
            "loses_over_5pct": bool(recall_loss > MAX_RECALL_LOSS),
            "gaps": gaps, "beyond_floor": {m: abs(g) > floor[f"gap_{m}"] for m, g in gaps.items() if f"gap_{m}" in floor},
            "passes": not further_beyond and not recall_loss > MAX_RECALL_LOSS,
        }
    return checks


def present(rows: pd.DataFrame, columns) -> list[tuple[str, str]]:
    return [(key, title) for key, title in columns if key in rows and rows[key].notna().any()]


def at_checkpoint(rows: pd.DataFrame, k: int) -> pd.DataFrame:
    """One row per method at checkpoint k, with the gap to the retrain of every measure."""
    table = rows[rows["checkpoint_idx"] == k].drop_duplicates("method", keep="last").set_index("method")
    table = table.reindex([m for m in method_order(rows) if m in table.index])  # retrain@seed rows: `noise_floor`
    if REFERENCE in table.index:
        for key, _ in present(table, UTILITY + EXPOSURE):
            table[f"gap_{key}"] = table[key] - table.loc[REFERENCE, key]
    return table


def trajectory(rows: pd.DataFrame, key: str) -> pd.DataFrame:
    """key per method (rows) and checkpoint (columns)."""
    table = rows.pivot_table(index="method", columns="checkpoint_idx", values=key, aggfunc="last")
    return table.reindex([m for m in method_order(rows) if m in table.index])


def markdown(rows: pd.DataFrame, k: int, source: str = "", model: dict | None = None) -> str:
    """The report; `model` is the fingerprint record of the trained model (`erase_jax.fingerprint`)."""
    table = at_checkpoint(rows, k)
    if table.empty:
        raise ValueError(f"no row at checkpoint {k}; checkpoints present: {sorted(set(rows['checkpoint_idx']))}")
    first = table.iloc[0]
    lines = [
        f"# Unlearning report: {first.get('model', '?')} on {first.get('dataset', '?')}, "
        f"scenario {first.get('scenario', '?')}" + (f" ({first['category']})" if _filled(first.get("category")) else ""),
        "",
        f"Source: `{source}`. Checkpoint {k}: "
        + (f"{_int(first.get('n_unlearned_users'))} unlearned users, {_int(first.get('n_removed'))} interactions removed."
           if "n_removed" in table else ""),
        "",
    ]
    if model:
        lines += [f"Trained model: `{model['run']}`, finished at {model['finished_at']} "
                        f"(fingerprint {model['fingerprint'][:12]}).", ""]
    shown = present(table, UTILITY + EXPOSURE + AGREEMENT + COST)
    lines += _table(table, [("method", "model")] + shown)
    gaps = [(f"gap_{key}", f"{title} - retrain") for key, title in present(table, UTILITY + EXPOSURE)]
    if gaps and REFERENCE in table.index:
        lines += ["", f"Gap to the retrain at checkpoint {k} (0 = what exact unlearning gives):", ""]
        floor = noise_floor(rows, k)
        gap_rows = table.drop(index=REFERENCE)
        agreement = [(key, title) for key, title in present(table, AGREEMENT) if key in floor]
        lines += _table(gap_rows, [("method", "model")] + gaps + agreement, floor)
        if floor:
            lines += [f"| retrain vs retrain: noise floor ({floor['n_seeds']} other seeds) | "
                      + " | ".join(format_value(floor.get(key), key) for key, _ in gaps + agreement) + " |", "",
                      f"`{WITHIN_NOISE}`: a gap no larger than the noise floor (the largest gap of a retrain with another "
                      "seed; for Jaccard, at least the lowest Jaccard such a retrain has with the reference)."]
            further = _further_than_doing_nothing(gap_rows)
            if further:
                lines += ["", "Further from the retrain than doing nothing (Jaccard@20 with the retrain below the "
                          f"trained model's): {', '.join(further)}."]
            failing = [m for m, found in acceptance(rows, k).items() if not found["passes"]]
            if failing:
                lines += ["", "Further from the retrain than doing nothing by more than the retrain-vs-retrain distance "
                          f"(1 - the floor's Jaccard), or losing more than 5 % of its Recall@20: {', '.join(failing)}."]
        else:
            lines += ["", "No retrain with another seed in this folder (`erase-jax retrain --seeds ...`): the gaps' noise "
                      "floor is unknown."]
    for key, title in present(rows, UTILITY[:1] + EXPOSURE[:3]):
        curve = trajectory(rows, key)
        lines += ["", f"{title} after 1/4, 2/4, 3/4 and 4/4 of the requests:", ""]
        lines += ["| model | " + " | ".join(f"{c + 1}/4 (k={c})" for c in curve.columns) + " |",
                  "|---|" + "---|" * len(curve.columns)]
        for method, values in curve.iterrows():
            lines.append(f"| {method} | " + " | ".join(format_value(v, key) for v in values) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: pd.DataFrame, path: Path) -> bool:
    """Utility and exposure over the checkpoints, and the cost per request; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = present(rows, UTILITY[:1] + EXPOSURE[:3])
    costs = at_checkpoint(rows, int(rows["checkpoint_idx"].max()))
    has_cost = "request_seconds_median" in costs and costs["request_seconds_median"].notna().any()
    n = len(panels) + has_cost
    figure, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for axis, (key, title) in zip(axes[0], panels):
        curve = trajectory(rows, key)
        for method, values in curve.iterrows():
            style = {"color": "black", "linestyle": "--"} if method == REFERENCE else (
                {"color": "grey", "linestyle": ":"} if method == BASELINE else {})
            axis.plot([f"{c + 1}/4" for c in curve.columns], values.to_numpy(), marker="o", label=method, **style)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("requests done")
    if has_cost:
        axis = axes[0][-1]
        seconds = costs["request_seconds_median"].drop(index=BASELINE, errors="ignore").dropna()
        axis.barh(list(seconds.index), seconds.to_numpy())
        if REFERENCE in costs.index and "retrain_seconds" in costs and _filled(costs.loc[REFERENCE, "retrain_seconds"]):
            axis.axvline(costs.loc[REFERENCE, "retrain_seconds"], color="black", linestyle="--", label="one retrain")
            axis.legend(fontsize=7)
        axis.set_xscale("log")
        axis.set_title("seconds per request (median)", fontsize=9)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def write_report(scenario_dir: str | Path, k: int | None = None, out: str | Path | None = None) -> list[Path]:
    """Writes report.md (and report.png) for a scenario folder; returns the files written.

    The report names the model the results were derived from; a folder whose run now holds
    another model is refused (`erase_jax.fingerprint.recorded_model`).
    """
    from erase_jax.fingerprint import recorded_model

    model = recorded_model(scenario_dir)
    rows = load(scenario_dir)
    k = int(rows["checkpoint_idx"].max()) if k is None else k
    out = Path(scenario_dir if out is None else out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / REPORT_FILE]
    from erase_jax.audit.job import report_lines

    text = markdown(rows, k, str(Path(scenario_dir) / CSV_FILE), model)
    audit = report_lines(scenario_dir)  # `erase-jax audit`'s table, when the folder has one
    written[0].write_text(text.rstrip("\n") + "\n" + "\n".join(audit) + "\n" if audit else text)
    if plot(rows, out / FIGURE_FILE):
        written.append(out / FIGURE_FILE)
    return written


def _table(table: pd.DataFrame, columns, floor: dict | None = None) -> list[str]:
    """Markdown rows; with `floor` (`noise_floor`) a cell within the noise floor ends in `~`."""
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|---" * len(columns) + "|"]
    for method, row in table.iterrows():
        cells = [method if key == "method" else format_value(row.get(key), key) + _noise_mark(row.get(key), key, floor)
                 for key, _ in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _noise_mark(value, key: str, floor: dict | None) -> str:
    if not floor or key not in floor or not _filled(value):
        return ""
    within = float(value) >= floor[key] if key.startswith("agree_") else abs(float(value)) <= floor[key]
    return WITHIN_NOISE if within else ""


def _further_than_doing_nothing(table: pd.DataFrame) -> list[str]:
    key = AGREEMENT[0][0]
    if key not in table or BASELINE not in table.index or not _filled(table.loc[BASELINE, key]):
        return []
    return [m for m in table.index if m != BASELINE and _filled(table.loc[m, key]) and table.loc[m, key] < table.loc[BASELINE, key]]


def _filled(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != ""


def format_value(value, key: str = "") -> str:
    """A number for a report cell: percentages with one decimal, others with four (large ones whole)."""
    if not _filled(value):
        return ""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if "pct_" in key:  # percentages (the original's sensitive-exposure measure)
        return f"{number:.1f}"
    return f"{number:.4f}" if abs(number) < 100 else f"{number:.0f}"


def _int(value) -> str:
    return str(int(value)) if _filled(value) else "?"
