"""A grid's cells as a dependency graph of tasks, each keyed by the content of its settings.

    train (run config) -> retrain k0..k3 (run, scenario) -> reference (run, scenario)
                                                         -> unlearn (run, scenario, method)
                       -> retrain k0..k3, seed s (the grid's `retrain_seeds`) -> reference

                       -> audit (run, scenario; the grid's `audit` section, models with shadows)

`train` trains the original model; `retrain` k trains it from scratch without the data the
requests through checkpoint k remove; `reference` evaluates the four retrains (the rows every
method is judged against); `unlearn` runs one method over the request stream and evaluates
it next to the original and the retrains. A grid with `retrain_seeds` also trains, per
checkpoint, one retrain with each of those seeds, which the reference evaluates beside the
retrain (rows `retrain@seed<s>`: the noise floor of every gap), in a scenario folder of their own. The leaderboard (`erase_jax.grid.leaderboard`)
aggregates what the tasks wrote.

A task's key is a hash of its spec: the resolved settings it runs with plus the folders of the
tasks it reads, which are keyed the same way. So cells that differ only in the method share one
trained original and one set of retrains, a retrain depends on the protocol settings that
shape the request stream but not on the method, and a grid that overlaps another finds the
shared tasks finished in the store. The trained model's rows come from the `untouched`
method (the no-op; `original`, its old name, is still accepted); a grid includes it to show the baseline.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from erase_jax import config as config_lib
from erase_jax.audit.job import SHADOW_MODELS
from erase_jax.grid.spec import Cell, Grid
from erase_jax.unlearn.protocol.jobs import CHECKPOINTS

KINDS = ("train", "retrain", "reference", "unlearn", "audit")
# protocol settings that change a method's run but neither the request stream nor the retrains
METHOD_ONLY = ("method", "method_options", "max_hours")


@dataclasses.dataclass(frozen=True)
class Needs:
    """What a task asks of the machine that runs it: `cpus` cores, and `accelerator`: whether its
    JAX work runs on a GPU where the executor has one (the Ray executor then asks for a GPU)."""

    cpus: int = 1
    accelerator: bool = True


# every kind trains or evaluates with jitted JAX code, so every kind is happiest on a GPU
NEEDS = {kind: Needs() for kind in KINDS}


@dataclasses.dataclass(frozen=True)
class Task:
    """One idempotent unit of work.

    `spec` is what the worker runs (`erase_jax.grid.worker`): its kind, settings and folders
    relative to the store, nothing grid-specific. `deps` are the ids of the tasks whose results
    it reads. `labels` name the first cell that needs it (for progress, failures, estimates).
    `needs` is what it asks of the machine (where an executor places it).
    """

    id: str
    kind: str
    spec: dict
    deps: tuple[str, ...]
    labels: dict
    needs: Needs = Needs()


@dataclasses.dataclass(frozen=True)
class CellTasks:
    """The tasks behind one cell: where its method's rows and its retrain rows come from."""

    cell: Cell
    train: str
    reference: str
    unlearn: str
    audit: str | None = None  # the membership audit of the cell's run and scenario, when the grid has one


@dataclasses.dataclass(frozen=True)
class Plan:
    """Every task of a grid once, in an order where each task follows its dependencies."""

    grid: Grid
    tasks: dict[str, Task]
    cells: tuple[CellTasks, ...]

    def count(self, kind: str) -> int:
        return sum(task.kind == kind for task in self.tasks.values())


def digest(content: dict) -> str:
    """A short hash of a JSON-able dict, independent of key order."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def scenario_settings(cell: Cell) -> dict:
    """The cell's protocol settings that shape its request stream and retrains."""
    values = config_lib.to_dict(cell.unlearn)
    return {key: value for key, value in values.items() if key not in METHOD_ONLY}


def make_plan(grid: Grid) -> Plan:
    """The grid's tasks, each once, and which tasks serve each cell."""
    tasks: dict[str, Task] = {}

    def add(kind: str, content: dict, deps: tuple[str, ...], labels: dict, folder: str | None = None) -> Task:
        key = digest({"kind": kind, **content})
        task_id = f"{kind}-{key}"
        if task_id not in tasks:
            spec = {"kind": kind, **content, "folder": folder or f"{kind}/{key}"}
            tasks[task_id] = Task(task_id, kind, spec, deps, labels, NEEDS[kind])
        return tasks[task_id]

    # a reference with retrains of other seeds is another scenario folder: a grid without them
    # never sees their rows, and its task keys are those it had before the option existed
    seeds = {"retrain_seeds": list(grid.retrain_seeds)} if grid.retrain_seeds else {}
    cells = []
    for cell in grid.cells:
        labels = {"dataset": cell.dataset, "model": cell.model, "seed": cell.seed}
        train = add("train", {"run": config_lib.to_dict(cell.run)}, (), labels)
        labels = {**labels, "scenario": cell.scenario}
        inputs = {"run_folder": train.spec["folder"], "unlearn": scenario_settings(cell), **seeds}
        scenario_folder = f"scenario/{digest(inputs)}"  # the retrains, where every method of the cell finds them
        retrains = tuple(
            add("retrain", {**inputs, "k": k, **({"seed": seed} if seed is not None else {})}, (train.id,),
                {**labels, "k": k, **({"retrain_seed": seed} if seed is not None else {})}, scenario_folder).id
            for seed in (None, *grid.retrain_seeds) for k in CHECKPOINTS
        )
        reference = add("reference", inputs, retrains, labels, scenario_folder)
        method = {"run_folder": train.spec["folder"], "unlearn": config_lib.to_dict(cell.unlearn), "retrains": scenario_folder}
        unlearn = add("unlearn", method, (reference.id,), {**labels, "method": cell.method})
        audit = None
        if grid.audit is not None and cell.run.model in SHADOW_MODELS:
            audit = add("audit", {"run_folder": train.spec["folder"], "unlearn": scenario_settings(cell), "audit": grid.audit},
                        (train.id,), labels).id
        cells.append(CellTasks(cell, train.id, reference.id, unlearn.id, audit))
    return Plan(grid, tasks, tuple(cells))
