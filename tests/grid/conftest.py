"""The smoke grid run once per test session (local executor, two workers), and how tests read
its leaderboard: every grid test that needs finished tasks starts from it."""

from __future__ import annotations

import pandas as pd
import pytest

from erase_jax.grid.command import execute_grid
from tests.grid.test_spec import GRIDS

SMOKE_FILE = GRIDS / "smoke.yaml"
TIMING = ("seconds", "_rss_", "_mib", "n_timeouts", "timeout", "compil")  # measures that differ between runs (compil: the compilation cache's state and counts)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke grid run once, uninterrupted, with two workers: (out folder, plan, summary)."""
    out = tmp_path_factory.mktemp("grid")
    plan, summary, _ = execute_grid(SMOKE_FILE, out, workers=2, quiet=True)
    return out, plan, summary


def leaderboard(out, name="smoke") -> pd.DataFrame:
    """A grid's leaderboard.csv as strings, exactly as written."""
    return pd.read_csv(out / name / "leaderboard.csv", dtype=str, keep_default_na=False)


def without_timing(frame: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard without the measures that differ between runs (times, memory), sorted."""
    kept = frame[~frame["metric"].str.contains("|".join(TIMING), regex=True)]
    return kept.sort_values(["cell", "method", "checkpoint", "metric"]).reset_index(drop=True)
