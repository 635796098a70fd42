"""Unlearning methods behind one interface (`base.py`), and the protocol that drives them."""

from erase_jax.unlearn.base import RequestData, UnlearningMethod, build_method, method_names, register

__all__ = ["RequestData", "UnlearningMethod", "build_method", "method_names", "register"]
