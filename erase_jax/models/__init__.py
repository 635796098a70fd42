"""Recommender models, one file each under the task family's folder, registered by name.

CF (`cf/`): `BPR`, `LightGCN`, `SGL` (learned) and `Pop`, `ItemKNN` (non-learned baselines).
SBR (`sbr/`): `GRU4Rec`, `NARM`, `SASRec`, `SRGNN` (learned) and `SKNN`.
`build_model("LightGCN", n_layers=3)` builds one from a config; see `base.py` for the interface.
A new model is one file with a `@register`ed class: the registry finds it by name.
"""

from erase_jax.models.base import Recommender, build_model, get_model_class, model_names

__all__ = ["Recommender", "build_model", "get_model_class", "model_names"]
