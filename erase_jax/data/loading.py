"""One entry point from a data configuration to split interactions.

    config -> locate (data root, folder, format) -> read -> filter -> split -> LoadedData

Formats: a folder holding `{name}.inter` (RecBole atomic files: optional rating threshold,
k-core, then a per-user split), a folder holding `train.txt` and `test.txt` (user lines,
split given), or the exact name "synthetic" (the generator, split chronologically).
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

from erase_jax.data.atomic import read_atomic, resolve_category_field
from erase_jax.data.filters import k_core_rows, rating_threshold_rows
from erase_jax.data.fraud_sessions import fraud_sessions
from erase_jax.data.interactions import Interactions
from erase_jax.data.scenarios import ForgetSet, spam_users
from erase_jax.data.splits import Split, chronological_split, given_split, random_split
from erase_jax.data.synthetic import synthetic_interactions
from erase_jax.data.userlines import read_train_test

DATA_ROOT_ENV = "ERASE_JAX_DATA"
SYNTHETIC = "synthetic"
SPLITS = ("auto", "chronological", "random", "given")
SPAM_ATTACKS = ("bandwagon_users", "fraud_sessions", "fraud_baskets", "bandwagon_selected")
SELECTED_ITEMS = 10  # bandwagon_selected: the most interacted items every fake holds
ATOMIC_MIN_INTERACTIONS = 5  # the original's user/item_inter_num_interval [5, inf) (spec 1.2)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which data set to load and how to filter and split it.

    dataset: a folder name under the data root, a path to a folder, or "synthetic".
    data_root: None -> $ERASE_JAX_DATA, else `<repo>/../shared/data`.
    split: "chronological" (the original's per-user time-ordered RS split), "random",
      "given" (train/test as in the files, valid carved from train) or "auto": given for
      train.txt/test.txt folders, chronological otherwise.
    split_ratios: train/valid/test shares for chronological and random splits.
    valid_ratio: share of each user's train rows moved to valid in a given split.
    rating_threshold: drop rows rated below it; None (default) keeps them. The original's
      CF configs set `threshold: {rating: 3.5}`, but that only makes a label that pairwise
      training and full ranking ignore, so low ratings stay positives there too.
    min_user_interactions, min_item_interactions: iterative k-core; None = auto: 5 for
      atomic files (the original's [5, inf)), 0 for given splits and synthetic data.
    category_field: the `.item` field with item categories; None = auto (class, category,
      categories, genre).
    category_file: item categories from a file (basket data: `item,category` CSV lines, or a list
      of items named after its category, `erase_jax.data.basket_files.read_category_file`).
    synthetic: keyword arguments for `synthetic_interactions` (seed excluded: it is the run's).
    spam_ratio: if set, inject fake users after filtering and before splitting, a bandwagon
      attack with this poisoning ratio promoting `spam_target_items` unpopular items; they
      are the forget set of the spam scenario.
    spam_target_items: how many unpopular items the fake users promote.
    spam_attack: the fakes' shape: "bandwagon_users" (CF user profiles,
      `erase_jax.data.scenarios.spam_users`), "bandwagon_selected" (the literature's bandwagon
      profile: the targets, the `SELECTED_ITEMS` most interacted items and random fillers from
      the whole catalogue, `spam_users(selected_items=...)`) or "fraud_sessions" (single-session users,
      `erase_jax.data.fraud_sessions`, spec 3.3.1); None = by task: fraud sessions for SBR
      (`erase_jax.sbr.load_sequence_data`), bandwagon users otherwise.
    """

    dataset: str = SYNTHETIC
    data_root: str | None = None
    split: str = "auto"
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    valid_ratio: float = 0.1
    rating_threshold: float | None = None
    min_user_interactions: int | None = None
    min_item_interactions: int | None = None
    category_field: str | None = None
    category_file: str | None = dataclasses.field(default=None, metadata={"omit_if_default": True})
    synthetic: dict = dataclasses.field(default_factory=dict)
    spam_ratio: float | None = None
    spam_target_items: int = 10
    spam_attack: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "split_ratios", tuple(self.split_ratios))
        if self.split not in SPLITS:
            raise ValueError(f"data split must be one of {SPLITS}, got {self.split!r}")
        if len(self.split_ratios) != 3 or min(self.split_ratios) < 0 or sum(self.split_ratios) <= 0:
            raise ValueError(f"split_ratios must be three non-negative numbers, got {self.split_ratios}")
        if not 0 <= self.valid_ratio < 1:
            raise ValueError(f"valid_ratio must lie in [0, 1), got {self.valid_ratio}")
        if self.spam_ratio is not None and not 0 < self.spam_ratio < 1:
            raise ValueError(f"spam_ratio must lie in (0, 1), got {self.spam_ratio}")
        if self.spam_attack is not None and self.spam_attack not in SPAM_ATTACKS:
            raise ValueError(f"spam_attack must be one of {SPAM_ATTACKS} or None, got {self.spam_attack!r}")
        for name in ("min_user_interactions", "min_item_interactions"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0):
                raise ValueError(f"data.{name} must be an integer >= 0 (or None: auto), got {value!r}")
        if isinstance(self.spam_target_items, bool) or not isinstance(self.spam_target_items, numbers.Integral) \
                or self.spam_target_items < 1:
            raise ValueError(f"data.spam_target_items must be an integer >= 1, got {self.spam_target_items!r}")
        if "seed" in self.synthetic:
            raise ValueError("synthetic data takes the run's seed; remove 'seed' from data.synthetic")


@dataclasses.dataclass(frozen=True)
class LoadedData:
    """Split interactions plus where they came from.

    source: the resolved folder, or "synthetic". resolved: the data config with every auto
    value made explicit, to be written into a run's config.yaml.
    """

    interactions: Interactions
    split: Split
    source: str
    resolved: dict[str, Any]
    is_test: np.ndarray | None = None  # per-row flag of data that came split
    fraud: ForgetSet | None = None  # the injected fake users (or sessions), when spam_ratio is set
    unfiltered: Interactions | None = None  # as read, before threshold and k-core (forget sets start here)

    def without(self, removed: np.ndarray, seed: int) -> LoadedData:
        """The same data with the `removed` rows (bool mask) gone, split again by the same rule.

        The vocabulary is kept and nothing is re-filtered, as the original's retraining does
        (`dataset.copy`, spec 4.5): ids stay comparable between the models.
        """
        keep = ~np.asarray(removed, bool)
        inter = self.interactions.select(keep)
        is_test = None if self.is_test is None else self.is_test[keep]
        if self.resolved["split"] == "basket":  # basket data read by the NBR task: whole baskets by position
            from erase_jax.data.basket_split import basket_split

            split = basket_split(inter, self.resolved["min_baskets"])
        elif self.resolved["split"] == "sequence":  # click data read by the SBR task, which re-splits its rows
            split = chronological_split(inter, tuple(self.resolved["split_ratios"]))
        else:
            split = _split(inter, self.resolved["split"], DataConfig(**_tupled(self.resolved)), seed, is_test)
        return dataclasses.replace(self, interactions=inter, split=split, is_test=is_test)


def resolve_data_root(explicit: str | None) -> Path:
    """`explicit`, else $ERASE_JAX_DATA, else `<repo root>/../shared/data`."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV]).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def load_dataset(config: DataConfig, seed: int, session_gap: float | None = None) -> LoadedData:
    """Reads, filters and splits the configured data set; `seed` drives every random choice
    (synthetic data, random and given splits, spam). `session_gap`: see `inject_spam`."""
    raw = _generate_synthetic(config, seed) if config.dataset == SYNTHETIC else _read_folder(config)
    split_name = raw.default_split if config.split == "auto" else config.split
    min_user, min_item = (
        raw.default_min_interactions if configured is None else configured
        for configured in (config.min_user_interactions, config.min_item_interactions)
    )
    inter, is_test = raw.interactions, raw.is_test
    unfiltered = inter
    keep = _kept_rows(inter, config.rating_threshold, min_user, min_item)
    if not keep.all():
        inter = inter.select(keep).compact()
        is_test = None if is_test is None else is_test[keep]
    resolved = dataclasses.asdict(config) | raw.resolved | {
        "split": split_name,
        "min_user_interactions": min_user,
        "min_item_interactions": min_item,
        "spam_attack": config.spam_attack or SPAM_ATTACKS[0],
    }
    fraud = None
    if config.spam_ratio is not None:
        n_real = len(inter)
        inter, fraud = inject_spam(inter, config, seed, session_gap)
        if is_test is not None:  # fake users have no given test rows: they are split like train
            is_test = np.concatenate([is_test, np.zeros(len(inter) - n_real, bool)])
    split = _split(inter, split_name, config, seed, is_test)
    return LoadedData(inter, split, raw.source, _listify(resolved), is_test, fraud, unfiltered)


def inject_spam(
    inter: Interactions, config: DataConfig, seed: int, session_gap: float | None = None
) -> tuple[Interactions, ForgetSet]:
    """The data with `config.spam_attack`'s fakes appended (None = bandwagon users), and
    their forget set. Fraud sessions copy the statistics of the data's sessions: its
    `session_id` column when it has one, else sessions cut by `session_gap` seconds of
    inactivity when given, else one per user."""
    if config.spam_attack == "fraud_sessions":
        if inter.sessions is not None:  # the data's own sessions (a `session_id` column) come first
            return fraud_sessions(inter, config.spam_ratio, config.spam_target_items, seed, sessions=inter.sessions)
        return fraud_sessions(inter, config.spam_ratio, config.spam_target_items, seed, session_gap=session_gap)
    selected = SELECTED_ITEMS if config.spam_attack == "bandwagon_selected" else 0
    return spam_users(inter, config.spam_ratio, config.spam_target_items, seed, selected_items=selected)


@dataclasses.dataclass(frozen=True)
class _RawData:
    """A data set as read, before filtering and splitting."""

    interactions: Interactions
    is_test: np.ndarray | None  # per-row flag, for data that comes split
    default_split: str
    default_min_interactions: int
    source: str
    resolved: dict[str, Any]  # the config values this source settles


def _generate_synthetic(config: DataConfig, seed: int) -> _RawData:
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(synthetic_interactions).parameters.items()
        if name != "seed"
    }
    unknown = sorted(set(config.synthetic) - set(defaults))
    if unknown:
        raise ValueError(f"unknown data.synthetic keys {unknown}; known: {sorted(defaults)}")
    kwargs = defaults | dict(config.synthetic)
    resolved = {"data_root": None, "category_field": None, "synthetic": kwargs}
    return _RawData(synthetic_interactions(seed=seed, **kwargs), None, "chronological", 0, SYNTHETIC, resolved)


def _read_folder(config: DataConfig) -> _RawData:
    root = resolve_data_root(config.data_root)
    folder = _find_folder(config.dataset, root)
    resolved = {"data_root": str(root), "synthetic": {}}
    if (folder / f"{folder.name}.inter").is_file():
        inter = read_atomic(folder, category_field=config.category_field)
        resolved["category_field"] = resolve_category_field(folder, requested=config.category_field)
        return _RawData(inter, None, "chronological", ATOMIC_MIN_INTERACTIONS, str(folder), resolved)
    if (folder / "train.txt").is_file() and (folder / "test.txt").is_file():
        inter, is_test = read_train_test(folder)
        return _RawData(inter, is_test, "given", 0, str(folder), resolved | {"category_field": None})
    raise FileNotFoundError(
        f"no data set format recognised in {folder} (data root {root}): looked for "
        f"{folder.name}.inter (RecBole atomic files) or train.txt + test.txt (user lines)"
    )


def _find_folder(dataset: str, root: Path) -> Path:
    """`dataset` under the data root, else `dataset` as a path."""
    for folder in (root / dataset, Path(dataset).expanduser()):
        if folder.is_dir():
            return folder.resolve()
    raise FileNotFoundError(
        f"data set {dataset!r} not found: neither {root / dataset} (under the data root {root}, "
        f"set by data_root or ${DATA_ROOT_ENV}) nor {Path(dataset).expanduser().resolve()} is a folder"
    )


def _kept_rows(inter: Interactions, threshold: float | None, min_user: int, min_item: int) -> np.ndarray:
    """Rows kept by the rating threshold, then by the iterative k-core."""
    keep = np.ones(len(inter), bool) if threshold is None else rating_threshold_rows(inter, threshold)
    if min_user or min_item:
        keep[keep] = k_core_rows(inter.select(keep), min_user, min_item)
    return keep


def _split(inter: Interactions, split_name: str, config: DataConfig, seed: int, is_test) -> Split:
    if split_name == "chronological":
        return chronological_split(inter, config.split_ratios)
    if split_name == "random":
        return random_split(inter, config.split_ratios, seed)
    if is_test is None:
        raise ValueError(f"{inter.name}: split 'given' needs data that comes split (train.txt and test.txt)")
    return given_split(inter, is_test, config.valid_ratio, seed)


def _tupled(resolved: dict) -> dict:
    """The inverse of `_listify` for the fields DataConfig wants as tuples."""
    return resolved | {"split_ratios": tuple(resolved["split_ratios"])}


def _listify(resolved: dict) -> dict:
    """Tuples as lists, so that the dict writes as plain YAML."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in resolved.items()}
