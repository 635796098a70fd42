"""Micro-benchmarks of unlearning cost: one request, or a stream, timed as the protocol runs it.

A request's cost has two parts, both timed after the device has finished (`block_until_ready`):
preparing its data (forget / clean / retain batches, the model context without the removed
rows; `RequestLoop.prepare`) and the method's update (`RequestLoop.apply`). The first call
of a shape compiles; `time_request` reports that cold call apart from the warm-up calls
(discarded) and the timed repeats, each of which serves the same request from the same state.

    timing = ej.time_request(run, "sensitive:Horror", "scif", fraction=0.01)
    timing.first_seconds, timing.median_seconds, timing.p90_seconds
"""

from __future__ import annotations

import dataclasses

import numpy as np

from erase_jax.api import Run, Scenario, requests, takes_scenario_settings
from erase_jax.unlearn.protocol.loop import RequestLoop


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds of one request served `1 + warmup + repeats` times from the same state.

    `first_*`: the cold call (compilation included); `method_seconds` / `prepare_seconds`:
    the timed repeats (warm-up calls excluded); `compile_seconds` estimates compilation as the
    cold call minus the warm median.
    """

    method: str
    request: int
    first_method_seconds: float
    first_prepare_seconds: float
    method_seconds: tuple[float, ...]
    prepare_seconds: tuple[float, ...]

    @property
    def first_seconds(self) -> float:
        return self.first_method_seconds + self.first_prepare_seconds

    @property
    def seconds(self) -> np.ndarray:
        """Each repeat's preparation + method seconds."""
        return np.add(self.method_seconds, self.prepare_seconds)

    @property
    def median_seconds(self) -> float:
        return float(np.median(self.seconds))

    @property
    def p90_seconds(self) -> float:
        return float(np.percentile(self.seconds, 90))

    @property
    def method_median_seconds(self) -> float:
        return float(np.median(self.method_seconds))

    @property
    def compile_seconds(self) -> float:
        return max(self.first_seconds - self.median_seconds, 0.0)

    def summary(self) -> dict:
        """The numbers as a flat dict (a result row)."""
        return {"method": self.method, "request": self.request, "first_seconds": self.first_seconds,
                "compile_seconds": self.compile_seconds, "median_seconds": self.median_seconds,
                "p90_seconds": self.p90_seconds, "method_median_seconds": self.method_median_seconds,
                "prepare_median_seconds": float(np.median(self.prepare_seconds)), "repeats": len(self.method_seconds)}


@takes_scenario_settings
def time_request(run: Run, scenario: Scenario, method: str, request: int = 0, repeats: int = 5,
                 warmup: int = 1, options: dict | None = None, **settings) -> Timing:
    """Times request `request` (0-based) of the scenario's stream for `method`.

    The requests before it are served first (untimed); then the request is served
    `1 + warmup + repeats` times, each time from the state before it (same parameters, method
    state and retain-sampler cursor), so every repeat does the same work.

    >>> timing = ej.time_request(run, "sensitive:Horror", "scif", repeats=2, fraction=0.01)
    >>> len(timing.method_seconds), timing.first_seconds >= timing.compile_seconds >= 0
    (2, True)
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    loop = requests(run, scenario, method, options, **settings)
    if not 0 <= request < len(loop):
        raise ValueError(f"request must be in [0, {len(loop)}) (the stream's requests), got {request}")
    for _ in loop.take(request):
        pass
    before = loop.state_dict()
    times = []
    for _ in range(1 + warmup + repeats):
        trial = RequestLoop(loop.protocol, None, loop.method, state=before)
        trial.plan = loop.plan  # the same padding, planned once
        prepared = trial.prepare()
        if prepared.request is None:
            raise ValueError(f"request {request}: its users have no training rows (nothing to time)")
        row = trial.apply(prepared)
        times.append((row["method_seconds"], prepared.prepare_seconds))
    timed = times[1 + warmup:]
    return Timing(loop.protocol.config.method, request, times[0][0], times[0][1],
                  tuple(t[0] for t in timed), tuple(t[1] for t in timed))


@takes_scenario_settings
def time_stream(run: Run, scenario: Scenario, method: str, n_requests: int | None = None,
                options: dict | None = None, aot: bool = True, **settings) -> dict:
    """Serves the first `n_requests` requests (all when None) once, as the `unlearn` job does:
    with `aot` the stream's shapes are planned and compiled first (`RequestLoop.compile_requests`,
    its seconds are `aot_seconds`). Returns per-request seconds and compile seconds, their
    summary (`median_seconds` over all requests), the stream's compilation (`stream_compile_seconds`,
    in the ahead-of-time step and inside requests; `n_compiles`; `compilation_cache`: warm /
    cold / partial / off), `stream_seconds`, the whole stream's cost, compilation included
    (`mean_seconds` = stream_seconds / n_requests), and the means of the method's numeric
    diagnostics (`diagnostics_mean`, e.g. CG iterations).

    >>> stream = ej.time_stream(run, "sensitive:Horror", "scif", n_requests=3, fraction=0.01)
    >>> stream["n_requests"], len(stream["seconds"]), stream["stream_seconds"] >= sum(stream["seconds"])
    (3, 3, True)
    """
    loop = requests(run, scenario, method, options, **settings)
    compiled = loop.compile_requests() if aot else {"aot_seconds": 0.0, "plan_seconds": 0.0}
    rows = [row for row in loop.take(n_requests) if "seconds" in row]
    seconds = np.array([row["seconds"] for row in rows])
    in_requests = [row["compile_seconds"] for row in rows]
    stream_seconds = float(compiled["aot_seconds"] + compiled["plan_seconds"] + seconds.sum())
    n = len(rows)
    standard = {"batch", "users", "n_forget_rows", "n_removed", "n_retain_rows", "seconds", "method_seconds",
                "compile_seconds", "n_compiles", "timeout"}
    numeric = {k for row in rows for k, v in row.items() if k not in standard and isinstance(v, (int, float))}
    diagnostics = {k: float(np.mean([row[k] for row in rows if k in row])) for k in sorted(numeric)}
    return {"method": loop.protocol.config.method, "n_requests": n, "seconds": seconds.tolist(),
            "compile_seconds": in_requests, "policy": loop.protocol.config.request_shapes,
            "n_shapes": compiled.get("n_shapes"), "plan_seconds": compiled["plan_seconds"],
            "aot_seconds": compiled["aot_seconds"],
            "stream_compile_seconds": float(compiled.get("compile_seconds", 0.0) + sum(in_requests)),
            "n_compiles": int(compiled.get("n_compiles", 0) + sum(row["n_compiles"] for row in rows)),
            "n_compiles_in_requests": int(sum(row["n_compiles"] for row in rows)),
            "compilation_cache": compiled.get("compilation_cache", "off"),
            "first_seconds": float(seconds[0]) if n else float("nan"),
            "median_seconds": float(np.median(seconds)) if n else float("nan"),
            "p90_seconds": float(np.percentile(seconds, 90)) if n else float("nan"),
            "total_seconds": float(seconds.sum()), "stream_seconds": stream_seconds,
            "mean_seconds": stream_seconds / n if n else float("nan"),
            "method_median_seconds": float(np.median([row["method_seconds"] for row in rows])) if n else float("nan"),
            "retain_rows_mean": float(np.mean([row["n_retain_rows"] for row in rows])) if n else float("nan"),
            "diagnostics_mean": diagnostics}
