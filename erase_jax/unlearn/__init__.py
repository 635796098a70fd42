"""Unlearning methods behind one interface (`base.py`), and the protocol that drives them.

Importing this package registers every method module listed below.
"""

from erase_jax.unlearn import ceu, fanchuan, gif, idea, kookmin, scif, seif  # noqa: F401  (registers them)
from erase_jax.unlearn import receraser, sisa  # noqa: F401  (registers them)
from erase_jax.unlearn.base import RequestData, UnlearningMethod, build_method, method_names, register

__all__ = ["RequestData", "UnlearningMethod", "build_method", "method_names", "register"]
