"""One step of an experiment script: an `erase-jax` command run in its own process, timed.

The experiment scripts drive the command line as a user would, so each step's state lives in
its run folder and a rerun resumes it. `erase_jax(args, log)` runs `erase-jax ARGS --quiet`
from the repository root with its output in `log`, stops the script (naming the log) if the
command fails, and returns its wall seconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def erase_jax(args: list[str], log: Path) -> float:
    command = [sys.executable, "-m", "erase_jax.cli", *args, "--quiet"]
    print(f"$ erase-jax {' '.join(args)}", flush=True)
    started = time.perf_counter()
    with Path(log).open("w") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    if result.returncode != 0:
        sys.exit(f"erase-jax {args[0]} failed (exit {result.returncode}); see {log}")
    return time.perf_counter() - started
