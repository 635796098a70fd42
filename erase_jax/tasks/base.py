"""The task protocol: what a task family (CF, SBR, ...) supplies, and the one lookup by name.

A task plug-in is one file in `erase_jax/tasks/`, a class registered with `@register` whose
`name` is what its models declare as `task` (`Recommender.task`). It owns everything that
differs between families, so the trainer, the protocol and the methods never branch on a
family:

    examples, loaded, summary = task.build(config, data)   # the split's train/valid/test sets
    batcher = task.batcher(config, examples.train)          # one jitted epoch of batches
    metrics = task.evaluate(model, params, context, eval_set, eval_config)   # full ranking
    rows    = task.request_rows(experiment)                 # forget/clean/retain batches per request
    evaluation = rows.evaluation(data)                      # test set and user queries of a data version
    task.positive_items(batch), task.query_of(batch)        # a training batch's row fields

`config_section` names the `RunConfig` field the task owns (SBR: `sequence`), which
`check_config` fills with defaults or rejects for the other tasks.

`get_task(name)` is the only place in the package that compares task names (a test checks it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

import jax

from erase_jax.registry import Registry

Batch = dict[str, jax.Array]

TASKS: Registry = Registry("task", "erase_jax.tasks")
register = TASKS.register


class Task(Protocol):
    name: ClassVar[str]
    config_section: ClassVar[str | None]  # the RunConfig field this task owns, if any

    def check_config(self, config) -> Any: ...

    def build(self, config, data=None) -> tuple[Any, Any, dict]: ...

    def batcher(self, config, train) -> Any: ...

    def evaluate(self, model, params, context, eval_set, eval_config, per_row: bool = False) -> dict: ...

    def request_rows(self, experiment) -> Any: ...

    def positive_items(self, batch: Batch) -> jax.Array: ...

    def query_of(self, batch: Batch) -> Batch: ...


@dataclasses.dataclass
class Evaluation:
    """Scoring on one data version (the data without the removals through a checkpoint)."""

    experiment: Any
    data: Any

    def __post_init__(self):  # the task's view is built here by the subclasses
        pass

    @property
    def n_users(self) -> int:
        return self.data.interactions.n_users


def get_task(name: str) -> Task:
    """The task plug-in called `name` (case-insensitive); an unknown name raises KeyError."""
    return TASKS.get(name)()


def task_of(model) -> Task:
    """The task plug-in of a model (its `task` class attribute); a model without one raises."""
    name = getattr(model, "task", None)
    if name is None:
        raise TypeError(f"{type(model).__name__} declares no task (class attribute `task`)")
    return get_task(name)


def task_names() -> list[str]:
    return TASKS.names()
