"""Recommender models, one file each, registered by name.

CF: `BPR`, `LightGCN`, `SGL` (learned) and `Pop`, `ItemKNN` (non-learned baselines).
`build_model("LightGCN", n_layers=3)` builds one from a config; see `base.py` for the interface.
"""

from erase_jax.models import bpr, itemknn, lightgcn, pop, sgl  # noqa: F401  (registers the models)
from erase_jax.models import gru4rec, narm, sasrec, sknn, srgnn  # noqa: F401  (session-based models)
from erase_jax.models.base import CFModelBase, Recommender, build_model, get_model_class, model_names

__all__ = ["CFModelBase", "Recommender", "build_model", "get_model_class", "model_names"]
