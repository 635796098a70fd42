"""The train job: configuration -> data -> model -> training -> evaluation -> result files.

A run folder holds `config.yaml` (fully resolved), `checkpoints/` (Orbax, one step per
epoch) and, when finished, `result.json`, written last: only a folder with it holds a model
(`load_run` refuses others). Starting the same job on an existing folder resumes from the
last checkpoint; a folder holding progress of a different configuration is refused rather
than mixed. What jobs derive from the model (`unlearn/`) records its fingerprint
(`erase_jax.fingerprint`) and is discarded with the model by `overwrite`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml

from erase_jax import config as config_lib
from erase_jax.checkpoint import Checkpointer, has_steps
from erase_jax.data.loading import LoadedData
from erase_jax.folder_lock import FolderLock
from erase_jax.models import build_model
from erase_jax.tasks import Task, task_of
from erase_jax.train import FitResult, best_params, fit

CONFIG_FILE = "config.yaml"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoints"
DERIVED = ("unlearn",)  # what jobs derive from the trained model inside its run folder (erase_jax.fingerprint)


@dataclasses.dataclass
class Experiment:
    """Everything built from a configuration, before any training.

    `task` is the model's task plug-in (`erase_jax.tasks`), `examples` the split's training,
    validation and test sets in that task's format.
    """

    config: config_lib.RunConfig
    model: object
    data: LoadedData
    examples: object
    context: object
    data_summary: dict
    task: Task
    prepare_seconds: float = 0.0  # what `model.prepare` took: all the training a non-learned model has


def build_experiment(config: config_lib.RunConfig, data: LoadedData | None = None, capacity: int | None = None) -> Experiment:
    """Data, task examples, model and its context for a configuration.

    `data` replaces the configured data (e.g. the data without removed interactions, for a
    retrain); `capacity` fixes the size of graph contexts so that reduced data keeps shapes.
    """
    model = build_model(config.model, **config.model_params)
    task = task_of(model)
    examples, loaded, summary = task.build(config, data)
    started = time.perf_counter()
    context = model.prepare(examples.train, capacity)
    return Experiment(config, model, loaded, examples, context, summary, task, time.perf_counter() - started)


def evaluate_params(experiment: Experiment, params, split: str) -> dict[str, float]:
    eval_set = getattr(experiment.examples, split)
    return experiment.task.evaluate(experiment.model, params, experiment.context, eval_set, experiment.config.eval)


def check_run_dir(out_dir: Path, config: config_lib.RunConfig, overwrite: bool) -> None:
    """Refuses a folder holding training progress (a checkpoint or result.json) of another
    configuration, unless `overwrite`; changes nothing."""
    config_path = out_dir / CONFIG_FILE
    if overwrite or not config_path.exists() or not has_progress(out_dir):
        return
    existing = yaml.safe_load(config_path.read_text())
    if existing != config_lib.to_dict(config):
        changed = sorted(_diff_keys(existing, config_lib.to_dict(config)))
        raise FileExistsError(
            f"{out_dir} holds a run with a different configuration (differs in {changed}); "
            "choose another output folder or pass overwrite=True (--overwrite)"
        )


def has_progress(out_dir: Path) -> bool:
    """Whether a run folder holds anything trained: result.json or a committed checkpoint step."""
    return (out_dir / RESULT_FILE).exists() or has_steps(out_dir / CHECKPOINT_DIR)


def reset_run_dir(out_dir: Path, config: config_lib.RunConfig, overwrite: bool) -> None:
    """Writes the configuration; with `overwrite`, first discards the old run's checkpoints,
    result and everything derived from it (`DERIVED`: the default scenario folders)."""
    if overwrite:
        for name in (RESULT_FILE, CHECKPOINT_DIR, *DERIVED):  # the result first: no longer a run
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    write_atomically(out_dir / CONFIG_FILE, yaml.safe_dump(config_lib.to_dict(config), sort_keys=False))


def _diff_keys(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in set(a) | set(b):
            yield from _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip(".")


def write_atomically(path: Path, text: str) -> None:
    """Writes via a temporary file and a rename, so a killed process never leaves half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def train_run(
    config: config_lib.RunConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    quiet: bool = False,
    data: LoadedData | None = None,
) -> dict:
    """Trains (or resumes) one run and writes its result files; returns the result dict.

    `data` overrides the configured data set (retraining without removed interactions). The job
    holds the folder's lock (`erase_jax.folder_lock`): a second job on it is refused, and so is
    training while unlearn / retrain jobs read the run. `overwrite` discards the old run and
    everything derived from it in the folder (`DERIVED`), once the new experiment is built.
    `result.json` is written last, atomically: a folder without it is no finished run, and a
    job that fails before saving anything removes the folder it created.
    """
    out_dir = Path(out_dir)
    created = not out_dir.exists()
    with FolderLock(out_dir, "train"):
        try:
            check_run_dir(out_dir, config, overwrite)
            return _train(config, out_dir, overwrite, quiet, data)
        except BaseException:
            if created and not has_progress(out_dir):
                shutil.rmtree(out_dir, ignore_errors=True)
            raise


def _train(config: config_lib.RunConfig, out_dir: Path, overwrite: bool, quiet: bool, data: LoadedData | None) -> dict:
    experiment = build_experiment(config, data)
    reset_run_dir(out_dir, config, overwrite)
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    s = experiment.data_summary
    log(f"data {s['source']}: {s['n_users']} users, {s['n_items']} items, "
        f"train/valid/test {s['n_train']}/{s['n_valid']}/{s['n_test']}")

    batcher = experiment.task.batcher(config, experiment.examples.train)
    checkpointer = Checkpointer(out_dir / CHECKPOINT_DIR)
    with _progress(config.train.epochs, quiet) as report:
        result = fit(
            experiment.model,
            experiment.context,
            batcher,
            validation(experiment),
            config.train,
            config.seed,
            checkpointer,
            report,
        )
    checkpointer.close()
    record = finish_result(experiment, result)
    write_atomically(out_dir / RESULT_FILE, json.dumps(record, indent=2))
    return record


def validation(experiment: Experiment):
    """The validation callback for `fit`, or None when the split has no validation rows (e.g.
    `valid_ratio: 0` on given train/test files): then training runs the configured epochs."""
    if len(experiment.data.split.valid) == 0:
        return None
    return lambda params: evaluate_params(experiment, params, "valid")


def evaluate_valid(experiment: Experiment, params) -> dict:
    return evaluate_params(experiment, params, "valid") if len(experiment.data.split.valid) else {}


def finish_result(experiment: Experiment, result: FitResult) -> dict:
    params = best_params(result)
    started = time.perf_counter()
    test = evaluate_params(experiment, params, "test")
    eval_seconds = time.perf_counter() - started
    valid = evaluate_valid(experiment, params)
    record = result.record
    return {
        "model": experiment.config.model,
        "dataset": experiment.config.data.dataset,
        "seed": experiment.config.seed,
        "valid": valid,
        "test": test,
        "epochs": len(record["epoch_loss"]),
        "best_epoch": int(result.state.best_epoch),
        "stopped": record["stopped"],
        "timing": {
            "train_seconds_per_epoch": record["epoch_seconds"],
            "compile_seconds": record["compile_seconds"],
            "prepare_seconds": experiment.prepare_seconds,
            "eval_seconds": eval_seconds,
        },
        "epoch_loss": record["epoch_loss"],
        "valid_history": record["valid"],
        "data": experiment.data_summary,
        "config": config_lib.to_dict(experiment.config),
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def read_run_config(run_dir: str | Path) -> config_lib.RunConfig:
    config_path = Path(run_dir) / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder: {CONFIG_FILE} is missing")
    return config_lib.resolve(config_lib.from_dict(config_lib.RunConfig, yaml.safe_load(config_path.read_text())))


def restore_best_params(run_dir: str | Path, experiment: Experiment):
    """The best validated parameters saved in a run folder, for an experiment built alike."""
    from erase_jax.train import init_state, make_optimizer

    config = experiment.config
    steps_per_epoch = max(1, -(-len(experiment.examples.train) // config.train.batch_size))
    paths = tuple(getattr(experiment.model, "row_sparse_params", ()) or ())
    like = init_state(experiment.model, experiment.context, make_optimizer(config.train, steps_per_epoch, paths), config.seed)
    if not experiment.model.trainable:
        return like.params
    checkpointer = Checkpointer(Path(run_dir) / CHECKPOINT_DIR)
    step = checkpointer.latest_step()
    if step is None:
        raise FileNotFoundError(f"{run_dir}: no training checkpoint saved yet")
    state, record = checkpointer.restore(step, like)
    checkpointer.close()
    return best_params(FitResult(state, record))


def require_finished(run_dir: str | Path) -> Path:
    """The run's result.json; FileNotFoundError when the run has not finished training."""
    path = Path(run_dir) / RESULT_FILE
    if not Path(run_dir).is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (no such folder)")
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} has not finished training (no {RESULT_FILE}): run the same `erase-jax train` "
            "command to finish it (it resumes)"
        )
    return path


def load_run(run_dir: str | Path):
    """Rebuilds a finished run: its experiment and its trained (best) parameters."""
    require_finished(run_dir)
    experiment = build_experiment(read_run_config(run_dir))
    return experiment, restore_best_params(run_dir, experiment)


def evaluate_run(run_dir: str | Path) -> dict:
    experiment, params = load_run(run_dir)
    started = time.perf_counter()
    test = evaluate_params(experiment, params, "test")
    seconds = time.perf_counter() - started
    return {"valid": evaluate_valid(experiment, params), "test": test, "eval_seconds": seconds}


class _progress:
    """A tqdm bar over epochs, shown only on a terminal and when not quiet."""

    def __init__(self, total: int, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self.total = total

    def __enter__(self):
        if not self.enabled:
            return None
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="epoch", file=sys.stderr)

        def report(info):
            self.bar.update(info["epoch"] - self.bar.n)
            self.bar.set_postfix(loss=f"{info['loss']:.4f}", best=f"{info['best']:.4f}")

        return report

    def __exit__(self, *exc):
        if self.enabled:
            self.bar.close()
        return False
