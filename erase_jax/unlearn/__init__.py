"""Unlearning: the methods (`methods/`, `exact/`), the influence core they share (`influence/`),
and the sequential request protocol that drives them (`protocol/`).

Methods register themselves by name (`methods.base.register`); `build_method(name)` finds any
method whose file exists under this package.
"""

from erase_jax.unlearn.methods.base import (
    RequestData,
    UnlearningMethod,
    build_method,
    method_names,
    register,
)

__all__ = ["RequestData", "UnlearningMethod", "build_method", "method_names", "register"]
