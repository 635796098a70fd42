"""The committed CF ML-100K leaderboard (`experiments/results/grids/cf_ml-100k/`): complete for its
grid file, its markdown and HTML what its CSV gives, and its page rendered by a real headless
Chromium with every table and figure."""

from __future__ import annotations

import re
import subprocess

import pytest

from erase_jax.grid import page, views
from erase_jax.grid.leaderboard import markdown, read_leaderboard
from erase_jax.grid.planner import make_plan
from erase_jax.grid.spec import load_grid
from tests.conftest import REPO_ROOT
from tests.grid.test_page import BROWSERS, chromium
from tests.grid.test_spec import GRIDS

BOARD = REPO_ROOT / "experiments" / "results" / "grids" / "cf_ml-100k"


def test_the_committed_leaderboard_has_every_cell_of_its_grid_and_no_failure():
    plan = make_plan(load_grid(GRIDS / "cf_ml-100k.yaml"))
    board = read_leaderboard(BOARD / "leaderboard.csv")
    assert set(board["cell"]) == {c.unlearn for c in plan.cells} | {c.reference for c in plan.cells}
    assert (BOARD / "failures.csv").read_text().count("\n") == 1  # the header alone
    for cell in plan.cells:  # each method's four checkpoints
        rows = board[(board["cell"] == cell.unlearn) & (board["method"] == cell.cell.method)]
        assert sorted(set(rows["checkpoint"])) == ["0", "1", "2", "3"], cell.cell


def test_the_committed_markdown_and_page_are_what_the_csv_gives(tmp_path):
    board = read_leaderboard(BOARD / "leaderboard.csv")
    assert (BOARD / "leaderboard.md").read_text() == markdown("cf_ml-100k", views.sections(board), [])
    for name in ("leaderboard.csv", "failures.csv"):
        (tmp_path / name).write_bytes((BOARD / name).read_bytes())
    assert page.write_page(tmp_path, "cf_ml-100k").read_bytes() == (BOARD / page.PAGE_FILE).read_bytes()


@pytest.mark.skipif(chromium() is None, reason=f"no Chromium found ({', '.join(BROWSERS)}); "
                    "apt-get install chromium-headless-shell (Debian) to run this check")
def test_a_headless_chromium_renders_the_committed_page(tmp_path):
    sections = views.sections(read_leaderboard(BOARD / "leaderboard.csv"))
    result = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                             "--enable-logging=stderr", "--dump-dom", (BOARD / page.PAGE_FILE).as_uri()],
                            capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    tables = sum(len(s.tables) for s in sections)
    assert len(re.findall(r'<table class="sortable" data-sortable="ready">', dom)) == tables  # the sort script ran
    assert dom.count("<svg") == sum(len(s.trajectories) for s in sections) and "Uncaught" not in result.stderr
