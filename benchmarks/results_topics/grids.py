"""The benchmark grids: every approximate method next to the retrain, per scenario and model, from
the leaderboard that `erase-jax grid` wrote (`experiments/results/grids/<grid>/`). The tables are
the leaderboard's own views (`erase_jax.grid.views`) at the last checkpoint: each measure's gap
to the retrain, and the cost per request as a share of one retrain; the page beside the CSV
(`leaderboard.html`) has every table, sortable, and the trajectories over the four checkpoints."""

from __future__ import annotations

from erase_jax.grid import views
from erase_jax.grid.leaderboard import read_leaderboard
from erase_jax.unlearn.protocol import report
from results_topics.cells import PROVENANCE_COLUMNS, Section, code, commit_cell, config_cell, machine_cell, table
from results_topics.read import EXP, REPO_ROOT, load

TITLE = "The benchmark grids: every method next to the retrain"
GRIDS = EXP + "grids/"
# the measure each scenario is about: its gap to the retrain answers "did the method forget?"
FOCUS = {"horror": "pct_users_with_sensitive@20", "spam": "spam_users_with_target@20", "random": "forgotten_hit@20"}
RECALL = "test_recall@20"
TITLES = dict(report.EXPOSURE)
KEPT_RECALL = 0.05  # a method that loses more test Recall@20 than this against the retrain has not unlearned well


def gaps(section: views.Section) -> dict[str, dict[str, views.Stat]]:
    """method -> measure -> its gap to the retrain at the last checkpoint (none without a retrain)."""
    found = [t for t in section.tables if t.caption.startswith("Gap")]
    return {method: {stat.key: stat for stat in cells if stat is not None} for method, cells in found[0].rows} if found else {}


def closest(section: views.Section) -> str:
    """The method (not the untouched model) whose focus measure is closest to the retrain's, among
    those that keep test Recall@20 within `KEPT_RECALL` of the retrain's; "tied" when they all are."""
    focus = FOCUS.get(section.scenario, RECALL)
    candidates = {m: abs(g[focus].mean) for m, g in gaps(section).items()
                  if m != "original" and focus in g and RECALL in g and g[RECALL].mean >= -KEPT_RECALL}
    if not candidates:
        return "none"
    best = min(candidates.values())
    winners = [m for m, gap in candidates.items() if gap == best]
    return winners[0] if len(winners) == 1 else f"{len(winners)} methods tied"


def row_commits(frame) -> dict[tuple[str, str, str], str]:
    """(scenario, model, method) -> the commits its leaderboard rows were computed at (the
    tasks' own, `-dirty` said as on the other pages)."""
    said = lambda commit: commit.replace("-dirty", " (+ local changes)")
    return {keys: ", ".join(sorted(said(c) for c in set(group["commit"])))
            for keys, group in frame.groupby(["scenario", "model", "method"], sort=False)}


def method_rows(frame, sections, provenance) -> list[list[str]]:
    """One row per (scenario, model, method) with a gap to the retrain at the last checkpoint."""
    rows = []
    for section in sections:
        focus = FOCUS.get(section.scenario, RECALL)
        cost = {m: dict(zip(t.titles, cells)) for t in section.tables if t.caption.startswith("Cost") for m, cells in t.rows}
        for method, gap in gaps(section).items():
            spent = cost.get(method, {})
            cell = lambda title: spent[title].text() if spent.get(title) else ""
            rows.append([section.scenario, section.model, method, gap[RECALL].text() if RECALL in gap else "", TITLES[focus],
                         gap[focus].text() if focus in gap else "", cell("s/request (median)"),
                         cell("% of one retrain per request"), *provenance(section.scenario, section.model, method)])
    return rows


HEADER = ["scenario", "model", "method", "Recall@20 - retrain", "focus measure", "focus - retrain",
          "s/request (median)", "% of one retrain per request", *PROVENANCE_COLUMNS]
FOCUS_TEXT = ("The focus measure is what the scenario is about: Horror: share of the unlearned users with a Horror item "
              "in their top 20; spam: share of genuine users with a spam target in their top 20; random: the forgotten "
              "items' hit@20 for their users.")


def answer_line(sections) -> str:
    return (f"the method closest to the retrain on what the scenario is about, among those within {KEPT_RECALL} of its "
            "Recall@20: ") + "; ".join(
        f"{s.scenario} {s.model}: {closest(s)}" for s in sections if len(gaps(s)) > 1)  # learned models


def links(folder: str) -> str:
    return (f"The whole leaderboard: [leaderboard.html](../../{folder}/leaderboard.html) (sortable tables, trajectories over "
            f"the four checkpoints; open the file in a browser), [leaderboard.md](../../{folder}/leaderboard.md), "
            f"[leaderboard.csv](../../{folder}/leaderboard.csv)")


def grid_section(name: str, what: str) -> Section:
    folder = GRIDS + name
    frame = read_leaderboard(REPO_ROOT / folder / "leaderboard.csv")
    sections = views.sections(frame)
    failures = (REPO_ROOT / folder / "failures.csv").read_text().strip().splitlines()[1:]
    run = load(folder + "/run.json")
    block = run["provenance"]
    commits = row_commits(frame)
    provenance = lambda scenario, model, method: [config_cell(block["config"]), f"`{block['command']}`",
                                                  commits.get((scenario, model, method), commit_cell(block)),
                                                  machine_cell(block)]
    lines = [
        f"{what} {run['cells']} cells, {run['tasks']} tasks ({', '.join(f'{n} {k}' for k, n in run['tasks_by_kind'].items())}), "
        f"{len(frame)} leaderboard rows, {len(failures)} failed or blocked tasks; {run['task_seconds_total'] / 3600:.1f} h of "
        f"task time with one worker ({run['wall']}). Last checkpoint (every request done), one seed; the gap is the "
        f"method's value minus the retrain's (0 = what exact unlearning gives). {FOCUS_TEXT} Times were "
        "measured on the shared 2-core machine (load average about 11): upper bounds. A non-learned model's request "
        "costs the protocol's own work plus its recomputation, and its retrain only the recomputation (Random's: "
        "microseconds), so its shares of a retrain are large and say little.",
        "",
        f"{links(folder)}; how it ran: `{folder}/run.json`.",
        "",
        *table(HEADER, method_rows(frame, sections, provenance)),
    ]
    return Section(f"{what.split(':')[0]}: the grid {name}", answer_line(sections), lines)


def archive_section(name: str, what: str) -> Section:
    """A grid that finishes over sessions (`--archive`): what its archive holds so far, the same
    table as `grid_section`, each row's commit and machine from the leaderboard."""
    from erase_jax.grid.planner import make_plan
    from erase_jax.grid.spec import load_grid

    folder = GRIDS + name
    grid_file = f"experiments/grids/{name}.yaml"
    plan = make_plan(load_grid(REPO_ROOT / grid_file))
    archived = {path.stem for path in (REPO_ROOT / folder / "tasks").glob("*.json")} & set(plan.tasks)
    frame = read_leaderboard(REPO_ROOT / folder / "leaderboard.csv")
    sections = views.sections(frame)
    commits = row_commits(frame)
    machines = {keys: ", ".join(sorted(set(group["machine"])))
                for keys, group in frame.groupby(["scenario", "model", "method"], sort=False)}
    command = f"`erase-jax grid {grid_file} --workers 1 --archive --out DIR`"
    provenance = lambda scenario, model, method: [code(grid_file), command, commits.get((scenario, model, method), ""),
                                                  machines.get((scenario, model, method), "")]
    by_kind = {}
    for task in archived:
        by_kind[plan.tasks[task].kind] = by_kind.get(plan.tasks[task].kind, 0) + 1
    seeds = sorted({int(s) for s in frame["seed"].dropna().unique()})
    lines = [
        f"{what} in progress: {len(archived)} of its {len(plan.tasks)} tasks are archived "
        f"({', '.join(f'{n} {k}' for k, n in sorted(by_kind.items()))}), {len(frame)} leaderboard rows; the rest run "
        "in later sessions (each session's piece archived as one record per task in the folder's tasks/). Last checkpoint (every request "
        f"done), mean +/- std over the seeds archived so far ({', '.join(map(str, seeds))}; a cell with fewer seeds shows "
        f"fewer); the gap is the method's value minus the retrain's (0 = what exact unlearning gives). {FOCUS_TEXT} "
        "Times were measured on the shared 2-core machine beside other jobs: upper bounds.",
        "",
        f"{links(folder)}; failed and blocked tasks: `{folder}/failures.csv`.",
        "",
        *table(HEADER, method_rows(frame, sections, provenance)),
    ]
    return Section(f"{what.split(':')[0]}, the whole grid so far: {name}", answer_line(sections), lines)


def cf_ml100k() -> Section:
    return grid_section("cf_ml-100k", "CF on MovieLens-100K: BPR x every approximate method x Horror, spam and random, "
                                      "with the non-learned baselines Pop, ItemKNN, EASE and Random:")


def baselines_section(name: str, learned: str) -> Section:
    """Each model's test utility after every request (its `untouched` rows: for a non-learned
    model, recomputed without the removed rows) and its retrain's, from the leaderboard's
    comparison sections ("every model")."""
    folder = GRIDS + name
    frame = read_leaderboard(REPO_ROOT / folder / "leaderboard.csv")
    block = load(folder + "/run.json")["provenance"]
    commits = row_commits(frame)
    measures = ("Recall@20", "NDCG@20", "Recall@10", "NDCG@10")
    header = ["scenario", "model", *measures, *(f"retrain {m}" for m in measures[:2]), "retrain s", *PROVENANCE_COLUMNS]
    rows, untouched = [], {}
    sections = views.sections(frame)
    retrain_seconds = {(s.scenario, s.model): dict(zip(t.titles, cells)).get("retrain s")
                       for s in sections for t in s.tables[:1] for m, cells in t.rows if m == report.REFERENCE}
    for section in (s for s in sections if s.model == views.EVERY_MODEL):
        by_row = {label: dict(zip(section.tables[0].titles, cells)) for label, cells in section.tables[0].rows}
        for label, stats in by_row.items():
            model, method = label.split(": ", 1)
            if method != "untouched":
                continue
            retrain = by_row.get(f"{model}: {report.REFERENCE}", {})
            seconds = retrain_seconds.get((section.scenario, model))
            text = lambda stat: stat.text() if stat else ""
            rows.append([section.scenario, model, *(text(stats.get(m)) for m in measures),
                         *(text(retrain.get(m)) for m in measures[:2]), text(seconds), config_cell(block["config"]),
                         f"`{block['command']}`", commits.get((section.scenario, model, "untouched"), commit_cell(block)),
                         machine_cell(block)])
            untouched[(section.scenario, model)] = stats
    order = lambda scenario: sorted(((k[1], v["Recall@20"].mean) for k, v in untouched.items() if k[0] == scenario),
                                    key=lambda item: -item[1])
    answer = "test Recall@20 after every Horror request: " + ", ".join(
        f"{model} {recall:.4f}" for model, recall in order("horror")) + f" ({learned} is the learned model)"
    lines = [
        f"Test utility on {name}'s data set at the last checkpoint (every request done), one seed: each model's "
        "`untouched` rows (a learned model unchanged; a non-learned one recomputed from the training rows that "
        "remain) and its retrain's, with what one retrain costs (for a non-learned model its `prepare`: EASE's "
        "items x items solve, ItemKNN's similarities). The baselines' knobs are the original's (ItemKNN k 100, "
        "shrink 0; EASE reg_weight 250). The same rows, with the methods, are the leaderboard's \"every model\" "
        f"sections: [leaderboard.md](../../{folder}/leaderboard.md).",
        "",
        *table(header, rows),
    ]
    return Section(f"The non-learned baselines next to {learned}: the grid {name}", answer, lines)


def cf_ml100k_full() -> Section:
    return archive_section("cf_ml-100k_full", "CF on MovieLens-100K: BPR, LightGCN and SGL x every approximate method x "
                                              "Horror, spam and random x 3 seeds, with Pop, ItemKNN, EASE and Random:")


def cf_ml100k_baselines() -> Section:
    return baselines_section("cf_ml-100k", "BPR")


SECTIONS = (cf_ml100k, cf_ml100k_full, cf_ml100k_baselines)
