"""The request loop of the sequential protocol, one request at a time: the CLI's and the API's.

    loop = RequestLoop(protocol, params)            # the method of protocol.config
    for row in loop.take(5):                        # the first five requests
        ...                                         # loop.params: the model after them

Each step is the original's (unlearning-algorithms spec 5.4): the request's users' training
rows are marked removed, the method's retain budget (capped at 10 % of all interactions,
`RETAIN_CAP_SHARE`) is drawn from the retain sampler skipping every user unlearned so far,
the forget / clean / retain batches are built (`run.request_data`) with the request's key
`fold_in(fold_in(PRNGKey(seed), REQUEST_KEY_SALT), b)`, and the method updates the parameters
and its state. `state_dict()` is the resumable state (parameters, method state, removal mask,
next request, retain-pool cursor); `RequestLoop(..., state=...)` continues from it exactly.
`run_requests` (the `unlearn` job) drives the same loop and adds the per-request and quarter
checkpoints; `erase_jax.api` and `erase_jax.bench` drive it from Python.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np

from erase_jax.checkpoint import Checkpointer
from erase_jax.unlearn.methods.base import RequestData, UnlearningMethod, build_method
from erase_jax.unlearn.protocol.requests import RETAIN_CAP_SHARE, RetainSampler, retain_pool_factor
from erase_jax.unlearn.protocol.run import (
    QUARTERS_DIR,
    STATE_DIR,
    UnlearningRun,
    removal_rows,
    request_data,
    training_context,
)
from erase_jax.unlearn.protocol.shapes import ShapePlan, committed, compile_counter, compile_stream, plan_shapes

SKIPPED = "no training rows"  # the `skipped` value of a request whose users have no training rows
REQUEST_KEY_SALT = 7  # the request keys are fold_in(fold_in(PRNGKey(seed), 7), b): kept for resumed runs


@dataclasses.dataclass
class PreparedRequest:
    """Request `batch.index` with its data built, before the method runs (`RequestLoop.prepare`).

    `request` is None when the request's users have no training rows (the step only marks
    their rows removed); `removed_after` is the removal mask once it is served.
    """

    batch: Any  # `requests.RequestBatch`
    request: RequestData | None
    key: jax.Array
    retain_rows: np.ndarray
    removed_after: np.ndarray
    prepare_seconds: float


class RequestLoop:
    """The protocol's requests applied in order to a model: the one loop behind every caller.

    `protocol` fixes the forget set, request stream and seed (`run.build_protocol`); `params`
    are the trained parameters; `method` defaults to `protocol.config.method` with its options;
    `state` (a `state_dict()`) resumes a loop. After `step()` the attributes `params`,
    `method_state`, `removed` (bool over the interactions), `context` (the model's data context
    without the removed rows) and `next_batch` describe the model after the requests served so
    far; `rows` holds the record rows of the requests this object served.

    >>> loop = ej.requests(run, "sensitive:Horror", "scif", fraction=0.01)   # a RequestLoop
    >>> len(loop) > 2, [row["batch"] for row in loop.take(2)], loop.next_batch, int(loop.removed.sum()) > 0
    (True, [0, 1], 2, True)
    """

    def __init__(self, protocol: UnlearningRun, params, method: UnlearningMethod | None = None,
                 state: dict | None = None, fresh_start: bool = True):
        config = protocol.config
        self.protocol = protocol
        self.method = method if method is not None else build_method(config.method, **config.method_options)
        self.model = protocol.experiment.model
        self.n_rows = len(protocol.experiment.data.interactions)
        self.retain_cap = int(RETAIN_CAP_SHARE * self.n_rows)
        n = len(protocol.stream)
        self.time_limit = None if config.max_hours is None else config.max_hours * 3600 / n
        if state is None:
            state = self.initial_state(params, train=fresh_start)
        self.params, self.method_state = state["params"], state["method_state"]
        self.removed = np.asarray(state["removed"]).copy()
        self.next_batch = int(state["next_batch"])
        self.sampler = RetainSampler.from_state(protocol.train_rows, jax.tree.map(np.asarray, state["sampler"]))
        self.base_key = jax.random.fold_in(jax.random.PRNGKey(protocol.seed), REQUEST_KEY_SALT)
        self.context = training_context(protocol, self.removed)
        self.rows: list[dict] = []  # the record rows of the requests this object served
        self.plan: ShapePlan | None = None  # the padding of every request (planned when first needed)

    def compile_requests(self) -> dict:
        """Plans the padded shapes of the remaining requests (`config.request_shapes`) and
        compiles each before the first request (`shapes.compile_stream`); the loop's state is
        unchanged. Returns the planning and compilation seconds and counters (the stream's
        compile cost, apart from the requests' own). Methods that build their own model
        (`start`) compile their requests there and are only planned here."""
        started = time.perf_counter()
        self.params, self.method_state = committed((self.params, self.method_state))
        self.plan = plan_shapes(self, self.protocol.config.request_shapes)
        planned = {"plan_seconds": time.perf_counter() - started}
        if hasattr(self.method, "start") or not self.plan.requests:
            return {**planned, "policy": self.plan.policy, "n_shapes": len(self.plan.shapes), "aot_seconds": 0.0}
        return {**planned, **compile_stream(self, self.plan)}

    def initial_state(self, params, train: bool = True) -> dict:
        """The state before the first request. Methods that build their own model (`start`,
        e.g. SISA's shards) train it here; `train=False` gives only its structure."""
        if hasattr(self.method, "start"):
            params, method_state = self.method.start(self.model, params, self.protocol.experiment, train=train)
        else:
            method_state = self.method.init(self.model, params)
        sampler = RetainSampler(self.protocol.train_rows, len(self.protocol.stream), self.protocol.seed,
                                retain_pool_factor(self.method))
        return {"params": params, "method_state": method_state, "removed": np.zeros(self.n_rows, bool),
                "next_batch": np.int32(0), "sampler": sampler.state_dict()}

    def state_dict(self) -> dict:
        """The resumable state after the requests served so far (a checkpointable pytree)."""
        return {"params": self.params, "method_state": self.method_state, "removed": self.removed.copy(),
                "next_batch": np.int32(self.next_batch), "sampler": self.sampler.state_dict()}

    def __len__(self) -> int:
        """Requests (batches of `unlearning_batchsize` users) in the whole stream."""
        return len(self.protocol.stream)

    @property
    def done(self) -> bool:
        return self.next_batch >= len(self)

    def prepare(self) -> PreparedRequest:
        """Builds the next request's data (draws its retain rows); changes no model state.

        The retain sampler's cursor moves: a `PreparedRequest` is meant for one `apply`.
        """
        if self.done:
            raise IndexError(f"all {len(self)} requests have been served")
        protocol, b = self.protocol, self.next_batch
        if self.plan is None:  # the padding `compile_requests` plans, without compiling ahead (untimed)
            self.plan = plan_shapes(self, protocol.config.request_shapes)
        started = time.perf_counter()
        batch = protocol.stream.batch(b)
        removed_after = self.removed.copy()
        removed_after[removal_rows(protocol, batch)] = True
        key = jax.random.fold_in(self.base_key, b)
        forget_count = len(protocol.train_rows.gather(batch.users))
        if forget_count == 0:
            return PreparedRequest(batch, None, key, np.zeros(0, np.int64), removed_after, 0.0)
        need = min(self.method.retain_budget(forget_count), self.retain_cap)
        retain_rows = self.sampler.sample(need, protocol.stream.users_through(b)) if need > 0 else np.zeros(0, np.int64)
        request = request_data(protocol, batch, self.removed, removed_after, retain_rows, key, self.time_limit, self.context,
                               self.plan.sizes, self.plan.width)
        jax.block_until_ready((request.forget, request.clean, request.retain))
        return PreparedRequest(batch, request, key, retain_rows, removed_after, time.perf_counter() - started)

    def apply(self, prepared: PreparedRequest) -> dict:
        """Runs the method on a prepared request, waits for the device, advances the loop;
        returns the request's record row (`seconds` = preparation + method)."""
        batch, request = prepared.batch, prepared.request
        self.next_batch = batch.index + 1
        if request is None:
            self.removed = prepared.removed_after
            return {"batch": batch.index, "users": batch.users.tolist(), "skipped": SKIPPED}
        started = time.perf_counter()
        self.params, self.method_state, diagnostics = self.method.unlearn(
            self.model, self.params, self.method_state, request, prepared.key)
        jax.block_until_ready((self.params, self.method_state))
        method_seconds = time.perf_counter() - started
        self.removed, self.context = prepared.removed_after, request.context_after
        row = {
            "batch": batch.index,
            "users": batch.users.tolist(),
            "n_forget_rows": request.n_forget_rows,
            "n_removed": request.n_removed,
            "n_retain_rows": int(len(prepared.retain_rows)),
            "seconds": prepared.prepare_seconds + method_seconds,
            "method_seconds": method_seconds,
            **{k: _number(v) for k, v in diagnostics.items()},
        }
        if self.time_limit is not None and method_seconds > self.time_limit:
            row["timeout"] = True
        return row

    def step(self) -> dict:
        """Serves the next request (`prepare` then `apply`); returns its record row (also
        appended to `rows`), with `compile_seconds` / `n_compiles`: the compilation inside it."""
        with compile_counter() as compiled:
            row = self.apply(self.prepare())
        if "seconds" in row:
            row.update(compile_seconds=compiled["compile_seconds"], n_compiles=compiled["n_compiles"])
        self.rows.append(row)
        return row

    def take(self, n: int | None = None) -> Iterator[dict]:
        """Serves the next `n` requests (all that remain when None), yielding each record row."""
        stop = len(self) if n is None else min(len(self), self.next_batch + n)
        while self.next_batch < stop:
            yield self.step()

    def __iter__(self) -> Iterator[dict]:
        return self.take()


def _number(value):
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()


def run_requests(protocol: UnlearningRun, params, out_dir: Path, quiet: bool = False) -> dict:
    """The `unlearn` job's loop: `RequestLoop` over the whole stream with checkpoints.

    The resumable state is saved after every request under `out_dir/state`, the parameters
    and removal mask at each quarter point under `out_dir/quarters` (step k = 0..3); a folder
    holding saved state resumes after its last request. Returns the per-request record.
    """
    resume = Checkpointer(out_dir / STATE_DIR, max_to_keep=1)
    quarters = Checkpointer(out_dir / QUARTERS_DIR, max_to_keep=None)
    loop = RequestLoop(protocol, params, fresh_start=resume.latest_step() is None)
    record: dict[str, Any] = {"requests": [], "quarters": []}
    if resume.latest_step() is not None:
        state, record = resume.restore(resume.latest_step(), loop.state_dict())
        loop = RequestLoop(protocol, None, loop.method, state=state)
    if not loop.done:
        record.setdefault("compile", []).append({"from_batch": loop.next_batch, **loop.compile_requests()})
    checkpoint_batches = protocol.stream.checkpoint_batches
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    for row in loop:
        b = row["batch"]
        if row.get("skipped") == SKIPPED:
            record["requests"].append(row)
            continue
        if b in checkpoint_batches:
            k = checkpoint_batches.index(b)
            saving = time.perf_counter()
            quarters.save(k, {"params": loop.params, "removed": loop.removed}, {"batch": b, "checkpoint_idx": k})
            row["checkpoint_idx"] = k
            row["checkpoint_seconds"] = time.perf_counter() - saving
            record["quarters"].append(k)
        record["requests"].append(row)
        resume.save(b + 1, loop.state_dict(), record)
        log(f"request {b + 1}/{len(loop)}: {row['seconds'] * 1000:.1f} ms")
    resume.close()
    quarters.close()
    return record
