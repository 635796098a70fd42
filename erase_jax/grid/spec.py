"""A grid file: the benchmark's axes in one YAML, validated before anything runs.

    settings:  {train: {epochs: 100}}       # run settings every cell shares (the run config's keys)
    unlearn:   {evaluators: [utility]}       # protocol settings every cell shares (`UnlearnConfig`)
    datasets:  {ml-100k: {}}                 # label -> run settings (`dataset:` defaults to the label)
    models:    {BPR: {}, LightGCN: {model_params: {n_layers: 3}}}   # label -> run settings (`model:` ditto)
    scenarios:                               # label -> `UnlearnConfig` fields, plus `spam_ratio`
      horror: {scenario: sensitive, category: Horror, fraction: 0.003, forget_rating_threshold: 3.5}
      spam:   {scenario: spam, spam_ratio: 0.01}   # spam_ratio poisons the trained model (data.spam_ratio)
    methods:                                 # label -> the method's options (`method:` defaults to the label)
      untouched: {}
      scif-strong: {method: scif, damping: 0.1}
    seeds: [2, 3, 4]                         # the run's seed; the forget set draws with the same seed
    retrain_seeds: [3, 4]                    # optional: more retrains per checkpoint with these seeds
                                             # (rows `retrain@seed<s>`): the noise floor of every gap
    audit: {shadows: 32, audited: 300}       # optional: the membership audit of each (data set, model,
                                             # scenario, seed) whose model has shadows (BPR, LightGCN);
                                             # `erase_jax.audit.job.AuditConfig`'s keys

Run settings take the run configuration's keys, nested or dotted (`train.epochs: 1`), and merge
in the order settings < data set < model < scenario (`spam_ratio`) < seed. Every cell's run
configuration is resolved (`erase_jax.config.resolve`), its protocol settings built
(`UnlearnConfig`) and its method built with its options (`build_method`), so an unknown key, model,
method or option is a `GridError` naming where it stands, before any task starts.

A model that is not learned (`trainable` False: Pop, ItemKNN, EASE, Random) is unlearned
exactly by recomputing it: the protocol rebuilds a model's context (all such a model has) from
the rows that remain after each request. So it runs only with the grid's no-op method
(`untouched`), whose rows are then the recomputed model's, next to its retrains and the trained
model; its cells with the other methods are left out (a grid with such a model and no no-op
method is refused).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import yaml

from erase_jax import config as config_lib
from erase_jax.models import get_model_class
from erase_jax.result_labels import UNTOUCHED
from erase_jax.unlearn.methods.base import build_method
from erase_jax.unlearn.protocol.run import UnlearnConfig

AXES = ("datasets", "models", "scenarios", "methods")
SECTIONS = ("settings", "unlearn", *AXES, "seeds", "retrain_seeds", "audit")
# protocol settings a cell fixes elsewhere: the method comes from the methods axis
CELL_OWNED = ("method", "method_options")


class GridError(config_lib.ConfigError):
    """A grid file that cannot run: names the section, label and key at fault."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """One point of the grid: labels of its axis values and its resolved settings.

    `run` is the resolved run configuration of the trained model (what `erase-jax train` runs),
    `unlearn` the protocol settings with the method and its options, every option explicit.
    """

    dataset: str
    model: str
    scenario: str
    method: str
    seed: int
    run: config_lib.RunConfig
    unlearn: UnlearnConfig


@dataclasses.dataclass(frozen=True)
class Grid:
    """A validated grid: its name (the file's stem), its cells in axis order, and the seeds of the
    extra retrains every cell's scenario gets (`erase-jax retrain --seeds`; none by default)."""

    name: str
    cells: tuple[Cell, ...]
    retrain_seeds: tuple[int, ...] = ()
    audit: dict | None = None  # the `audit` section's AuditConfig fields, removals explicit; None: no audit
    audit_labels: tuple[tuple[str, str], ...] = ()  # (removal, the methods axis label its rows take)


def load_grid(path: str | Path) -> Grid:
    """Reads and validates a grid file; raises GridError naming the first fault."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GridError(f"{path}: not valid YAML: {error}") from None
    return build_grid(values, path.stem)


def build_grid(values, name: str) -> Grid:
    """The cells of a grid given as a dict (a parsed grid file)."""
    if not isinstance(values, dict):
        raise GridError(f"grid {name}: the top level must be a mapping with {list(SECTIONS)}")
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise GridError(f"grid {name}: unknown keys {unknown}; known: {list(SECTIONS)}")
    axes = {axis: _axis(values, axis) for axis in AXES}
    seeds = _seeds(values.get("seeds", [2]), f"grid {name}: seeds")
    retrain_seeds = _seeds(values["retrain_seeds"], f"grid {name}: retrain_seeds") if "retrain_seeds" in values else []
    shared_run = _mapping(values.get("settings"), "settings")
    shared_unlearn = _mapping(values.get("unlearn"), "unlearn")
    bad = sorted(set(shared_unlearn) & set(CELL_OWNED))
    if bad:
        raise GridError(f"unlearn: {bad} are set by the methods axis")

    methods = {label: _method(label, entry) for label, entry in axes["methods"].items()}
    no_ops = {label for label, (method, _) in methods.items() if build_method(method).name == UNTOUCHED}
    scenarios = {label: _scenario(label, entry, shared_unlearn) for label, entry in axes["scenarios"].items()}
    runs: dict[str, config_lib.RunConfig] = {}
    cells = []
    for dataset, model, scenario, method, seed in itertools.product(
        axes["datasets"], axes["models"], scenarios, methods, seeds
    ):
        spam_ratio, protocol = scenarios[scenario]
        layers = [
            ("settings", shared_run),
            (f"datasets.{dataset}", {"dataset": dataset, **axes["datasets"][dataset]}),
            (f"models.{model}", {"model": model, **axes["models"][model]}),
            (f"scenarios.{scenario}", {} if spam_ratio is None else {"data": {"spam_ratio": spam_ratio}}),
            ("seeds", {"seed": seed}),
        ]
        merged = run_values(layers)
        key = json.dumps(merged, sort_keys=True, default=str)
        if key not in runs:
            runs[key] = _resolve(merged, f"datasets.{dataset} x models.{model} x scenarios.{scenario} x seed {seed}")
        if method not in no_ops and not get_model_class(runs[key].model).trainable:
            if not no_ops:
                raise GridError(f"models.{model}: {runs[key].model} is not learned, so the grid runs it only with the "
                                f"no-op method (its unlearning is the recomputation): add `{UNTOUCHED}: {{}}` to methods")
            continue
        unlearn = dataclasses.replace(protocol, method=methods[method][0], method_options=methods[method][1])
        cells.append(Cell(dataset, model, scenario, method, seed, runs[key], unlearn))
    audit, audit_labels = _audit(values["audit"], methods) if "audit" in values else (None, ())
    return Grid(name, tuple(cells), tuple(retrain_seeds), audit, audit_labels)


def _audit(entry, methods: dict[str, tuple[str, dict]]) -> tuple[dict, tuple[tuple[str, str], ...]]:
    """(the audit's settings, every field explicit, (removal, label) pairs). By default the
    removals are `untouched`, `retrain` and every method of the methods axis that runs with its
    defaults (the audit applies each method with its defaults); a listed removal that is a
    label of the methods axis audits that label's method."""
    from erase_jax.audit.job import AuditConfig

    values = _mapping(entry, "audit")
    known = [f.name for f in dataclasses.fields(AuditConfig) if f.name not in ("seed", "devices")]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise GridError(f"audit: unknown keys {unknown}; known: {known}")
    defaults = {label: name for label, (name, options) in methods.items() if options == config_lib.to_dict(build_method(name))}
    labels = {"retrain": "retrain", **{build_method(name).name: label for label, name in defaults.items()}}
    removals = values.pop("removals", None)
    if removals is None:
        removals = ["untouched", "retrain", *[r for r in labels if r not in ("untouched", "retrain")]]
    removals = [methods[r][0] if r in methods else r for r in removals]
    try:
        config = AuditConfig(**values, removals=tuple(build_method(r).name if r != "retrain" else r for r in removals))
    except (ValueError, KeyError, TypeError) as error:
        raise GridError(f"audit: {_message(error)}") from None
    settings = {**dataclasses.asdict(config), "removals": list(config.removals)}
    return settings, tuple((r, labels.get(r, r)) for r in config.removals)


def _seeds(seeds, where: str) -> list[int]:
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise GridError(f"{where} must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) < len(seeds):
        raise GridError(f"{where} has a seed twice: {seeds}")
    return seeds


def run_values(layers: list[tuple[str, dict]]) -> dict:
    """Run settings of several layers (where, mapping) merged in order, dotted keys expanded."""
    merged: dict = {}
    for where, layer in layers:
        _merge(merged, _nested(layer, where))
    return merged


def _axis(values: dict, axis: str) -> dict[str, dict]:
    entries = values.get(axis)
    if isinstance(entries, list):  # a list of labels: each with no settings of its own
        entries = {label: {} for label in entries}
    if not isinstance(entries, dict) or not entries:
        raise GridError(f"{axis}: expected a non-empty mapping of label -> settings, got {entries!r}")
    return {str(label): _mapping(entry, f"{axis}.{label}") for label, entry in entries.items()}


def _mapping(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{where}: expected a mapping, got {value!r}")
    return dict(value)


def _nested(settings: dict, where: str, top: bool = True) -> dict:
    """Dotted keys (`train.epochs`) and, at the top level, aliases (`dataset`) as nested dicts."""
    out: dict = {}
    for key, value in settings.items():
        *parents, leaf = (config_lib.ALIASES.get(str(key), str(key)) if top else str(key)).split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise GridError(f"{where}: {key}: {part} is set to a value and used as a section")
        _merge(node, {leaf: _nested(value, where, top=False) if isinstance(value, dict) else value})
    return out


def _merge(into: dict, update: dict) -> dict:
    """Deep merge: `update`'s leaves replace `into`'s; sections merge key by key."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _resolve(values: dict, where: str) -> config_lib.RunConfig:
    try:
        return config_lib.resolve(config_lib.from_dict(config_lib.RunConfig, values))
    except (ValueError, KeyError) as error:
        raise GridError(f"{where}: {_message(error)}") from None


def _scenario(label: str, entry: dict, shared: dict) -> tuple[float | None, UnlearnConfig]:
    """(spam ratio of the trained model or None, the protocol settings) of a scenario entry."""
    entry = dict(entry)
    spam_ratio = entry.pop("spam_ratio", None)
    bad = sorted(set(entry) & set(CELL_OWNED))
    if bad:
        raise GridError(f"scenarios.{label}: {bad} are set by the methods axis")
    try:
        protocol = config_lib.from_dict(UnlearnConfig, {**shared, **entry}, f"scenarios.{label}.")
    except (ValueError, KeyError) as error:
        raise GridError(f"scenarios.{label}: {_message(error)}") from None
    if protocol.scenario == "spam" and spam_ratio is None:
        raise GridError(f"scenarios.{label}: the spam scenario needs spam_ratio (the share of fake users to inject)")
    return spam_ratio, protocol


def _method(label: str, entry: dict) -> tuple[str, dict]:
    """(registered name, every option explicit) of a methods entry. A name written as one of
    the method's aliases (`original` for `untouched`) is kept as written, so a grid's task
    keys and result rows stay those of its earlier runs."""
    options = dict(entry)
    name = options.pop("method", label)
    try:
        method = build_method(name, **options)
    except (ValueError, KeyError, TypeError) as error:
        raise GridError(f"methods.{label}: {_message(error)}") from None
    written = str(name).lower()
    return (written if written in getattr(method, "aliases", ()) else method.name), config_lib.to_dict(method)


def _message(error: Exception) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
