"""The sequential unlearning protocol: requests one by one, quarter checkpoints, resume.

    trained run -> forget set (scenario) -> request stream -> for each request:
        forget / clean / retain rows -> method.unlearn -> removal mask -> (quarter checkpoint)

Follows the original's request loop (unlearning-algorithms spec 5.1-5.5): requests in
ascending user-token order, `unlearning_batchsize` users per request, retain users sampled
from a shuffled pool skipping every user unlearned so far, method-specific retain budgets
capped at 10 % of all interactions, checkpoints after requests [N//4, N//2, 3N//4, N-1]. The
forget data of a request are all training rows of its users; the model context (LightGCN's
graph) is rebuilt without the removed interactions after every request. What a "training row"
is, and how batches are built, is the task's (`erase_jax.unlearn.tasks`: CF interactions with
sampled negatives, SBR prefix rows with counterfactual clean sequences).

Deliberate differences from the original: the resumable state (parameters, method state,
removal mask, retain-pool cursor) is checkpointed after every request, so a killed run
continues after its last completed request and ends bit-identical to an uninterrupted one;
the per-request time is measured around data preparation and the method only (device-
synchronised), with checkpoint writing reported separately.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import yaml

from erase_jax import config as config_lib
from erase_jax.checkpoint import Checkpointer, has_steps
from erase_jax.data.forget_files import read_forget_file
from erase_jax.data.scenarios import (
    ForgetSet,
    forget_set_from_pairs,
    random_forget_set,
    sensitive_forget_set,
)
from erase_jax.evaluators.base import DEFAULT_EVALUATORS, ORIGINAL_FULL_DATA, check_names
from erase_jax.fingerprint import changed_keys
from erase_jax.run import Experiment, write_atomically
from erase_jax.unlearn.methods.base import RequestData, build_method
from erase_jax.unlearn.protocol.requests import (
    RETAIN_CAP_SHARE,
    RequestStream,
    RetainSampler,
    UserRows,
    retain_pool_factor,
)

SCENARIOS = ("sensitive", "spam", "random")


@dataclasses.dataclass
class UnlearnConfig:
    """Who forgets what, with which method; defaults are the original's where it has one."""

    method: str = "original"
    method_options: dict = dataclasses.field(default_factory=dict)
    scenario: str = "sensitive"  # sensitive | spam | random
    category: str | None = None  # sensitive scenario: an item category of the data set
    fraction: float | None = None  # sensitive / random: share of all interactions to forget
    forget_rating_threshold: float | None = None  # sensitive: only rows rated >= this are forgotten
    selection_rule: str = "fit"  # sensitive: "fit" (CF scripts) or "reach" (SBR scripts), spec 3.2.2
    random_unit: str = "users"  # random: "users" (whole users) or "interactions"
    forget_file: str | None = None  # a forget file in the original's format, instead of generating
    unlearning_batchsize: int = 1
    max_hours: float | None = None  # total time budget, split evenly over the requests
    seed: int | None = None  # None: the trained run's seed (the original pairs model s with forget set s)
    # what is measured at each checkpoint, in column order (`erase_jax.evaluators`); it does not
    # change the run, so a folder can be re-evaluated with others (`--eval-only`)
    evaluators: tuple[str, ...] = dataclasses.field(default=DEFAULT_EVALUATORS, metadata={"omit_if_default": True})

    def __post_init__(self):
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.unlearning_batchsize < 1:
            raise ValueError("unlearning_batchsize must be >= 1")
        self.evaluators = check_names(self.evaluators)

    def tag(self) -> str:
        """A folder name for the scenario: what was forgotten, not how."""
        if self.scenario == "spam":
            return "spam"
        what = self.category if self.scenario == "sensitive" else self.random_unit
        size = f"f{self.fraction:g}" if self.fraction is not None else Path(self.forget_file or "file").stem
        return f"{self.scenario}_{what}_{size}"


def build_forget_set(experiment: Experiment, config: UnlearnConfig, seed: int) -> ForgetSet:
    """The scenario's requests on the training data's ids.

    Sensitive and random forget sets are drawn from the data as read, before the rating
    threshold and k-core, as the original's scripts draw them from the `.inter` file before
    RecBole filters it (spec 3.2.2: T = int(fraction x all rows)); requests are then mapped
    onto the filtered data, where interactions that filtering dropped are already gone.
    """
    loaded, inter = experiment.data, experiment.data.interactions
    if config.scenario == "spam":
        if loaded.fraud is None:
            raise ValueError(
                "the spam scenario needs a model trained on poisoned data: train with "
                "--set data.spam_ratio=0.01 (fake users are injected before the split)"
            )
        return loaded.fraud
    if config.forget_file:
        return read_forget_file(config.forget_file, inter, config.scenario, config.category, config.fraction or 0.0, seed)
    if config.fraction is None:
        raise ValueError(f"the {config.scenario} scenario needs --fraction (share of all interactions to forget)")
    if config.scenario == "sensitive" and not config.category:
        raise ValueError("the sensitive scenario needs a category (--scenario sensitive:<category>)")
    draw = getattr(experiment.task, "draw_forget_set", None)
    if draw is not None:  # a task with its own scenario rules (NBR: only users with enough baskets)
        return draw(experiment, config, seed)
    source = loaded.unfiltered if loaded.unfiltered is not None else inter
    if config.scenario == "sensitive":
        if not config.category:
            raise ValueError("the sensitive scenario needs a category (--scenario sensitive:<category>)")
        drawn = sensitive_forget_set(
            source, config.category, config.fraction, seed, config.forget_rating_threshold, config.selection_rule
        )
    else:
        drawn = random_forget_set(source, config.fraction, seed, unit=config.random_unit)
    return drawn if source is inter else _onto(drawn, source, inter)


def _onto(forget_set: ForgetSet, source, inter) -> ForgetSet:
    """The same requests on another vocabulary; pairs whose user or item it lacks are dropped."""
    users = np.repeat(forget_set.users, np.diff(forget_set.item_offsets))
    user_ids = {token: i for i, token in enumerate(inter.user_tokens.astype(str))}
    item_ids = {token: i for i, token in enumerate(inter.item_tokens.astype(str))}
    mapped_users = np.array([user_ids.get(t, -1) for t in source.user_tokens[users].astype(str)], np.int64)
    mapped_items = np.array([item_ids.get(t, -1) for t in source.item_tokens[forget_set.items].astype(str)], np.int64)
    known = (mapped_users >= 0) & (mapped_items >= 0)
    if not known.any():
        raise ValueError("no forget interaction survives the data set's filtering (rating threshold / k-core)")
    return forget_set_from_pairs(
        inter, mapped_users[known], mapped_items[known], scenario=forget_set.scenario,
        category=forget_set.category, fraction=forget_set.fraction, seed=forget_set.seed,
        target_items=forget_set.target_items,
    )


@dataclasses.dataclass
class UnlearningRun:
    """Everything fixed for one unlearning run, derived from the trained run and the config."""

    experiment: Experiment
    config: UnlearnConfig
    seed: int
    forget_set: ForgetSet
    stream: RequestStream
    rows: Any  # the task's rows per user and request batches (`tasks.CFRequestRows` / `SBRRequestRows`)
    _built: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def train_rows(self) -> UserRows:
        """Each user's training rows (CF: interactions; SBR: prefix rows); F and R come from these."""
        return self.rows.user_rows

    def once(self, key, build):
        """`build()`, computed once per key for this protocol (the data and evaluation view of a
        checkpoint, a loaded retrain): a run evaluates the original, the method and the retrain
        at each checkpoint on the same data, which is deterministic from the seed."""
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def removed_through(self, k: int) -> np.ndarray:
        """Bool over the interactions: those removed by the requests through checkpoint k (k = -1: none)."""
        if k == ORIGINAL_FULL_DATA:
            return np.zeros(len(self.experiment.data.interactions), bool)
        return self.stream.removal_mask_through(self.experiment.data.interactions, self.stream.checkpoint_batches[k])

    def unlearned_users(self, k: int) -> np.ndarray:
        """The users of the requests through checkpoint k (k = -1: all users of the forget set)."""
        if k == ORIGINAL_FULL_DATA:
            return self.forget_set.users
        return self.stream.users_through(self.stream.checkpoint_batches[k])

    def data_at(self, k: int):
        """The data without the removals through checkpoint k (k = -1: all data), split recomputed."""
        if k == ORIGINAL_FULL_DATA:
            return self.experiment.data
        return self.once(("data", k), lambda: self.experiment.data.without(self.removed_through(k), self.experiment.config.seed))

    def evaluation_at(self, k: int):
        """The task's evaluation view (test split, SBR user queries) of `data_at(k)`, built once."""
        return self.once(("evaluation", k), lambda: self.rows.evaluation(self.data_at(k)))


def build_protocol(experiment: Experiment, config: UnlearnConfig) -> UnlearningRun:
    seed = experiment.config.seed if config.seed is None else config.seed
    forget_set = build_forget_set(experiment, config, seed)
    stream = RequestStream(forget_set, config.unlearning_batchsize)
    return UnlearningRun(experiment, config, seed, forget_set, stream, experiment.task.request_rows(experiment))


def removal_rows(protocol: UnlearningRun, batch) -> np.ndarray:
    inter = protocol.experiment.data.interactions
    return np.concatenate([protocol.forget_set.rows_of_request(inter, r) for r in batch.requests])


def training_context(protocol: UnlearningRun, removed: np.ndarray):
    """The model context from the training data that remains after `removed` (bool over rows)."""
    return protocol.rows.context(removed)


def request_data(protocol: UnlearningRun, batch, removed_before, removed_after, retain_rows, key, time_limit, context_before):
    """The forget / clean / retain batches and contexts of one request (spec 5.4 step 6-8)."""
    with_clean = protocol.config.scenario != "spam"
    forget, clean, retain = protocol.rows.request_batches(batch.users, removed_after, retain_rows, key, with_clean)
    return RequestData(
        index=batch.index,
        users=batch.users,
        forget=forget,
        clean=clean,
        retain=retain,
        n_forget_rows=len(protocol.train_rows.gather(batch.users)),
        n_removed=int(removed_after.sum() - removed_before.sum()),
        context_before=context_before,
        context_after=training_context(protocol, removed_after),
        time_limit_seconds=time_limit,
        removed_rows=np.nonzero(removed_after & ~removed_before)[0],
        experiment=protocol.experiment,
        # the training rows minus everything removed so far (for SBR, where one removed item
        # drops one prefix row, and for forget sets reaching into valid/test rows, within the
        # number of removed rows of the exact count)
        n_train_rows=max(len(protocol.train_rows.rows) - int(removed_after.sum()), 1),
    )


STATE_DIR = "state"
QUARTERS_DIR = "quarters"
CONFIG_FILE = "unlearn_config.yaml"


def run_requests(protocol: UnlearningRun, params, out_dir: Path, quiet: bool = False) -> dict:
    """Applies the method request by request; returns the per-request record.

    The resumable state is saved after every request under `out_dir/state`, the parameters
    and removal mask at each quarter point under `out_dir/quarters` (step k = 0..3).
    """
    config, stream = protocol.config, protocol.stream
    method = build_method(config.method, **config.method_options)
    model = protocol.experiment.model
    n_rows = len(protocol.experiment.data.interactions)
    retain_cap = int(RETAIN_CAP_SHARE * n_rows)
    time_limit = None if config.max_hours is None else config.max_hours * 3600 / len(stream)
    checkpoint_batches = stream.checkpoint_batches

    sampler = RetainSampler(protocol.train_rows, len(stream), protocol.seed, retain_pool_factor(method))
    resume = Checkpointer(out_dir / STATE_DIR, max_to_keep=1)
    quarters = Checkpointer(out_dir / QUARTERS_DIR, max_to_keep=None)
    if hasattr(method, "start"):  # builds its own model from the data; only its structure when resuming
        params, method_state = method.start(model, params, protocol.experiment, train=resume.latest_step() is None)
    else:
        method_state = method.init(model, params)
    state = {
        "params": params,
        "method_state": method_state,
        "removed": np.zeros(n_rows, bool),
        "next_batch": np.int32(0),
        "sampler": sampler.state_dict(),
    }
    record: dict[str, Any] = {"requests": [], "quarters": []}
    if resume.latest_step() is not None:
        state, record = resume.restore(resume.latest_step(), state)
        sampler = RetainSampler.from_state(protocol.train_rows, jax.tree.map(np.asarray, state["sampler"]))
    params, method_state = state["params"], state["method_state"]
    removed = np.asarray(state["removed"]).copy()
    base_key = jax.random.fold_in(jax.random.PRNGKey(protocol.seed), 7)
    context = training_context(protocol, removed)
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))

    for b in range(int(state["next_batch"]), len(stream)):
        batch = stream.batch(b)
        started = time.perf_counter()
        removed_after = removed.copy()
        removed_after[removal_rows(protocol, batch)] = True
        forget_count = len(protocol.train_rows.gather(batch.users))
        if forget_count == 0:
            record["requests"].append({"batch": b, "users": batch.users.tolist(), "skipped": "no training rows"})
            removed = removed_after
            continue
        need = min(method.retain_budget(forget_count), retain_cap)
        retain_rows = sampler.sample(need, stream.users_through(b)) if need > 0 else np.zeros(0, np.int64)
        key = jax.random.fold_in(base_key, b)
        request = request_data(protocol, batch, removed, removed_after, retain_rows, key, time_limit, context)
        prepared = time.perf_counter()
        params, method_state, diagnostics = method.unlearn(model, params, method_state, request, key)
        jax.block_until_ready((params, method_state))
        finished = time.perf_counter()
        removed, context = removed_after, request.context_after

        row = {
            "batch": b,
            "users": batch.users.tolist(),
            "n_forget_rows": forget_count,
            "n_removed": request.n_removed,
            "n_retain_rows": int(len(retain_rows)),
            "seconds": finished - started,
            "method_seconds": finished - prepared,
            **{k: _number(v) for k, v in diagnostics.items()},
        }
        if time_limit is not None and row["method_seconds"] > time_limit:
            row["timeout"] = True
        if b in checkpoint_batches:
            k = checkpoint_batches.index(b)
            saving = time.perf_counter()
            quarters.save(k, {"params": params, "removed": removed}, {"batch": b, "checkpoint_idx": k})
            row["checkpoint_idx"] = k
            row["checkpoint_seconds"] = time.perf_counter() - saving
            record["quarters"].append(k)
        record["requests"].append(row)
        state = {
            "params": params,
            "method_state": method_state,
            "removed": removed,
            "next_batch": np.int32(b + 1),
            "sampler": sampler.state_dict(),
        }
        resume.save(b + 1, state, record)
        log(f"request {b + 1}/{len(stream)}: {row['seconds'] * 1000:.1f} ms")
    resume.close()
    quarters.close()
    return record


def _number(value):
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.tolist()


def load_quarter(out_dir: Path, k: int, params_like, n_rows: int):
    quarters = Checkpointer(out_dir / QUARTERS_DIR, max_to_keep=None)
    if k not in quarters.all_steps():
        raise FileNotFoundError(f"{out_dir}: checkpoint {k} has not been written (run the unlearning first)")
    state, _ = quarters.restore(k, {"params": params_like, "removed": np.zeros(n_rows, bool)})
    quarters.close()
    return state["params"], np.asarray(state["removed"])


def prepare_out_dir(out_dir: Path, run_dir: Path, config: UnlearnConfig) -> None:
    """Creates the folder or checks that it belongs to the same trained run and settings.

    The evaluators are not part of the folder's settings: they change what is measured, not
    the run, so a finished run can be re-evaluated with others. A folder whose run saved no
    request yet (it failed on the first) takes the new settings.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = config_lib.to_dict(dataclasses.replace(config, evaluators=DEFAULT_EVALUATORS))
    wanted = {"run": str(Path(run_dir).resolve()), **settings}
    path = out_dir / CONFIG_FILE
    if path.exists() and has_steps(out_dir / STATE_DIR):
        existing = yaml.safe_load(path.read_text())
        if existing != wanted:
            changes = "; ".join(f"{key}: {old} -> {new}" for key, old, new in changed_keys(existing, wanted))
            raise FileExistsError(f"{out_dir} holds an unlearning run with other settings ({changes}); choose another --out")
        return
    write_atomically(path, yaml.safe_dump(wanted, sort_keys=False))
