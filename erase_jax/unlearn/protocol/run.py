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

This module holds what is fixed for a run (`UnlearnConfig`, the forget set, `UnlearningRun`)
and one request's data (`request_data`); the loop itself, which the `unlearn` job and the
Python API (`erase_jax.api`) share, is `loop.RequestLoop`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from erase_jax import config as config_lib
from erase_jax.checkpoint import Checkpointer, has_steps
from erase_jax.data.forget_files import read_basket_forget_file, read_forget_file
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
from erase_jax.unlearn.protocol.requests import RequestStream, UserRows

SCENARIOS = ("sensitive", "spam", "random")


@dataclasses.dataclass
class UnlearnConfig:
    """Who forgets what, with which method; defaults are the original's where it has one.

    Every field is checked when the object is built (a ValueError naming the field and its
    valid values); the command line's flags set the same fields (`--scenario`, `--fraction`,
    `--forget-rating-threshold`, `--unlearning-batchsize`, `--option key=value`).

    Fields:
        method: a registered method name (`erase_jax.unlearn.method_names()`), or "retrain"; an
            old name is replaced by today's ("original" -> "untouched", the method that does nothing).
        method_options: the method's options by name (its dataclass fields), e.g. {"damping": 0.01}.
        scenario: "sensitive", "spam" or "random"; the command line's spelling is accepted too:
            "sensitive:Horror" (sets `category`), "random:interactions" (sets `random_unit`).
        category: sensitive: the item category to forget (a category of the data set).
        fraction: sensitive / random: share of all interactions to forget, in (0, 1].
        forget_rating_threshold: sensitive: only interactions rated >= this are forgotten.
        selection_rule: sensitive: "fit" (the CF scripts) or "reach" (the SBR scripts), spec 3.2.2.
        random_unit: random: "users" (whole users) or "interactions".
        forget_file: a forget file in the original's format, instead of drawing the forget set.
        unlearning_batchsize: users per request, >= 1.
        max_hours: total time budget (> 0), split evenly over the requests; None: no budget.
        seed: forget-set and retain-sampling seed; None: the trained run's (the original pairs
            model seed s with forget set s).
        evaluators: what is measured at each checkpoint, in column order (`erase_jax.evaluators`);
            it does not change the run, so a folder can be re-evaluated with others.
        request_shapes: how requests are padded, "stream" (every request to the stream's largest
            buckets: one compiled shape) or "buckets" (each to its own power-of-two buckets);
            either way every shape is compiled before the first request (`protocol.shapes`).

    >>> config = ej.UnlearnConfig(method="scif", scenario="sensitive:Horror", fraction=0.003)
    >>> config.scenario, config.category, config.tag()
    ('sensitive', 'Horror', 'sensitive_Horror_f0.003')
    >>> ej.UnlearnConfig(method="scfi")
    Traceback (most recent call last):
    ValueError: method: unknown unlearning method 'scfi'; available: [...]
    """

    method: str = "untouched"
    method_options: dict = dataclasses.field(default_factory=dict)
    scenario: str = "sensitive"
    category: str | None = None
    fraction: float | None = None
    forget_rating_threshold: float | None = None
    selection_rule: str = "fit"
    random_unit: str = "users"
    forget_file: str | None = None
    unlearning_batchsize: int = 1
    max_hours: float | None = None
    seed: int | None = None
    evaluators: tuple[str, ...] = dataclasses.field(default=DEFAULT_EVALUATORS, metadata={"omit_if_default": True})
    request_shapes: str = dataclasses.field(default="stream", metadata={"omit_if_default": True})

    def __post_init__(self):
        name, _, detail = str(self.scenario).partition(":")
        if detail and name == "sensitive":
            self.scenario, self.category = name, _same("category", self.category, detail)
        elif detail and name == "random":
            self.scenario, self.random_unit = name, detail
        if self.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {SCENARIOS} (or 'sensitive:<category>', "
                             f"'random:<users|interactions>'), got {self.scenario!r}")
        _check_choice("selection_rule", self.selection_rule, ("fit", "reach"))
        _check_choice("random_unit", self.random_unit, ("users", "interactions"))
        _check_choice("request_shapes", self.request_shapes, ("stream", "buckets"))
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction}")
        if isinstance(self.unlearning_batchsize, bool) or self.unlearning_batchsize < 1:
            raise ValueError(f"unlearning_batchsize must be an integer >= 1, got {self.unlearning_batchsize}")
        if self.max_hours is not None and not self.max_hours > 0:
            raise ValueError(f"max_hours must be > 0 (or None), got {self.max_hours}")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"seed must be >= 0 (or None), got {self.seed}")
        if str(self.method).lower() != "retrain":
            try:
                self.method = build_method(self.method, **self.method_options).name  # an old name: today's
            except KeyError as error:
                raise ValueError(f"method: {error.args[0]}") from None
        self.evaluators = check_names(self.evaluators)

    def tag(self) -> str:
        """A folder name for the scenario: what was forgotten, not how."""
        if self.scenario == "spam":
            return "spam"
        what = self.category if self.scenario == "sensitive" else self.random_unit
        size = f"f{self.fraction:g}" if self.fraction is not None else Path(self.forget_file or "file").stem
        return f"{self.scenario}_{what}_{size}"


def _check_choice(field: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {choices}, got {value!r}")


def _same(field: str, given, parsed):
    if given is not None and given != parsed:
        raise ValueError(f"scenario names {field} {parsed!r} but {field}={given!r} was also given")
    return parsed


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
                "data.spam_ratio=0.01 (--set data.spam_ratio=0.01; fake users are injected before the split)"
            )
        return loaded.fraud
    if config.forget_file and Path(config.forget_file).suffix in (".json", ".pkl"):  # next-basket: user ids
        return read_basket_forget_file(config.forget_file, inter, config.scenario, config.category,
                                       config.fraction or 0.0, seed)
    if config.forget_file:
        return read_forget_file(config.forget_file, inter, config.scenario, config.category, config.fraction or 0.0, seed)
    if config.fraction is None:
        raise ValueError(f"the {config.scenario} scenario needs fraction (--fraction: the share of all interactions to forget)")
    if config.scenario == "sensitive" and not config.category:
        raise ValueError("the sensitive scenario needs category (scenario='sensitive:<category>', --scenario sensitive:<category>)")
    draw = getattr(experiment.task, "draw_forget_set", None)
    if draw is not None:  # a task with its own scenario rules (NBR: only users with enough baskets)
        return draw(experiment, config, seed)
    source = loaded.unfiltered if loaded.unfiltered is not None else inter
    if config.scenario == "sensitive":
        if not config.category:
            raise ValueError("the sensitive scenario needs category (scenario='sensitive:<category>', --scenario sensitive:<category>)")
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
    # the last request batch of each checkpoint k; None: the stream's quarter checkpoints
    checkpoints: tuple[int, ...] | None = None

    @property
    def checkpoint_batches(self) -> list[int]:
        """The last request batch of each checkpoint k (the quarters, or the view's `checkpoints`)."""
        return list(self.checkpoints) if self.checkpoints is not None else self.stream.checkpoint_batches

    def after(self, n_batches: int) -> UnlearningRun:
        """This run seen with one checkpoint (k = 0) after its first `n_batches` request batches:
        `data_at(0)`, `removed_through(0)` and the evaluators then describe that point."""
        if not 1 <= n_batches <= len(self.stream):
            raise ValueError(f"n_requests must be in [1, {len(self.stream)}] (the stream's requests), got {n_batches}")
        return dataclasses.replace(self, checkpoints=(n_batches - 1,), _built={})

    @property
    def train_rows(self) -> UserRows:
        """Each user's training rows (CF: interactions; SBR: prefix rows); F and R come from these."""
        return self.rows.user_rows

    def once(self, key, build):
        """`build()`, computed once per key for this protocol (the data and evaluation view of a
        checkpoint, a loaded retrain): a run evaluates the trained model, the method and the retrain
        at each checkpoint on the same data, which is deterministic from the seed."""
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def removed_through(self, k: int) -> np.ndarray:
        """Bool over the interactions: those removed by the requests through checkpoint k (k = -1: none)."""
        if k == ORIGINAL_FULL_DATA:
            return np.zeros(len(self.experiment.data.interactions), bool)
        return self.stream.removal_mask_through(self.experiment.data.interactions, self.checkpoint_batches[k])

    def unlearned_users(self, k: int) -> np.ndarray:
        """The users of the requests through checkpoint k (k = -1: all users of the forget set)."""
        if k == ORIGINAL_FULL_DATA:
            return self.forget_set.users
        return self.stream.users_through(self.checkpoint_batches[k])

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


def request_data(protocol: UnlearningRun, batch, removed_before, removed_after, retain_rows, key, time_limit, context_before,
                 sizes: tuple[int, int, int] | None = None, width: int | None = None):
    """The forget / clean / retain batches and contexts of one request (spec 5.4 step 6-8);
    `sizes`: the (forget, retain, joined) rows to pad to and `width` the history width
    (`shapes.ShapePlan`), None: the task's buckets."""
    with_clean = protocol.config.scenario != "spam"
    padding = {} if sizes is None else {"sizes": sizes[:2]}
    if width is not None:
        padding["width"] = width
    forget, clean, retain = protocol.rows.request_batches(batch.users, removed_after, retain_rows, key, with_clean, **padding)
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
        joined_rows=None if sizes is None else sizes[2],
    )


STATE_DIR = "state"
QUARTERS_DIR = "quarters"
CONFIG_FILE = "unlearn_config.yaml"


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
            raise FileExistsError(f"{out_dir} holds an unlearning run with other settings ({changes}); choose another out folder (--out)")
        return
    write_atomically(path, yaml.safe_dump(wanted, sort_keys=False))
