"""Shared test fixtures: where the real data sets live; the rule that real-data tests are slow.

Tests run in two tiers (pyproject.toml): the default run leaves out tests marked `slow`
(`pytest -m slow` runs them). Every test that reads the real data sets (the `data_root`
fixture) is in the slow tier without marking it by hand.

Most of a test's time is XLA compiling tiny programs, so tests compile with most XLA
optimisations off (`JAX_DISABLE_MOST_OPTIMIZATIONS=1`, about 40 % less time), in this process
and in the CLI subprocesses some tests start; set the variable to 0 to test optimised code.
"""

import os
from pathlib import Path

os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # before jax is imported: subprocesses inherit it

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_disable_most_optimizations", os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] not in ("0", "", "false"))

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    """`$ERASE_JAX_DATA` if set, else `<repo>/../shared/data` (the project's documented default)."""
    return Path(os.environ.get("ERASE_JAX_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="module", autouse=True)
def fresh_compilation_caches(request):
    """In the slow tier, drops JAX's compiled programs after each test module: one process runs the
    whole tier, and the programs of earlier modules (the NBR models' many bucket branches among
    them) otherwise accumulate; a slow-tier run once crashed inside XLA's compiler after about a
    hundred tests' worth of them. The fast tier keeps them (modules share small programs)."""
    yield
    if (request.config.option.markexpr or "").strip() == "slow":
        jax.clear_caches()


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set ERASE_JAX_DATA to run real-data tests)")
    return root


def require_dataset(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_dir():
        pytest.skip(f"data set {name!r} is not under {root}")
    return path


@pytest.hookimpl(tryfirst=True)  # before the `-m` selection
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
