"""Seeds a grid's archive with the cells of a leaderboard committed before archives existed.

    python experiments/grid_archive_from_leaderboard.py experiments/grids/cf_ml-100k_full.yaml \
        experiments/results/grids/cf_ml-100k/leaderboard.csv

writes, into the grid's archive (default `experiments/results/grids/<grid name>/`, or --archive
DIR), a record per `reference` and `unlearn` task of the grid that the leaderboard has and the
archive has not (`erase_jax.grid.archive.rebuild_records`: the task's rows as the file the
leaderboard reads, the marker its commit and machine, `rebuilt_from` the leaderboard's path). A
later `erase-jax grid GRID --archive` then takes those tasks as done and never trains what only
they needed. Run from the repository root.
"""

from __future__ import annotations

import argparse

from erase_jax.grid.archive import Archive, default_folder, rebuild_records
from erase_jax.grid.leaderboard import read_leaderboard
from erase_jax.grid.planner import make_plan
from erase_jax.grid.spec import load_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grid", help="the grid file whose archive is seeded")
    parser.add_argument("leaderboard", help="a leaderboard.csv whose cells (task ids) the grid shares")
    parser.add_argument("--archive", help="the archive folder (default: the grid's, under experiments/results/grids)")
    args = parser.parse_args()
    plan = make_plan(load_grid(args.grid))
    archive = Archive(args.archive or default_folder(plan.grid.name))
    done = archive.done(plan)
    new = [r for r in rebuild_records(plan, read_leaderboard(args.leaderboard), args.leaderboard) if r["task"] not in done]
    for record in new:
        archive.write(record)
    print(f"{archive.folder}: {len(new)} records rebuilt from {args.leaderboard} "
          f"({len(done)} of the grid's {len(plan.tasks)} tasks were archived before)")


if __name__ == "__main__":
    main()
