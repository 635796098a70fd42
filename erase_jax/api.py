"""The Python API: train, load, forget sets, the request loop, evaluation, the protocol.

The command line is a thin layer over these functions (`erase_jax.cli`), and both drive the
same request loop (`erase_jax.unlearn.protocol.loop.RequestLoop`), so a script's numbers for
the first n requests are the `unlearn` job's numbers for those requests.

    import erase_jax as ej
    run = ej.train_model(["model=BPR", "dataset=synthetic"])                  # in memory
    after = ej.unlearn_requests(run, "sensitive:Horror", "scif", n_requests=5, fraction=0.01)
    ej.evaluate(after)                                                  # utility, exposure, ...

Counting: a request is one step of the loop, `unlearning_batchsize` users (one by default), as
the `batch` column of `requests.csv` counts them; `n_requests` and `request` count these steps.

Names: a scenario is spelled as on the command line ("sensitive:Horror", "spam", "random",
"random:interactions") or as an `UnlearnConfig`; its other fields (`fraction`,
`forget_rating_threshold`, `seed`, ...) are keyword arguments with the `UnlearnConfig` names,
and a method's options are `options={...}` (the command line's `--option key=value`).
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from erase_jax import config as config_lib
from erase_jax.data.scenarios import ForgetSet
from erase_jax.evaluators.base import ORIGINAL_FULL_DATA, ScoredModel
from erase_jax.run import Experiment, build_experiment, evaluate_params, evaluate_valid, finish_result, load_run, train_run
from erase_jax.unlearn.protocol.loop import RequestLoop
from erase_jax.unlearn.protocol.run import UnlearnConfig, UnlearningRun, build_protocol, training_context

Scenario = UnlearnConfig | str


def _fields_block(cls) -> str:
    """The `Fields:` list of a config dataclass's docstring (what `help(cls)` shows)."""
    text = inspect.getdoc(cls)
    return text[text.index("Fields:") + len("Fields:"):].split("\n\n")[0].strip("\n")


def takes_scenario_settings(function):
    """Appends the `UnlearnConfig` fields to the docstring of a function that takes them as
    keyword arguments, so that `help(ej.<function>)` lists them."""
    function.__doc__ = (inspect.cleandoc(function.__doc__) + "\n\nKeyword arguments (`**settings`): the scenario's "
                        "`UnlearnConfig` fields (`method` and `method_options` are the parameters `method` and `options` "
                        "where the function has them), checked when built:\n" + _fields_block(UnlearnConfig) + "\n")
    return function


def _takes_run_settings(function):
    """Appends the run configuration's keys to `train_model`'s docstring."""
    from erase_jax.data.loading import DataConfig
    from erase_jax.train import TrainConfig

    sections = "\n".join(textwrap.fill(f"{name}.*: {', '.join(f.name for f in dataclasses.fields(cls))} (`{cls.__name__}`)",
                                        94, initial_indent="    ", subsequent_indent="        ")
                          for name, cls in (("train", TrainConfig), ("data", DataConfig), ("eval", config_lib.EvalConfig)))
    function.__doc__ = (inspect.cleandoc(function.__doc__) + "\n\nSettings (`key=value`): the `RunConfig` fields and "
                        "its sections' (`help()` on each class says more), checked when built:\n"
                        + _fields_block(config_lib.RunConfig) + "\n" + sections + "\n")
    return function


@dataclasses.dataclass
class Run:
    """A trained model: its experiment (configuration, data, split, model, context), its best
    parameters, the result record (`result.json`'s contents) and its folder (None in memory)."""

    experiment: Experiment
    params: Any
    result: dict | None = None
    folder: Path | None = None

    @property
    def config(self) -> config_lib.RunConfig:
        return self.experiment.config


@_takes_run_settings
def train_model(settings: Sequence[str] | config_lib.RunConfig = (), *, config: str | Path | None = None,
          out: str | Path | None = None, overwrite: bool = False, quiet: bool = True) -> Run:
    """Trains a model; returns the `Run`.

    `settings` are `key=value` strings with the dotted keys of `erase-jax train --set` (applied
    over the YAML file `config`, if given), or a `RunConfig`. With `out` the run is a folder
    like `erase-jax train --out` writes (it resumes, and `overwrite` discards an old run);
    without it, training happens in memory and nothing is written.

    >>> run = ej.train_model(["model=BPR", "dataset=synthetic", SMALL, "train.epochs=2"])
    >>> run.config.model, run.result["epochs"], run.folder is None
    ('BPR', 2, True)
    """
    if isinstance(settings, config_lib.RunConfig):
        if config is not None:
            raise ValueError("pass either a RunConfig as settings or a config file, not both")
        run_config = settings
    else:
        run_config = config_lib.load_config(config, list(settings))
    if out is not None:
        result = train_run(run_config, out, overwrite=overwrite, quiet=quiet)
        return dataclasses.replace(load(out), result=result)
    return _fit_in_memory(run_config)


def _fit_in_memory(run_config: config_lib.RunConfig, data=None) -> Run:
    from erase_jax.run import validation
    from erase_jax.train import best_params, fit

    experiment = build_experiment(run_config, data)
    batcher = experiment.task.batcher(run_config, experiment.examples.train)
    fitted = fit(experiment.model, experiment.context, batcher, validation(experiment), run_config.train,
                 run_config.seed)
    return Run(experiment, best_params(fitted), finish_result(experiment, fitted))


def load(folder: str | Path) -> Run:
    """The finished run in `folder` (written by `train_model(out=...)` or `erase-jax train`).

    >>> ej.load(folder).config.data.dataset
    'synthetic'
    """
    import json

    experiment, params = load_run(folder)
    return Run(experiment, params, json.loads((Path(folder) / "result.json").read_text()), Path(folder))


@takes_scenario_settings
def scenario_config(scenario: Scenario, method: str | None = None, options: dict | None = None,
                    **settings) -> UnlearnConfig:
    """An `UnlearnConfig` from a scenario spelling and its fields; `method` / `options` replace
    the method and its options. Every field is validated (`UnlearnConfig`).

    >>> ej.scenario_config("sensitive:Horror", "scif", fraction=0.01).category
    'Horror'
    """
    unknown = sorted(set(settings) - {field.name for field in dataclasses.fields(UnlearnConfig)})
    if unknown:
        raise ValueError(f"unknown scenario settings {unknown}; the UnlearnConfig fields are "
                         f"{[field.name for field in dataclasses.fields(UnlearnConfig)]}")
    base = scenario if isinstance(scenario, UnlearnConfig) else UnlearnConfig(scenario=scenario)
    changes = dict(settings)
    if method is not None:
        changes["method"] = method
    if options is not None:
        changes["method_options"] = dict(options)
    return dataclasses.replace(base, **changes) if changes else base


@takes_scenario_settings
def forget_set(run: Run, scenario: Scenario, **settings) -> ForgetSet:
    """The scenario's forget set on the run's data: its requests, one user each, in the order
    the protocol serves them (`ForgetSet.users`, `.items`), drawn as `erase-jax unlearn` draws it.

    >>> fs = ej.forget_set(run, "sensitive:Horror", fraction=0.01)
    >>> len(fs) > 0, fs.category
    (True, 'Horror')
    """
    return protocol_of(run, scenario_config(scenario, **settings)).forget_set


def protocol_of(run: Run, scenario: UnlearnConfig) -> UnlearningRun:
    """The protocol (forget set, request stream, seed, task rows) of a scenario on a run."""
    return build_protocol(run.experiment, scenario)


@takes_scenario_settings
def requests(run: Run, scenario: Scenario, method: str = "untouched", options: dict | None = None,
             **settings) -> RequestLoop:
    """The scenario's request loop for `method`, before its first request: the loop the
    `unlearn` job runs. `loop.step()` serves one request, `loop.take(n)` the next n; the model
    after them is `loop.params` (`evaluate(loop)` measures it).

    >>> loop = ej.requests(run, "sensitive:Horror", "scif", fraction=0.01)
    >>> row = loop.step()
    >>> row["batch"], loop.next_batch, row["n_forget_rows"] > 0
    (0, 1, True)
    """
    return RequestLoop(protocol_of(run, scenario_config(scenario, method, options, **settings)), run.params)


@takes_scenario_settings
def unlearn_requests(run: Run, scenario: Scenario, method: str, n_requests: int | None = None,
            options: dict | None = None, **settings) -> RequestLoop:
    """Applies `method` to the scenario's first `n_requests` requests (all when None), in
    memory; returns the loop after them (`.params`, `.removed`, `.rows`: one record row per
    request, as `requests.csv`).

    >>> after = ej.unlearn_requests(run, "sensitive:Horror", "scif", n_requests=2, fraction=0.01)
    >>> after.next_batch, len(after.rows)
    (2, 2)
    """
    loop = requests(run, scenario, method, options, **settings)
    for _ in loop.take(n_requests):
        pass
    return loop


def retrain(run: Run, after: RequestLoop) -> Run:
    """The model trained from scratch, in memory, with the run's configuration and seed, on the
    data without the rows removed by the requests `after` has served (the protocol's retrain).

    >>> reference = ej.retrain(run, ej.unlearn_requests(run, "sensitive:Horror", "untouched", 2, fraction=0.01))
    >>> reference.result["epochs"]
    2
    """
    view = _view(after)
    return _fit_in_memory(run.config, view.data_at(0))


def _view(after: RequestLoop) -> UnlearningRun:
    if after.next_batch == 0:
        raise ValueError("no request has been served yet: evaluate the run itself")
    return after.protocol.after(after.next_batch)


def evaluate(target: Run | RequestLoop, params=None, reference: Run | None = None,
             evaluators: Sequence[str] | None = None) -> dict:
    """Measures a model.

    A `Run`: its test (and validation) metrics, as `erase-jax evaluate` prints them. A loop
    (`unlearn`, `requests`): the protocol's evaluators (`UnlearnConfig.evaluators`: utility,
    exposure, forgotten-pair ranks, agreement with `reference`, a `retrain` of the same
    requests) on the split without the rows removed so far, for the loop's model, or for
    `params` of the base model instead (the trained parameters give the `unlearn` job's
    `trained` row); before the first request, the trained model on all data (checkpoint -1).

    >>> ej.evaluate(run)["test"]["recall@20"] > 0
    True
    >>> after = ej.unlearn_requests(run, "sensitive:Horror", "scif", n_requests=2, fraction=0.01)
    >>> sorted(key for key in ej.evaluate(after) if key.endswith("recall@20"))
    ['test_recall@20']
    """
    if isinstance(target, Run):
        experiment = target.experiment
        chosen = target.params if params is None else params
        return {"valid": evaluate_valid(experiment, chosen), "test": evaluate_params(experiment, chosen, "test")}
    from erase_jax.unlearn.protocol.results import evaluate_model

    loop = target
    view, k = (loop.protocol, ORIGINAL_FULL_DATA) if loop.next_batch == 0 else (_view(loop), 0)
    if evaluators is not None:
        view = dataclasses.replace(view, config=dataclasses.replace(view.config, evaluators=tuple(evaluators)))
    experiment = view.experiment
    if params is not None:
        evaluated = ScoredModel(experiment.model, params, experiment.context)
    elif hasattr(loop.method, "scorer"):
        evaluated = ScoredModel(*loop.method.scorer(experiment.model, loop.params, experiment))
    else:
        context = training_context(view, loop.removed) if getattr(loop.method, "updates_context", True) \
            else experiment.context
        evaluated = ScoredModel(experiment.model, loop.params, context)
    ref = None if reference is None else ScoredModel(reference.experiment.model, reference.params,
                                                     reference.experiment.context)
    return evaluate_model(view, k, evaluated, ref)


@takes_scenario_settings
def protocol(folder: str | Path, scenario: Scenario, method: str, options: dict | None = None,
             out: str | Path | None = None, with_retrains: bool = True, quiet: bool = True,
             **settings) -> list[dict]:
    """The full protocol on a trained run folder, as `erase-jax retrain` then `erase-jax
    unlearn`: every request, the four quarter checkpoints, the matched retrains, result files
    under the scenario folder (`out`, default `<folder>/unlearn/<scenario>`); returns the
    method's result rows (the trained model's, labelled `trained`, then the method's at k = 0..3).

    >>> rows = ej.protocol(folder, "sensitive:Horror", "untouched", fraction=0.01, with_retrains=False)
    >>> [row["checkpoint_idx"] for row in rows if row["eval_type"] == "unlearning"]
    [0, 1, 2, 3]
    """
    from erase_jax.unlearn.protocol.jobs import CHECKPOINTS, retrain_all
    from erase_jax.unlearn.protocol.jobs import unlearn as unlearn_job

    config = scenario_config(scenario, method, options, **settings)
    target = None if out is None else str(out)
    if with_retrains:
        retrain_all(folder, dataclasses.replace(config, method="retrain"), CHECKPOINTS, target, quiet=quiet)
    return unlearn_job(folder, config, target, quiet=quiet)
