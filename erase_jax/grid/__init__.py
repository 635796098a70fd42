"""The benchmark as one command: a grid of data sets x models x scenarios x methods x seeds.

    spec.py         the grid file, validated before anything runs (`load_grid`)
    planner.py      cells -> a dependency graph of tasks keyed by their settings' content
    store.py        the content-addressed store of task folders and done markers
    worker.py       one task in its own process (`python -m erase_jax.grid.worker`)
    executors/      where tasks run: `local` (a pool of worker processes); one file each
    schedule.py     runs a plan's unfinished tasks in dependency order; failures block only their dependents
    archive.py      a grid's finished tasks as small records in the repository: a grid finished over sessions
    leaderboard.py  every result in one long CSV and a markdown view per scenario
    command.py      `erase-jax grid`: the above in order, or the plan with `--dry-run`
"""
