"""The unlearn and retrain jobs behind the CLI: protocol -> requests -> evaluation -> files.

Folder layout under a scenario folder (default `<trained run>/unlearn/<scenario tag>/`):

    <method>/           unlearn_config.yaml, state/ (resume), quarters/ (checkpoints k=0..3),
                        requests.csv, unlearning.csv, unlearning.json
    retrain/k<k>/       ordinary run folders trained without the data removed through k
    retrain/            unlearning.csv, unlearning.json of the retrains
    unlearning.csv      every row of every method and retrain run so far, for comparison
    model.json          the fingerprint of the trained model all of it is derived from
    trained_rows.json   the trained model's rows, computed by the first method job and reused
                        by the others while their inputs stay the same (`trained_rows`)

Every job checks the scenario folder's model fingerprint before it writes or reads anything
in it (`erase_jax.fingerprint`): resuming, re-evaluating or adding to a folder derived from
another model than the run now holds is refused, saying what changed. Locks
(`erase_jax.folder_lock`) keep jobs apart: a job holds a shared lock on the trained run (no
`train` on it meanwhile) and an exclusive one on its own folder (`<method>/`, or `retrain/`
for the retrains), so a second job on the same folder is refused at once, naming the holder's
pid; the scenario folder's lock is taken briefly to check the fingerprint and to write the
combined CSV. A lock dies with its process, SIGKILL included.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from erase_jax import config as config_lib
from erase_jax import fingerprint
from erase_jax.checkpoint import Checkpointer
from erase_jax.evaluators.base import ScoredModel
from erase_jax.folder_lock import FolderLock
from erase_jax.result_labels import RETRAIN, RETRAINING, TRAINED, UNLEARNING, current_row
from erase_jax.run import DERIVED, RESULT_FILE, load_run, require_finished, write_atomically
from erase_jax.unlearn.methods.base import build_method
from erase_jax.unlearn.protocol import results
from erase_jax.unlearn.protocol.loop import run_requests
from erase_jax.unlearn.protocol.retrain import RETRAIN_DIR, budget_epochs, load_retrain, retrain, retrain_dir
from erase_jax.unlearn.protocol.run import (
    ORIGINAL_FULL_DATA,
    STATE_DIR,
    UnlearnConfig,
    UnlearningRun,
    build_protocol,
    load_quarter,
    prepare_out_dir,
    training_context,
)

CHECKPOINTS = (0, 1, 2, 3)


def scenario_folder(run_dir: Path, config: UnlearnConfig, out: str | None) -> Path:
    return Path(out) if out else Path(run_dir) / DERIVED[0] / config.tag()


@contextlib.contextmanager
def reading_run(run_dir: str | Path, job: str):
    """A shared lock on the finished run `run_dir`: no `train` replaces its model meanwhile."""
    require_finished(run_dir)
    with FolderLock(run_dir, job, shared=True):
        yield


@contextlib.contextmanager
def scenario_job(run_dir: str | Path, scenario_dir: Path, job_dir: Path, job: str):
    """The model check of the scenario folder, then the exclusive lock on `job_dir` (a folder of
    `scenario_dir`); yields the model's fingerprint (`erase_jax.fingerprint.claim`). A job
    refused for another model or a held lock writes no results."""
    with contextlib.ExitStack() as held:
        with FolderLock(scenario_dir, job, wait=True):
            model = fingerprint.claim(scenario_dir, run_dir)
            held.enter_context(FolderLock(job_dir, job))
        yield model


def unlearn(run_dir: str | Path, config: UnlearnConfig, out: str | None = None, eval_only=False, quiet=False) -> list[dict]:
    """Runs (or resumes, or with `eval_only` re-evaluates) one method over the request stream."""
    if config.method.lower() == "retrain":
        return retrain_all(run_dir, config, CHECKPOINTS, out, quiet)
    method = build_method(config.method, **config.method_options)  # unknown names and options fail first
    job = f"unlearn {config.method.lower()}"
    with reading_run(run_dir, job):
        experiment, params = load_run(run_dir)
        if hasattr(method, "check_experiment"):
            method.check_experiment(experiment)  # e.g. sharded retraining supports some models only
        protocol = build_protocol(experiment, config)
        scenario_dir = scenario_folder(run_dir, config, out)
        method_dir = scenario_dir / config.method.lower()
        with scenario_job(run_dir, scenario_dir, method_dir, job) as model:
            return _unlearn(protocol, method, params, scenario_dir, method_dir, Path(run_dir), model, eval_only, quiet)


def _unlearn(protocol: UnlearningRun, method, params, scenario_dir: Path, method_dir: Path, run_dir: Path, model: dict,
             eval_only: bool, quiet: bool) -> list[dict]:
    experiment, config = protocol.experiment, protocol.config
    prepare_out_dir(method_dir, run_dir, config)
    if eval_only:
        record = _saved_record(method_dir, protocol)
    else:
        record = run_requests(protocol, params, method_dir, quiet)
        _write_requests_csv(method_dir, record)

    cost = results.cost_summary(record)
    rows = trained_rows(protocol, params, scenario_dir, model)
    like = method.start(experiment.model, params, experiment, train=False)[0] if hasattr(method, "start") else params
    for k in CHECKPOINTS:
        quarter_params, removed = load_quarter(method_dir, k, like, len(experiment.data.interactions))
        if not np.array_equal(removed, protocol.removed_through(k)):
            raise ValueError(
                f"{method_dir}: the removals saved with checkpoint {k} differ from this scenario's request stream "
                "(the folder was written for another forget set or request order)"
            )
        context = training_context(protocol, removed) if getattr(method, "updates_context", True) else experiment.context
        reference = _reference(protocol, scenario_dir, k)
        row = results.row_header(protocol, config.method.lower(), k, UNLEARNING)
        evaluated = ScoredModel(experiment.model, quarter_params, context)
        if hasattr(method, "scorer"):  # the method's own recommender (e.g. a shard ensemble)
            evaluated = ScoredModel(*method.scorer(experiment.model, quarter_params, experiment))
        row.update(results.evaluate_model(protocol, k, evaluated, reference))
        row.update(cost)
        rows.append(row)
    results.write_results(method_dir, rows, protocol, {"model": _identity(model), "requests": record["requests"],
                                                  "compile": record.get("compile", [])})
    combine(scenario_dir)
    return rows


TRAINED_ROWS_FILE = "trained_rows.json"


def trained_rows(protocol: UnlearningRun, params, scenario_dir: Path, model: dict | None = None) -> list[dict]:
    """The trained model, labelled `trained`: on all data (checkpoint_idx -1) and at every
    checkpoint's data.

    Every method job of a scenario folder evaluates the same trained model on the same data
    against the same retrains, so with `model` (the folder's fingerprint, `scenario_job`) the
    rows are kept in `trained_rows.json` under a key of what they depend on (the model's
    fingerprint, the scenario's settings but the method, the evaluators, each retrain's
    `result.json`) and reused while the key is the same; a retrain trained since, or another
    evaluator list, computes them again. Delete the file after changing an evaluator's code.
    """
    path = Path(scenario_dir) / TRAINED_ROWS_FILE
    key = None if model is None else _trained_rows_key(protocol, scenario_dir, model)
    if key is not None and path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return saved["rows"]
    rows = _evaluate_trained(protocol, params, scenario_dir)
    if key is not None:
        write_atomically(path, json.dumps({"key": key, "rows": rows}, indent=1, default=results.plain))
    return rows


def _trained_rows_key(protocol: UnlearningRun, scenario_dir: Path, model: dict) -> dict:
    settings = config_lib.to_dict(dataclasses.replace(protocol.config, method="untouched", method_options={}))
    retrains = {}
    for k in CHECKPOINTS:
        result = retrain_dir(scenario_dir, k) / RESULT_FILE
        retrains[str(k)] = hashlib.sha256(result.read_bytes()).hexdigest() if result.exists() else None
    key = {"model": model["fingerprint"], "settings": settings, "evaluators": list(protocol.config.evaluators),
           "retrains": retrains}
    return json.loads(json.dumps(key, default=results.plain))  # as it reads back from the file


def _evaluate_trained(protocol: UnlearningRun, params, scenario_dir: Path) -> list[dict]:
    experiment = protocol.experiment
    rows = []
    for k in (ORIGINAL_FULL_DATA, *CHECKPOINTS):
        reference = None if k == ORIGINAL_FULL_DATA else _reference(protocol, scenario_dir, k)
        row = results.row_header(protocol, TRAINED, k, TRAINED)
        evaluated = ScoredModel(experiment.model, params, experiment.context)
        row.update(results.evaluate_model(protocol, k, evaluated, reference))
        rows.append(row)
    return rows


def _reference(protocol: UnlearningRun, scenario_dir: Path, k: int):
    """The retrain matching checkpoint k as the reference (None before it is trained), loaded once."""

    def load():
        loaded = load_retrain(protocol, scenario_dir, k)
        if loaded is None:
            return None
        experiment, params, _ = loaded
        return ScoredModel(experiment.model, params, experiment.context)

    return protocol.once(("retrain", str(scenario_dir), k), load)


def retrain_all(run_dir, config: UnlearnConfig, checkpoints, out: str | None = None, quiet=False, seeds=(),
                budget: str = "trained") -> list[dict]:
    """Trains the retrains matching the given checkpoints and evaluates them like the others.

    `seeds`: more retrains with these seeds (rows `retrain@seed<s>`, each evaluated against the
    reference retrain): the noise floor of the report's gaps. `budget` (`RETRAIN_BUDGETS`):
    "trained" trains every retrain for the original's trained epochs without early stopping,
    "early_stopping" with the run's own stopping rule (`retrain.py` says why the first).
    """
    epochs = budget_epochs(run_dir, budget)
    with reading_run(run_dir, "retrain"):
        experiment, params = load_run(run_dir)
        protocol = build_protocol(experiment, config)
        scenario_dir = scenario_folder(run_dir, config, out)
        out_dir = scenario_dir / RETRAIN_DIR
        names = ["retrain", *(f"retrain@seed{int(s)}" for s in seeds)]
        with scenario_job(run_dir, scenario_dir, out_dir, "retrain") as model:
            rows = _earlier_retrain_rows(out_dir, checkpoints, names)
            for k in checkpoints:
                reference = None
                for seed, name in zip([None, *seeds], names):
                    summary = retrain(protocol, scenario_dir, k, quiet, seed, epochs)
                    retrained, retrained_params, _ = load_retrain(protocol, scenario_dir, k, seed)
                    row = results.row_header(protocol, name, k, RETRAINING)
                    evaluated = ScoredModel(retrained.model, retrained_params, retrained.context)
                    row.update(results.evaluate_model(protocol, k, evaluated, reference))
                    # numbers only (the grid's leaderboard reads every column as a measure); the
                    # budget shows in retrain_epochs and in the retrain folder's saved config
                    row.update({"retrain_seconds": summary["train_seconds"], "retrain_epochs": summary["epochs"]})
                    row.update(results.peak_memory())
                    rows.append(row)
                    reference = evaluated if seed is None else reference
            rows.sort(key=lambda row: (int(row["checkpoint_idx"]), row["method"] != RETRAIN, row["method"]))
            results.write_results(out_dir, rows, protocol, {"model": _identity(model)})
            combine(scenario_dir)
    return rows


def _earlier_retrain_rows(out_dir: Path, checkpoints, methods=("retrain",)) -> list[dict]:
    """The rows an earlier `retrain` call wrote other than those of these checkpoints and
    methods, so that retrains run one checkpoint (or seed) at a time add up in
    `retrain/unlearning.csv` (the folder's model fingerprint was checked by `scenario_job`:
    they are the same model's)."""
    path = Path(out_dir) / results.JSON_FILE
    if not path.exists():
        return []
    wanted = {int(k) for k in checkpoints}
    return [row for row in json.loads(path.read_text())["rows"]
            if int(row["checkpoint_idx"]) not in wanted or row.get("method", "retrain") not in methods]


def _identity(model: dict) -> dict:
    """What unlearning.json records of the model: its fingerprint, run folder and finish time."""
    return {key: model[key] for key in ("fingerprint", "run", "finished_at")}


def _saved_record(method_dir: Path, protocol: UnlearningRun) -> dict:
    """The per-request record of a finished run (for --eval-only)."""
    state = Checkpointer(method_dir / STATE_DIR, max_to_keep=1)
    step = state.latest_step()
    if step is None or step < len(protocol.stream):
        raise FileNotFoundError(f"{method_dir}: the request stream has not been completed; run without --eval-only")
    record = state.restore_record(step)
    state.close()
    return record


def _write_requests_csv(method_dir: Path, record: dict) -> None:
    rows = [{**row, "users": " ".join(map(str, row.get("users", [])))} for row in record["requests"]]
    results.write_csv(method_dir / "requests.csv", rows)


def combine(scenario_dir: Path) -> None:
    """All rows of all runs in a scenario folder in one CSV (the trained model's rows once, with
    today's labels: `erase_jax.result_labels`), written under the scenario folder's lock (jobs
    of other methods may finish at the same time)."""
    with FolderLock(scenario_dir, "combine results", wait=True):
        _combine(scenario_dir)


def _combine(scenario_dir: Path) -> None:
    rows, seen_trained = [], set()
    for path in sorted(Path(scenario_dir).glob("*/" + results.CSV_FILE)):
        with path.open() as handle:
            for row in map(current_row, csv.DictReader(handle)):
                if row["eval_type"] == TRAINED:
                    if row["checkpoint_idx"] in seen_trained:
                        continue
                    seen_trained.add(row["checkpoint_idx"])
                rows.append(row)
    results.write_csv(Path(scenario_dir) / results.CSV_FILE, rows)
