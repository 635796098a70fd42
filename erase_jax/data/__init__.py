"""Data: files -> `Interactions` (numpy, dense ids) -> filters -> `Split`.

`load_dataset(DataConfig(...), seed)` is the one entry point from configuration to data; the
readers, filters and splitters it chains are public for tests, scripts and new formats.
Nothing here needs JAX.
"""

from erase_jax.data.atomic import (
    DataFormatError,
    read_atomic,
    read_token_list,
    resolve_category_field,
    write_atomic_inter,
)
from erase_jax.data.filters import (
    k_core,
    k_core_rows,
    rating_threshold,
    rating_threshold_rows,
)
from erase_jax.data.interactions import Interactions, from_tokens
from erase_jax.data.loading import (
    DataConfig,
    LoadedData,
    load_dataset,
    resolve_data_root,
)
from erase_jax.data.splits import (
    Split,
    chronological_split,
    given_split,
    random_split,
    ratio_counts,
)
from erase_jax.data.synthetic import CATEGORY_NAMES, synthetic_interactions
from erase_jax.data.userlines import (
    read_train_test,
    read_train_test_folder,
    read_user_lines,
)

__all__ = [
    "CATEGORY_NAMES",
    "DataConfig",
    "DataFormatError",
    "Interactions",
    "LoadedData",
    "Split",
    "chronological_split",
    "from_tokens",
    "given_split",
    "k_core",
    "k_core_rows",
    "load_dataset",
    "random_split",
    "rating_threshold",
    "rating_threshold_rows",
    "ratio_counts",
    "read_atomic",
    "read_token_list",
    "read_train_test",
    "read_train_test_folder",
    "read_user_lines",
    "resolve_category_field",
    "resolve_data_root",
    "synthetic_interactions",
    "write_atomic_inter",
]
