"""The leaderboard's views and HTML page on a hand-made leaderboard of two seeds: mean +/- std,
the gap to the retrain and the cost share worked out by hand, the same CSV giving the same
bytes, and the page rendered by a real headless Chromium (tables present, sort script run)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pandas as pd
import pytest

from erase_jax.grid import page, views
from erase_jax.grid.leaderboard import COLUMNS

BROWSERS = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome", "chrome")
# (method, seed) -> (test_ndcg@10 at the last checkpoint, its cost measures)
NDCG = {("untouched", 2): 0.30, ("scif", 2): 0.20, ("retrain", 2): 0.10,
        ("untouched", 3): 0.34, ("scif", 3): 0.24, ("retrain", 3): 0.12}
COST = {("scif", 2): {"request_seconds_median": 0.5, "request_seconds_total": 2.0},
        ("scif", 3): {"request_seconds_median": 1.6, "request_seconds_total": 4.0},
        ("retrain", 2): {"retrain_seconds": 10.0}, ("retrain", 3): {"retrain_seconds": 20.0}}


def hand_made_board() -> pd.DataFrame:
    """Two seeds of untouched, scif and the retrain over four checkpoints; NDCG rises 0.01 a
    checkpoint to the values of NDCG at the last one; costs at the last checkpoint only."""
    rows = []
    for (method, seed), ndcg in NDCG.items():
        cell = f"{'reference' if method == 'retrain' else 'unlearn'}-{method}"
        for checkpoint in range(4):
            measures = {"test_ndcg@10": ndcg - 0.01 * (3 - checkpoint)}
            if checkpoint == 3:
                measures.update(COST.get((method, seed), {}))
            rows += [{"cell": cell, "dataset": "synthetic", "model": "BPR", "scenario": "horror", "method": method,
                      "seed": seed, "checkpoint": checkpoint, "metric": metric, "value": repr(value),
                      "commit": "abc", "machine": "test"} for metric, value in measures.items()]
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype(str)


def test_the_views_give_mean_std_over_seeds_the_gap_to_the_retrain_and_the_cost_share():
    [section] = views.sections(hand_made_board())
    assert (section.title, section.checkpoint, section.seeds) == ("horror: BPR on synthetic", 3, ("2", "3"))
    side, gap, cost = ({method: [c.text() if c else "" for c in cells] for method, cells in t.rows} for t in section.tables)
    assert side["untouched"][0] == "0.3200 +/- 0.0283" and side["scif"][0] == "0.2200 +/- 0.0283"
    assert side["retrain"][-1] == "15.0000 +/- 7.0711"  # retrain seconds
    assert gap == {"untouched": ["0.2100 +/- 0.0141"], "scif": ["0.1100 +/- 0.0141"]}
    # per request: 0.5 / 10 = 5 %, 1.6 / 20 = 8 %; all requests: 2 / 10 = 20 %, 4 / 20 = 20 %
    assert cost["scif"] == ["1.0500 +/- 0.7778", "6.5 +/- 2.1", "3.0000 +/- 1.4142", "20.0 +/- 0.0"]
    assert cost["untouched"] == ["", "", "", ""]
    assert section.tables[2].titles[1] == "% of one retrain per request"
    trajectory = section.trajectories["NDCG@10"]
    assert list(trajectory) == ["untouched", "scif", "retrain"]
    assert trajectory["scif"] == pytest.approx((0.19, 0.20, 0.21, 0.22))


def test_several_models_of_a_scenario_start_with_every_model_and_method_in_one_table():
    """A baseline (EASE: untouched and its retrain, seed 2 only) beside the two-seed BPR board."""
    ease = {("untouched", 2): 0.40, ("retrain", 2): 0.41}
    rows = [{"cell": f"c-{method}", "dataset": "synthetic", "model": "EASE", "scenario": "horror", "method": method,
             "seed": "2", "checkpoint": str(k), "metric": "test_ndcg@10", "value": repr(value), "commit": "abc",
             "machine": "test"} for (method, _), value in ease.items() for k in range(4)]
    board = pd.concat([hand_made_board(), pd.DataFrame(rows, columns=list(COLUMNS))], ignore_index=True)
    every, bpr, alone = views.sections(board)
    assert (every.title, bpr.title, alone.title) == (
        "horror: every model on synthetic", "horror: BPR on synthetic", "horror: EASE on synthetic")
    assert not every.trajectories and len(every.tables) == 1 and every.tables[0].titles == ("NDCG@10",)
    table = {label: cells[0].text() for label, cells in every.tables[0].rows}
    assert table == {"BPR: untouched": "0.3200 +/- 0.0283", "BPR: scif": "0.2200 +/- 0.0283",
                     "BPR: retrain": "0.1100 +/- 0.0141", "EASE: untouched": "0.4000", "EASE: retrain": "0.4100"}
    assert [m for m, _ in alone.tables[1].rows] == ["untouched"] and alone.tables[1].rows[0][1][0].text() == "-0.0100"
    html = page.render(board, None, "hand")
    assert html.count("<h3>Trajectories") == 2  # none for the comparison


def test_the_same_csv_gives_the_same_page_with_every_table_and_figure(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        hand_made_board().to_csv(tmp_path / name / "leaderboard.csv", index=False)
    first, second = page.write_page(tmp_path / "a", "hand"), page.write_page(tmp_path / "b", "hand")
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    assert text.count('<table class="sortable">') == 3 and text.count("<svg ") == 1
    assert "0.3200 ± 0.0283" in text and 'data-value="0.32' in text
    assert "http" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from elsewhere


def chromium() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.mark.skipif(chromium() is None, reason=f"no Chromium found ({', '.join(BROWSERS)}); "
                    "apt-get install chromium-headless-shell (Debian) to run this check")
def test_a_headless_chromium_renders_the_tables_and_sorts_them(tmp_path):
    hand_made_board().to_csv(tmp_path / "leaderboard.csv", index=False)
    html = page.write_page(tmp_path, "hand").read_text()
    # after the page's own script: sort the first table by NDCG (ascending) and record the order
    probe = """<script>
      var table = document.querySelector("table"), header = table.querySelectorAll("thead th")[1];
      header.click();
      var order = Array.prototype.map.call(table.tBodies[0].rows, function (r) { return r.cells[0].textContent; });
      document.body.setAttribute("data-order", order.join(",") + ";" + header.getAttribute("aria-sort"));
    </script>"""
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
    result = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                             "--enable-logging=stderr", "--dump-dom", probed.as_uri()],
                            capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(re.findall(r'<table class="sortable" data-sortable="ready">', dom)) == 3, dom[:2000]
    assert 'data-order="retrain,scif,untouched;ascending"' in dom
    assert dom.count("<svg") == 1 and "Uncaught" not in result.stderr
