"""Code changes: did reorganising the code base change any result, or the speed of training and
unlearning? (Two source trees measured side by side by `benchmarks/layout_before_after.py`.)"""

from __future__ import annotations

import math

from results_topics.cells import Section, commit_cell, files_line, machine_cell, seconds, table
from results_topics.read import BENCH, load

TITLE = "Code changes"


def layout_before_after() -> Section:
    path = BENCH + "layout_before_after.json"
    report = load(path)
    rows = []
    for case, run in report["training"].items():
        medians = run["median_epoch_seconds"]
        rows.append([f"train {case}", f"{run['epochs']} epochs x {run['repeats']}", seconds(medians["before"]),
                     seconds(medians["after"]), f"{run['after_over_before']:.2f}",
                     "yes" if run["test_equal"] and run["loss_equal"] else "NO"])
    for case, run in report["unlearning"].items():
        medians = run["median_request_seconds"]
        rows.append([f"unlearn {case}", "Horror, f 0.003", seconds(medians["before"]), seconds(medians["after"]),
                     f"{run['after_over_before']:.2f}", "yes" if run["rows_equal"] else "NO"])
    ratios = [row[4] for row in rows]
    geometric = math.exp(sum(math.log(float(r)) for r in ratios) / len(ratios))
    equal = sum(row[5] == "yes" for row in rows)
    return Section(
        "Did the layout change (tasks as plug-ins, Flax sequence models, `unlearn/` split) change results or speed?",
        f"results equal in {equal} of {len(rows)} jobs; geometric mean of the after / before seconds {geometric:.2f} "
        "(shared machine)", [
            f"Two source trees side by side, {report['commits']['before']} (before) and {report['commits']['after']} (after), "
            "each job through its own command line, alternating which tree goes first. Training: per-epoch seconds "
            "(median, compilation excluded) and whether the test metrics and every epoch's loss are bitwise equal. "
            "Unlearning: the Horror scenario (fraction 0.003, 98 requests) from each tree's own trained run, median seconds "
            "per request, and whether every result row is equal (all columns but timing and memory). "
            f"Load average {report['load_average_at_start'][0]:.1f} at the start, {report['load_average_at_end'][0]:.1f} at the "
            "end, other jobs sharing the two cores: single runs of a few seconds vary by tens of per cent either way "
            f"(geometric mean of the after / before ratios: {geometric:.2f}).",
            "",
            *table(["job", "size", "before s", "after s", "after / before", "results equal"], rows),
            "",
            f"Every row: command `{report['provenance']['command']}`, commit {commit_cell(report['provenance'])}, "
            f"machine {machine_cell(report['provenance'])}.",
            "",
            files_line(path),
        ])


SECTIONS = (layout_before_after,)
