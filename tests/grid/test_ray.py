"""The Ray executor: a task's declared needs become Ray resources, its settings are checked
before anything starts, and (slow) the smoke grid run on a local Ray instance gives the local
executor's leaderboard, timing and memory aside."""

from __future__ import annotations

import pandas as pd
import pytest

from erase_jax.grid.command import execute_grid
from erase_jax.grid.executors import check_executor, executor_names, get_executor
from erase_jax.grid.planner import NEEDS, Needs
from tests.grid.conftest import SMOKE_FILE, leaderboard, without_timing

NO_RAY = "ray is not installed (pip install -e '.[ray]'; the test extra includes it)"


def test_executors_are_found_by_name_and_only_ray_joins_a_cluster():
    assert executor_names() == ["local", "ray"]
    with pytest.raises(ValueError, match="only --executor ray joins one"):
        get_executor("local", 1, address="auto")
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        check_executor("dask", 1)
    with pytest.raises(ValueError, match="--workers must be at least 1"):
        check_executor("ray", 0)


def test_a_task_asks_ray_for_a_gpu_only_when_it_wants_one_and_the_cluster_has_one():
    pytest.importorskip("ray", reason=NO_RAY)
    from erase_jax.grid.executors.ray import ray_options

    assert all(needs.accelerator and needs.cpus == 1 for needs in NEEDS.values())
    assert ray_options(Needs(), gpus_in_cluster=2) == {"num_cpus": 1, "num_gpus": 1}
    assert ray_options(Needs(), gpus_in_cluster=0) == {"num_cpus": 1, "num_gpus": 0}
    assert ray_options(Needs(cpus=4, accelerator=False), gpus_in_cluster=8) == {"num_cpus": 4, "num_gpus": 0}


@pytest.mark.slow
def test_the_smoke_grid_on_a_local_ray_instance_gives_the_local_executors_leaderboard(smoke, tmp_path):
    ray = pytest.importorskip("ray", reason=NO_RAY)
    out = tmp_path / "ray"
    plan, summary, _ = execute_grid(SMOKE_FILE, out, workers=2, executor="ray", quiet=True)
    assert summary.failed == {} and summary.blocked == {}, summary.failed
    assert sorted(summary.executed) == sorted(plan.tasks)
    assert not ray.is_initialized()  # the grid stopped the instance it started
    pd.testing.assert_frame_equal(without_timing(leaderboard(out)), without_timing(leaderboard(smoke[0])))
