"""Next-basket recommendation: does DNNTSP beat the frequency baselines on Ta-Feng (the original ERASE
split), on repeat and on new items? And what does each unlearning method do to it, per scenario?"""

from __future__ import annotations

from erase_jax.result_labels import BASELINES, TRAINED
from results_topics.approximate_unlearning import present_methods, request_seconds, trained_step
from results_topics.cells import PROVENANCE_COLUMNS, Section, code, files_line, num, seconds, section, source, table
from results_topics.read import EXP, REPO_ROOT, load, pick

TITLE = "Next-basket models"


def tafeng() -> Section:
    path = EXP + "nbr_tafeng.json"
    models = load(path)["models"]
    rows, trained, baselines = [], [], {}
    for name, run in models.items():
        test = run["test"]
        per_epoch = run["train_seconds_per_epoch"]
        epoch = seconds(sorted(per_epoch)[len(per_epoch) // 2]) if per_epoch else "no training"
        epochs = f"{run['epochs']} ({run['best_epoch']})" if per_epoch else "-"
        if "in progress" in str(run.get("stopped")):
            epochs += f", unfinished (of {run['provenance']['config']['resolved']['train']['epochs']})"
        rows.append([name, num(test["recall@10"]), num(test["recall@20"]), num(test["ndcg@10"]), num(test["ndcg@20"]),
                     num(test["hit@10"]), f"{num(test['recall_repeat@10'])} / {num(test['recall_explore@10'])}", epochs, epoch,
                     *source(run["provenance"])])
        if per_epoch:
            trained.append(f"{name} {num(test['recall@10'])}" + (" (unfinished)" if "unfinished" in epochs else ""))
        else:
            baselines[name] = test["recall@10"]
    best = max(baselines, key=baselines.get) if baselines else None
    answer = "test Recall@10: " + ", ".join(trained) + (f"; best frequency baseline {best} {num(baselines[best])}" if best else "")
    intro = ("Users with >= 4 baskets (10,061); train predicts basket n-3, valid n-2, test n-1 from all earlier baskets (the "
             "last 48); full ranking over 11,997 items with repeat items allowed; best epoch by valid Recall@10. "
             "Recall@10 split into re-bought (repeat) and new (explore) items. P-TopFreq ranks a user's own items by "
             "frequency (ties by global frequency): the \"Reality Check\" study's baseline, which deep NBR models often fail "
             "to beat. Seconds per epoch: median, CPU, compilation excluded.")
    header = ["model", "test Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "Hit@10", "Recall@10 repeat / explore",
              "epochs (best)", "s/epoch", *PROVENANCE_COLUMNS]
    return section("Next-basket models on Ta-Feng (the original ERASE split), next to the frequency baselines", answer, intro,
                   table(header, rows), path)


UNLEARNING_SCENARIOS = (("random", "random users"), ("category", "a synthetic category"), ("fraud", "fraud baskets"))
# what writes a scenario's file: the grid, then its leaderboard's rows of the scenario (the script
# experiments/nbr_unlearning_tafeng.py wrote the files before; their provenance keeps its command)
UNLEARNING_COMMAND = ("erase-jax grid experiments/grids/nbr_tafeng.yaml --out runs/grids, then python experiments/leaderboard_rows.py "
                      "experiments/grids/nbr_tafeng.yaml --scenario {0} --out experiments/results/nbr_unlearning_tafeng_{0}.json")


def unlearning_rows(rows: list[dict], record: dict) -> list[list[str]]:
    """One table row per method at the last checkpoint: utility, forgetting, agreement, cost."""
    body = []
    for method in present_methods(rows):
        row = pick(rows, method)
        step = trained_step(record["provenance"]) if method == TRAINED else method
        own = "1" if method == "retrain" else num(row.get("agree_unlearned_jaccard@20"), 3)
        others = "1" if method == "retrain" else num(row.get("agree_other_jaccard@20"), 3)
        body.append([method, num(row["test_recall@10"]), num(row["test_ndcg@10"]),
                     f"{num(row['test_recall_repeat@10'])} / {num(row['test_recall_explore@10'])}",
                     num(row.get("forgotten_hit@20"), 3), num(row.get("rank_ratio_to_reference"), 2), own, others,
                     request_seconds(row), *source(record["provenance"], step)])
    return body


def unlearning() -> Section:
    """DNNTSP on Ta-Feng through the sequential protocol, one table per scenario that has run."""
    lines = ["DNNTSP trained 20 epochs on the original split (the grid `experiments/grids/nbr_tafeng.yaml`; the files "
             "written so far came from `experiments/nbr_unlearning_tafeng.py`, the same settings one scenario at a time); four matched "
             "retrains (the reference); every method from the trained model, request by request. Utility = test metrics "
             "on the data without the removals (the users left). Forgetting: the forgotten (user, item) pairs ranked from "
             "the user's own history (for a user removed altogether, the full data's history), hit@20 and mean rank "
             "relative to the retrain's (< 1: still remembered). Jaccard@20 of the top 20 with the retrain's, for the "
             "unlearned users and for 500 others. Seconds per request on a shared 2-core CPU: upper bounds."]
    header = ["method", "test Recall@10", "NDCG@10", "Recall@10 repeat / explore", "forgotten hit@20",
              "mean rank / retrain's", "Jaccard@20 unlearned", "Jaccard@20 others", "s/request median / mean",
              *PROVENANCE_COLUMNS]
    answers, missing = [], []
    for scenario, what in UNLEARNING_SCENARIOS:
        path = EXP + f"nbr_unlearning_tafeng_{scenario}.json"
        if not (REPO_ROOT / path).exists():
            missing.append(f"{what} ({code(UNLEARNING_COMMAND.format(scenario))})")
            continue
        record = load(path)
        rows = record["rows"]
        requests = pick(rows, "retrain").get("n_requests") or record.get("n_requests", "")
        lines += ["", f"**{what.capitalize()}, fraction {record.get('fraction', '')} ({requests} requests).**", "",
                  *table(header, unlearning_rows(rows, record)), "", files_line(path)]
        methods = [m for m in present_methods(rows) if m not in (*BASELINES, "retrain")]
        if methods:
            closest = max(methods, key=lambda m: float(pick(rows, m).get("agree_other_jaccard@20") or "nan"))
            answers.append(f"{what}: closest to the retrain's top 20 for other users {closest}")
    if missing:
        lines += ["", "Not yet run to the end: " + "; ".join(missing) + "."]
    answer = "; ".join(answers) if answers else "no scenario has finished yet (the runs resume where they stopped)"
    return Section("Unlearning on next-basket data: DNNTSP on Ta-Feng, per scenario (last checkpoint)", answer, lines)


SECTIONS = (tafeng, unlearning)
