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
                options: dict | None = None, **settings) -> dict:
    """Serves the first `n_requests` requests (all when None) once, as the `unlearn` job does;
    returns the per-request seconds and their summary, the first request apart (it compiles;
    later requests compile again only for new padding buckets).

    >>> stream = ej.time_stream(run, "sensitive:Horror", "scif", n_requests=3, fraction=0.01)
    >>> stream["n_requests"], len(stream["seconds"])
    (3, 3)
    """
    loop = requests(run, scenario, method, options, **settings)
    rows = [row for row in loop.take(n_requests) if "seconds" in row]
    seconds = np.array([row["seconds"] for row in rows])
    rest = seconds[1:] if len(seconds) > 1 else seconds
    return {"method": loop.protocol.config.method, "n_requests": len(rows), "seconds": seconds.tolist(),
            "first_seconds": float(seconds[0]) if len(seconds) else float("nan"),
            "median_seconds": float(np.median(rest)) if len(rest) else float("nan"),
            "p90_seconds": float(np.percentile(rest, 90)) if len(rest) else float("nan"),
            "total_seconds": float(seconds.sum())}
