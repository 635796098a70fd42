"""The linter: `ruff check` (configured in pyproject.toml) finds nothing in the code base."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

CHECKED = ("erase_jax", "tests", "benchmarks", "experiments", "examples")


def test_ruff_finds_nothing():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    folders = [name for name in CHECKED if (REPO_ROOT / name).is_dir()]
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *folders],
                            cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, f"ruff check {' '.join(folders)}:\n{result.stdout}{result.stderr}"
