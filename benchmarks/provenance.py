"""Where a result came from: the `provenance` block every benchmark and experiment result carries.

    from provenance import provenance        # benchmarks/ on sys.path
    record = {"provenance": provenance(config="experiments/configs/bpr_ml-100k.yaml"), ...}

`provenance()` returns

    command   the command line as typed (`python <script> <arguments>`)
    config    what configured the run: a config file, overrides, or a resolved config dict
    commit    `git rev-parse --short HEAD` of the repository ("unknown" outside a checkout)
    dirty     whether tracked files differed from that commit (None when unknown)
    machine   platform, CPU model and count, Python, and where JAX is importable its version,
              backend and devices; `description` is the one-line summary the results page shows
    date      UTC, ISO 8601, to the second

It needs only the standard library (the RecBole baselines run in a virtual environment without
JAX); JAX is described only if the running script has imported it or it imports cleanly.
The results pages (`benchmarks/results_page.py`) read these blocks into each row's `config`, `command`,
`commit` and `machine` (`benchmarks/results_topics/cells.py`).
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: Path = REPO_ROOT) -> tuple[str, bool | None]:
    """(short hash of HEAD, whether tracked files differ from it); ("unknown", None) without git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", None
    return commit or "unknown", bool(status.strip())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """Facts about the machine and the JAX installation, with a one-line `description`."""
    facts: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import jax
    except ImportError:
        jax = None
    if jax is not None:
        devices = jax.devices()
        facts.update(jax=jax.__version__, backend=jax.default_backend(),
                     devices=[getattr(d, "device_kind", d.platform) for d in devices])
        accelerator = "" if facts["backend"] == "cpu" else f", {len(devices)} x {facts['devices'][0]}"
        facts["description"] = (f"{facts['cpu_count']}-core {facts['cpu_model']}{accelerator}, "
                                f"jax {facts['jax']} ({facts['backend']})")
    else:
        facts["description"] = f"{facts['cpu_count']}-core {facts['cpu_model']}"
    return facts


def command_line(argv: list[str] | None = None) -> str:
    """`python <script relative to the repository> <arguments>`, quoted as a shell would need."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else None
    if script is not None and script.is_file() and script.is_relative_to(REPO_ROOT):
        argv[0] = str(script.relative_to(REPO_ROOT))
    return shlex.join(["python", *argv])


def provenance(config: Any = None, argv: list[str] | None = None, command: str | None = None, **extra) -> dict[str, Any]:
    """The provenance block of a result written now (see the module docstring); `command` replaces
    the one built from `argv` (e.g. with the interpreter and environment a baseline needs)."""
    commit, dirty = git_commit()
    return {
        "command": command or command_line(argv),
        "config": config,
        "commit": commit,
        "dirty": dirty,
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
