"""Next-basket recommendation: does DNNTSP beat the frequency baselines on Ta-Feng (the original ERASE
split), on repeat and on new items?"""

from __future__ import annotations

from results_topics.cells import PROVENANCE_COLUMNS, Section, num, seconds, section, source, table
from results_topics.read import EXP, load

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


SECTIONS = (tafeng,)
