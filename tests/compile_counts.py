"""XLA backend compilations counted by jitted function name, for tests that assert what compiles.

One listener for the whole test session (JAX keeps every registered listener): a test clears
`COMPILED`, runs, and reads how often each `jit(<name>)` compiled.
"""

from __future__ import annotations

import collections

import jax.monitoring

COMPILED: collections.Counter = collections.Counter()


def _count(event: str, seconds: float, **kwargs) -> None:
    del seconds
    if event == "/jax/core/compile/backend_compile_duration":
        COMPILED[kwargs.get("fun_name")] += 1


jax.monitoring.register_event_duration_secs_listener(_count)
