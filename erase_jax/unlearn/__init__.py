"""Unlearning methods behind one interface (`base.py`), and the protocol that drives them.

Importing this package registers every method module listed below.
"""

from erase_jax.unlearn import scif  # noqa: F401  (registers "scif")
from erase_jax.unlearn.base import RequestData, UnlearningMethod, build_method, method_names, register

__all__ = ["RequestData", "UnlearningMethod", "build_method", "method_names", "register"]
