"""A request stream's padded shapes, planned before its first request and compiled ahead of time.

A method's jitted update compiles once per padded shape of (forget, clean, retain) batches; a
request that meets a new shape pays that compilation inside its own time. The stream is known
before it starts (the forget set's order, the seeded retain sampler), so `plan_shapes` replays
the retain sampler on a copy of its state and lists every shape the remaining requests will
hand to the method. Two policies (`UnlearnConfig.request_shapes`):

* "stream" (default): every request is padded to the stream's largest row buckets (the task's
  `request_batches(..., sizes=...)`, for tasks whose rows object sets `accepts_sizes`), and
  for tasks whose batches have a history width (NBR, SBR: `request_width`) to the stream's
  widest request, so a stream needs one shape (two when some requests have no clean rows)
  and compiles once;
* "buckets": each request keeps its own power-of-two buckets (one shape per bucket pair and
  width).

`compile_stream` then serves one representative request of each planned shape to the method
from the loop's current state, discarding the result: every jitted program the stream needs
is compiled (or loaded from JAX's persistent compilation cache) before the first timed
request. Padding rows carry weight 0, so a policy changes no method's arithmetic, only the
random draws that depend on a batch's length (sampled negatives, shuffles).

`compile_counter()` measures compilation through `jax.monitoring` (each XLA executable built
or loaded, its seconds, trace and lowering seconds, persistent-cache hits and misses).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable

import jax
import jax.monitoring
import numpy as np

from erase_jax.batching.cf import bucket_size
from erase_jax.unlearn.protocol.requests import RetainSampler

SHAPE_POLICIES = ("stream", "buckets")

_EVENTS = {
    "/jax/core/compile/backend_compile_duration": "backend",
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
}
_TOTALS = {"n_compiles": 0, "backend_seconds": 0.0, "trace_seconds": 0.0, "lower_seconds": 0.0,
           "cache_hits": 0, "cache_misses": 0}
_LISTENING = []


def _on_duration(event: str, seconds: float, **_) -> None:
    kind = _EVENTS.get(event)
    if kind is None:
        return
    _TOTALS[f"{kind}_seconds"] += seconds
    if kind == "backend":
        _TOTALS["n_compiles"] += 1


def _on_event(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _TOTALS["cache_hits"] += 1
    elif event == "/jax/compilation_cache/cache_misses":
        _TOTALS["cache_misses"] += 1


def compile_totals() -> dict:
    """This process's compilation counters so far (registers the listeners on first use)."""
    if not _LISTENING:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        jax.monitoring.register_event_listener(_on_event)
        _LISTENING.append(True)
    return dict(_TOTALS)


@contextlib.contextmanager
def compile_counter():
    """Yields a dict filled, on exit, with the compilation done inside the block:
    `n_compiles` (XLA executables built or loaded from the persistent cache),
    `compile_seconds` (trace + lowering + backend seconds), `cache_hits`, `cache_misses`."""
    before, out = compile_totals(), {}
    try:
        yield out
    finally:
        after = compile_totals()
        delta = {key: after[key] - before[key] for key in after}
        out.update(n_compiles=delta["n_compiles"], cache_hits=delta["cache_hits"], cache_misses=delta["cache_misses"],
                   compile_seconds=delta["backend_seconds"] + delta["trace_seconds"] + delta["lower_seconds"])


def cache_state(stats: dict) -> str:
    """'off' (no persistent cache in use), 'warm' (every executable it was asked for was in it),
    'cold' (none was) or 'partial'."""
    hits, misses = stats.get("cache_hits", 0), stats.get("cache_misses", 0)
    if not jax.config.jax_compilation_cache_dir:
        return "off"
    if hits and not misses:
        return "warm"
    return "cold" if not hits else "partial"


@dataclasses.dataclass(frozen=True)
class PlannedRequest:
    """One remaining request as the loop will prepare it (`RequestLoop.prepare`)."""

    batch: int
    n_forget_rows: int
    retain_rows: np.ndarray
    n_clean_rows: int  # 0: the request has no clean batch
    width: int = 0  # the history width of its batches (`request_width`); 0: the task has none

    @property
    def has_clean(self) -> bool:
        return self.n_clean_rows > 0

    @property
    def n_joined_rows(self) -> int:
        return self.n_forget_rows + self.n_clean_rows + len(self.retain_rows)


@dataclasses.dataclass(frozen=True)
class ShapePlan:
    """The remaining requests of a stream and the padding each gets.

    `sizes` is None ("buckets": the task's own buckets) or the (forget, retain, joined) row
    counts every request is padded to ("stream"; joined: F + C + R for methods that join them,
    `RequestData.joined_rows`), `width` None or the history width every request is padded to
    ("stream", tasks with one); `row_bucket` the task's padded row count under "buckets";
    `shapes` maps each distinct shape key (rows, clean present[, width]) to the first request
    that has it.
    """

    policy: str
    requests: tuple[PlannedRequest, ...]
    sizes: tuple[int, int, int] | None
    width: int | None = None
    row_bucket: Callable[[int], int] = bucket_size

    def shape_of(self, planned: PlannedRequest) -> tuple:
        if self.sizes is not None:
            key = (*self.sizes, planned.has_clean)
            width = planned.width if self.width is None else self.width
        else:
            rows = (planned.n_forget_rows, len(planned.retain_rows), planned.n_joined_rows)
            key, width = (*(self.row_bucket(n) for n in rows), planned.has_clean), planned.width
        return (*key, width) if width else key

    @property
    def shapes(self) -> dict[tuple, PlannedRequest]:
        first: dict[tuple, PlannedRequest] = {}
        for planned in self.requests:
            first.setdefault(self.shape_of(planned), planned)
        return first


def plan_shapes(loop, policy: str = "stream") -> ShapePlan:
    """Replays the whole stream (retain draws from a fresh sampler with the protocol's seed,
    removal masks) without running the method, so the padding is the same for a fresh and a
    resumed loop; the plan lists the requests from `loop.next_batch` on. See the module
    docstring for the policies."""
    if policy not in SHAPE_POLICIES:
        raise ValueError(f"request_shapes must be one of {SHAPE_POLICIES}, got {policy!r}")
    from erase_jax.unlearn.protocol.requests import retain_pool_factor
    from erase_jax.unlearn.protocol.run import removal_rows

    protocol = loop.protocol
    width_of = getattr(protocol.rows, "request_width", None)
    row_bucket = getattr(protocol.rows, "row_bucket", bucket_size)
    sampler = RetainSampler(protocol.train_rows, len(protocol.stream), protocol.seed, retain_pool_factor(loop.method))
    removed = np.zeros_like(loop.removed)
    with_clean = protocol.config.scenario != "spam"
    planned = []
    for b in range(len(loop)):
        batch = protocol.stream.batch(b)
        forget_rows = protocol.train_rows.gather(batch.users)
        removed[removal_rows(protocol, batch)] = True
        if len(forget_rows) == 0:
            continue
        need = min(loop.method.retain_budget(len(forget_rows)), loop.retain_cap)
        retain = sampler.sample(need, protocol.stream.users_through(b)) if need > 0 else np.zeros(0, np.int64)
        n_clean = int((~removed[forget_rows]).sum()) if with_clean else 0
        width = width_of(batch.users, retain) if width_of is not None else 0
        planned.append(PlannedRequest(b, len(forget_rows), retain, n_clean, width))
    sizes = width = None
    if policy == "stream" and planned and getattr(protocol.rows, "accepts_sizes", False):
        sizes = tuple(row_bucket(max(rows)) for rows in zip(*((p.n_forget_rows, len(p.retain_rows), p.n_joined_rows)
                                                               for p in planned)))
        width = max(p.width for p in planned) or None
    return ShapePlan(policy, tuple(p for p in planned if p.batch >= loop.next_batch), sizes, width, row_bucket)


def committed(tree):
    """`tree` with every uncommitted device array placed explicitly where it lies: a jitted
    function's outputs are committed, and a fresh state's (an optimiser's step count made by
    `jnp.zeros`) are not, which would make the second request compile again."""
    def commit(leaf):
        return jax.device_put(leaf, leaf.sharding) if isinstance(leaf, jax.Array) and not leaf.committed else leaf

    return jax.tree.map(commit, tree)


def compile_stream(loop, plan: ShapePlan) -> dict:
    """Serves one representative request of each planned shape to the loop's method from the
    loop's current state and discards the result (nothing in the loop changes); returns the
    seconds it took, the shapes and the compilation counters."""
    from erase_jax.unlearn.protocol.run import removal_rows, request_data

    protocol = loop.protocol
    started = time.perf_counter()
    with compile_counter() as stats:
        for planned in plan.shapes.values():
            batch = protocol.stream.batch(planned.batch)
            removed_after = loop.removed.copy()
            removed_after[removal_rows(protocol, batch)] = True
            key = jax.random.fold_in(loop.base_key, planned.batch)
            request = request_data(protocol, batch, loop.removed, removed_after, planned.retain_rows, key,
                                   loop.time_limit, loop.context, plan.sizes, plan.width)
            jax.block_until_ready(loop.method.unlearn(loop.model, loop.params, loop.method_state, request, key))
    return {"policy": plan.policy, "n_shapes": len(plan.shapes), "shapes": [list(s) for s in plan.shapes],
            "aot_seconds": time.perf_counter() - started, **stats, "compilation_cache": cache_state(stats)}
