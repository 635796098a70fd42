"""Typed run configuration: dataclasses per concern, loaded from YAML, unknown keys rejected.

    model: LightGCN            # a registered model name
    seed: 2
    dataset: ml-100k           # shorthand for data.dataset
    model_params: {n_layers: 2}
    data: {split: chronological}
    train: {learning_rate: 0.001, batch_size: 2048}
    eval: {topk: [10, 20]}

Command-line `--set key=value` overrides use the same dotted paths (`train.learning_rate=1e-3`,
`dataset=ml-100k`); values are parsed as YAML scalars. The configuration written next to a
run's results is fully resolved: every default, including the model's hyperparameters, is
explicit.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from erase_jax.data.baskets import BasketConfig
from erase_jax.data.loading import DataConfig
from erase_jax.data.sequences import SequenceConfig
from erase_jax.evaluators.metrics import METRICS
from erase_jax.train import TrainConfig


@dataclasses.dataclass
class EvalConfig:
    """Evaluation settings (`eval.*` keys).

    Fields:
        topk: the cut-offs k of every metric@k, each >= 1.
        metrics: ranking metrics, from `erase_jax.evaluators.metrics.METRICS`.
        block_size: queries scored per device block (bounds peak memory), >= 1.
    """

    topk: tuple[int, ...] = (10, 20)
    metrics: tuple[str, ...] = METRICS
    block_size: int = 1024

    def __post_init__(self):
        if not self.topk or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1 for k in self.topk):
            raise ValueError(f"eval.topk must be integers >= 1, got {self.topk!r}")
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise ValueError(f"eval.metrics: unknown {unknown}; known: {list(METRICS)}")
        if isinstance(self.block_size, bool) or not isinstance(self.block_size, numbers.Integral) or self.block_size < 1:
            raise ValueError(f"eval.block_size must be an integer >= 1, got {self.block_size!r}")


@dataclasses.dataclass
class RunConfig:
    """One training run's settings; YAML files and `--set key=value` use these dotted names.

    Fields:
        model: a registered model name (`erase_jax.models`), e.g. "BPR", "LightGCN", "SASRec".
        seed: the run's seed (initialisation, batches, synthetic data, forget sets), >= 0.
        data: which data set and how it is filtered and split (`DataConfig`); `dataset=...` is
            short for `data.dataset`.
        model_params: the model's hyperparameters by name (its dataclass fields); defaults filled in.
        train: optimisation (`TrainConfig`).
        eval: evaluation (`EvalConfig`).
        sequence: SBR models only (`SequenceConfig`); their task fills the defaults.
        basket: NBR models only (`BasketConfig`); their task fills the defaults.

    `load_config` builds one from a YAML file and overrides; `resolve` checks the model and
    the settings that depend on one another.
    """

    model: str = "BPR"
    seed: int = 2
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model_params: dict = dataclasses.field(default_factory=dict)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    sequence: SequenceConfig | None = None
    basket: BasketConfig | None = None

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        from erase_jax.models.base import get_model_class

        try:
            get_model_class(self.model)
        except KeyError as error:
            raise ValueError(f"model: {error.args[0]}") from None


TASK_SECTIONS = ("sequence", "basket")  # RunConfig sections a task plug-in owns (`Task.config_section`)


ALIASES = {"dataset": "data.dataset", "data_root": "data.data_root"}


class ConfigError(ValueError):
    pass


def from_dict(cls, values: dict, where: str = ""):
    """Builds dataclass `cls` from a nested dict; raises ConfigError naming unknown keys."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config keys {[f'{where}{k}' for k in unknown]}; known here: {sorted(names)}")
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _convert(hints[name], value, f"{where}{name}")
    return cls(**kwargs)


def _convert(annotation, value, where: str):
    if dataclasses.is_dataclass(annotation):
        return from_dict(annotation, value or {}, where + ".")
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _convert(options[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        item_type = typing.get_args(annotation)[0]
        return tuple(_convert(item_type, v, where) for v in value)
    if annotation is float and isinstance(value, str):
        value = _yaml_float(value, where)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def _yaml_float(text: str, where: str) -> float:
    """YAML 1.1 reads `1e-4` (no dot) as a string; accept it where a float is expected."""
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: expected a number, got {text!r}") from None


def to_dict(config) -> dict:
    """Plain nested dict (tuples as lists) for YAML/JSON output.

    A field declared with `metadata={"omit_if_default": True}` is left out while it holds its
    default, so adding such a field keeps the files of earlier runs (and their resume checks)
    as they were.
    """

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    values = plain(dataclasses.asdict(config))
    _omit_defaults(config, values)
    if isinstance(config, RunConfig):  # a task's section appears only in its runs, so older runs resume
        for section in TASK_SECTIONS:
            if getattr(config, section) is None:
                del values[section]
    return values


def _omit_defaults(config, values: dict) -> None:
    """Drops the `omit_if_default` fields that hold their default, in nested sections too."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.metadata.get("omit_if_default") and value == _default(field):
            del values[field.name]
        elif dataclasses.is_dataclass(value) and isinstance(values.get(field.name), dict):
            _omit_defaults(value, values[field.name])


def _default(field: dataclasses.Field):
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Applies `key=value` strings (dotted keys, YAML-parsed values) to a nested dict."""
    values = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items()}
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"an override is key=value (as --set key=value), got {override!r}")
        key, raw = override.split("=", 1)
        key = ALIASES.get(key.strip(), key.strip())
        value = yaml.safe_load(raw) if raw.strip() else None
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {override!r}: {part} is not a section")
        node[leaf] = value
    return values


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> RunConfig:
    """The resolved `RunConfig` of a YAML file (None: the defaults) with `key=value` overrides
    (dotted keys, YAML values, as `--set`); unknown keys and invalid values raise ConfigError.

    >>> load_config(None, ["model=BPR", "train.epochs=5"]).train.epochs
    5
    """
    values: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        for alias, target in ALIASES.items():
            if alias in values:
                section, leaf = target.split(".")
                values.setdefault(section, {})[leaf] = values.pop(alias)
    values = apply_overrides(values, list(overrides))
    return resolve(from_dict(RunConfig, values))


def _check_hyperparameter(model: str, name: str, default, value) -> None:
    """A numeric hyperparameter (every model's are sizes, counts, rates or weights) is a number
    >= 0, an integer where its default is one."""
    if isinstance(default, bool) or not isinstance(default, numbers.Real):
        return
    integral = isinstance(default, numbers.Integral)
    kind = "an integer" if integral else "a number"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral if integral else numbers.Real) or not value >= 0:
        raise ConfigError(f"model_params.{name} of {model} must be {kind} >= 0, got {value!r}")


def resolve(config: RunConfig) -> RunConfig:
    """Fills the model's hyperparameter defaults and checks cross-field consistency."""
    from erase_jax.models import get_model_class
    from erase_jax.tasks import get_task

    cls = get_model_class(config.model)
    defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    unknown = sorted(set(config.model_params) - set(defaults))
    if unknown:
        raise ConfigError(f"model {cls.name}: unknown model_params {unknown}; known: {sorted(defaults)}")
    model_params = {**defaults, **config.model_params}
    for name, default in defaults.items():
        if isinstance(default, float) and isinstance(model_params[name], (str, int)) and not isinstance(model_params[name], bool):
            model_params[name] = _yaml_float(str(model_params[name]), f"model_params.{name}")
        _check_hyperparameter(cls.name, name, default, model_params[name])
    metric, _, k = config.train.valid_metric.partition("@")
    if metric not in config.eval.metrics or not k.isdigit() or int(k) not in config.eval.topk:
        raise ConfigError(
            f"train.valid_metric {config.train.valid_metric!r} must be one of eval.metrics @ one of eval.topk"
        )
    task = get_task(cls.task)
    for section in TASK_SECTIONS:
        if section != task.config_section and getattr(config, section) is not None:
            raise ConfigError(f"the {section} section applies to another task's models, not to {cls.name} ({task.name})")
    return task.check_config(dataclasses.replace(config, model=cls.name, model_params=model_params))
